# lanwire: CNI plugins that put containers on a real LAN.
#   make build     binaries in bin/
#   make install   binaries to $(CNI_BIN_DIR) (lanwire to $(NETAVARK_PLUGIN_DIR)), systemd units to $(SYSTEMD_DIR)
#   make test      installs what the tests need, runs unit and integration tests (root)
#   make demo      the main job on a self-contained demo LAN
#   make dist      release archives for linux amd64 and arm64 in dist/

SHELL       := /bin/bash
GO          ?= go
PREFIX      ?= /usr/local
CNI_BIN_DIR ?= /opt/cni/bin
# netavark (podman 5+) looks for its plugins here.
NETAVARK_PLUGIN_DIR ?= /usr/libexec/netavark
SYSTEMD_DIR ?= /etc/systemd/system
CNITOOL_VERSION ?= v1.3.0
CRANE_VERSION ?= v0.22.1
# Upstream plugins the tests chain behind (and the benchmark compares with).
UPSTREAM_VERSION ?= v1.9.1
UPSTREAM_BIN := $(CURDIR)/.upstream/$(UPSTREAM_VERSION)
# nerdctl for the runtime tests: `go install` cannot resolve it, so the module
# is downloaded at a pinned version and built inside it.
NERDCTL_VERSION ?= v1.7.7
NERDCTL := $(CURDIR)/.upstream/nerdctl-$(NERDCTL_VERSION)
# containerd 2 (its CRI, driven by crictl as a kubelet would): built inside
# its downloaded module (`go install` refuses it), with its runc shim.
CONTAINERD2_VERSION ?= v2.4.2
CRICTL_VERSION ?= v1.34.0
CONTAINERD2 := $(CURDIR)/.upstream/containerd-$(CONTAINERD2_VERSION)
# nerdctl 2 on that containerd 2 (scripts/build-nerdctl2).
NERDCTL2_VERSION ?= v2.1.3
NERDCTL2 := $(CURDIR)/.upstream/nerdctl-$(NERDCTL2_VERSION)
# podman 5 and netavark (Debian 13) for the netavark plugin's tests, in a
# trixie root of their own: Debian 12 has podman 4.3 only.
TRIXIE := $(CURDIR)/.upstream/trixie
UPSTREAM_PLUGINS := main/bridge ipam/host-local meta/portmap ipam/dhcp meta/firewall meta/tuning
GOBIN       := $(shell $(GO) env GOPATH)/bin
PLUGINS     := hostbridge-dhcp offline-egress portmap-lite
# The version every binary reports (--version, the CNI banner, the daemon's
# log, leases --json): the git tag or commit.
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS     := -X github.com/lanwire/lanwire/pkg/cli.Version=$(VERSION)
# The plugins are built static (CGO_ENABLED=0): no dynamic loader at each of
# the many execs a runtime makes (VERSION, ADD, DEL...), ~1 ms less each, and
# they run on any libc.
# What the plugins and the demo need, and what only the tests add.
APT_BASE    := nftables iptables dnsmasq-base conntrack iproute2 procps kmod busybox-static
APT_TEST    := podman runc containerd strace skopeo
TEST_TIMEOUT ?= 20m

.PHONY: all dist build image install uninstall help test deps deps-base apt-install unit integration test-faults bench fuzz demo demo-clean vet fmt clean

all: build

build:
	@mkdir -p bin
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/ $(addprefix ./plugins/,$(PLUGINS)) ./plugins/lanwire ./cmd/offline-image ./cmd/lanwire-image
	$(GO) build -trimpath -o bin/testlan ./integration/cmd/testlan
	$(GO) build -trimpath -o bin/demo ./integration/cmd/demo

# image builds lanwire's node image (conflist/kubernetes/daemonset.yaml)
# from the static binaries, without Docker.
image: build
	bin/lanwire-image -bin bin -tag lanwire:$(VERSION) -o bin/lanwire-image.tar

install: build
	install -d $(DESTDIR)$(CNI_BIN_DIR)
	install -m 0755 $(addprefix bin/,$(PLUGINS)) $(DESTDIR)$(CNI_BIN_DIR)/
	install -d $(DESTDIR)$(NETAVARK_PLUGIN_DIR)
	install -m 0755 bin/lanwire $(DESTDIR)$(NETAVARK_PLUGIN_DIR)/lanwire
	install -d $(DESTDIR)$(SYSTEMD_DIR)
	sed 's|@CNI_BIN_DIR@|$(CNI_BIN_DIR)|g' init/hostbridge-dhcp.service > $(DESTDIR)$(SYSTEMD_DIR)/hostbridge-dhcp.service
	install -m 0644 init/hostbridge-dhcp.socket $(DESTDIR)$(SYSTEMD_DIR)/hostbridge-dhcp.socket
	@echo "installed; enable the lease daemon with: systemctl daemon-reload && systemctl enable --now hostbridge-dhcp.socket"

# uninstall stops the lease daemon and removes what install put in place.
# The daemon's state (/var/lib/cni/hostbridge-dhcp) is left: remove it by
# hand once no container uses a lease.
uninstall:
	-command -v systemctl >/dev/null && systemctl disable --now hostbridge-dhcp.socket hostbridge-dhcp.service 2>/dev/null
	-pkill -f '$(CNI_BIN_DIR)/hostbridge-dhcp daemon'
	rm -f $(addprefix $(DESTDIR)$(CNI_BIN_DIR)/,$(PLUGINS)) $(DESTDIR)$(NETAVARK_PLUGIN_DIR)/lanwire
	rm -f $(DESTDIR)$(SYSTEMD_DIR)/hostbridge-dhcp.service $(DESTDIR)$(SYSTEMD_DIR)/hostbridge-dhcp.socket
	-command -v systemctl >/dev/null && systemctl daemon-reload

# deps-base installs the Debian packages the plugins and the demo need;
# deps adds what the tests need: runtimes, cnitool, upstream plugins, nerdctl.
deps-base:
	@$(MAKE) --no-print-directory apt-install PKGS="$(APT_BASE)"

apt-install:
	@missing=""; \
	for p in $(PKGS); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null; \
	fi

deps: deps-base
	@$(MAKE) --no-print-directory apt-install PKGS="$(APT_TEST)"
	@test -x $(GOBIN)/cnitool || $(GO) install github.com/containernetworking/cni/cnitool@$(CNITOOL_VERSION)
	@test -x $(UPSTREAM_BIN)/tuning || GOBIN=$(UPSTREAM_BIN) $(GO) install \
		$(addprefix github.com/containernetworking/plugins/plugins/,$(addsuffix @$(UPSTREAM_VERSION),$(UPSTREAM_PLUGINS)))
	@test -x $(NERDCTL) || { \
		dir=$$($(GO) mod download -json github.com/containerd/nerdctl@$(NERDCTL_VERSION) | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p'); \
		test -n "$$dir" && cd "$$dir" && GOFLAGS=-mod=mod $(GO) build -o $(NERDCTL) ./cmd/nerdctl; }
	@test -x $(CONTAINERD2)/containerd-shim-runc-v2 || { \
		dir=$$($(GO) mod download -json github.com/containerd/containerd/v2@$(CONTAINERD2_VERSION) | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p'); \
		test -n "$$dir" && cd "$$dir" && GOFLAGS=-mod=mod $(GO) build -tags no_btrfs -o $(CONTAINERD2)/ ./cmd/containerd ./cmd/ctr ./cmd/containerd-shim-runc-v2; }
	@test -x $(CONTAINERD2)/crictl || GOBIN=$(CONTAINERD2) $(GO) install sigs.k8s.io/cri-tools/cmd/crictl@$(CRICTL_VERSION)
	@test -x $(NERDCTL2) || GO=$(GO) scripts/build-nerdctl2 $(NERDCTL2_VERSION) $(NERDCTL2)
	@scripts/trixie-root $(TRIXIE)

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l . )" || { gofmt -l .; echo "gofmt: files above need formatting"; exit 1; }

# Test output goes through testsum, which counts what passed, failed and
# was skipped into $(SUMMARY); `make test` ends with that count on one line
# and fails on any failure, and under CI (CI=true) on any skip.
SUMMARY := $(CURDIR)/.test-summary.json
TESTSUM := $(CURDIR)/bin/testsum

$(TESTSUM): integration/cmd/testsum/main.go
	@mkdir -p bin
	$(GO) build -o $(TESTSUM) ./integration/cmd/testsum

unit: $(TESTSUM)
	set -o pipefail; $(GO) test -count=1 -json ./pkg/... ./integration/cmd/... 2>&1 | $(TESTSUM) -record $(SUMMARY)

integration: build $(TESTSUM)
	@test "$$(id -u)" = 0 || { echo "integration tests need root (network namespaces, bridges, iptables)"; exit 1; }
	set -o pipefail; CNITOOL=$(GOBIN)/cnitool LANWIRE_BIN=$(CURDIR)/bin UPSTREAM_BIN=$(UPSTREAM_BIN) NERDCTL=$(NERDCTL) TRIXIE_ROOT=$(TRIXIE) CONTAINERD2=$(CONTAINERD2) NERDCTL2=$(NERDCTL2) \
		$(GO) test -count=1 -timeout $(TEST_TIMEOUT) -json ./integration/... 2>&1 | $(TESTSUM) -record $(SUMMARY) | tee integration.log

test: deps vet $(TESTSUM)
	@rm -f $(SUMMARY); st=0; \
	$(MAKE) --no-print-directory unit || st=1; \
	$(MAKE) --no-print-directory integration || st=1; \
	$(TESTSUM) -report $(SUMMARY) || st=1; \
	exit $$st

# test-faults runs only the reliability suite (faults, load, hostile input);
# `make test` runs it too, as part of the integration tests.
FAULT_TESTS = TestDaemonKillRestart|TestServerOutage|TestRangeMove|TestHostileDHCPServer|TestStateDirFullOrReadOnly|TestNetnsVanishCycles|TestChurnFullChain|TestLockHeldFailsTryAgain|TestDaemonAPIHostile|TestSocketPermissions
test-faults: deps build
	@test "$$(id -u)" = 0 || { echo "the fault tests need root (network namespaces, bridges, iptables)"; exit 1; }
	CNITOOL=$(GOBIN)/cnitool LANWIRE_BIN=$(CURDIR)/bin UPSTREAM_BIN=$(UPSTREAM_BIN) \
		$(GO) test -count=1 -timeout $(TEST_TIMEOUT) -v -run '^($(FAULT_TESTS))$$' ./integration/

# bench measures lanwire and the upstream plugins (built at UPSTREAM_VERSION)
# in the same run on a test LAN: latency, growth, parallel ADDs, daemon
# memory and CPU. It prints a table and writes bench.json. Knobs:
# LANWIRE_BENCH_N (50), LANWIRE_BENCH_GROWTH (500), LANWIRE_BENCH_LEASES (1000),
# LANWIRE_BENCH_IMAGE_MB (1024, offline-image's big image; crane side by side).
bench: deps build
	@test -x $(GOBIN)/crane || $(GO) install github.com/google/go-containerregistry/cmd/crane@$(CRANE_VERSION)
	CRANE=$(GOBIN)/crane LANWIRE_BIN=$(CURDIR)/bin UPSTREAM_BIN=$(UPSTREAM_BIN) $(GO) test -count=1 -run '^$$' -bench . -benchtime 1x -timeout 60m ./integration/

# fuzz runs each fuzz target for FUZZTIME (their seeds also run in `make unit`).
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./pkg/hostbridge
	$(GO) test -run '^$$' -fuzz '^FuzzReadRequest$$' -fuzztime $(FUZZTIME) ./pkg/leaseapi
	$(GO) test -run '^$$' -fuzz '^FuzzFromACK$$' -fuzztime $(FUZZTIME) ./pkg/lease

# demo runs the main job on a demo LAN in network namespaces and cleans up.
demo: deps-base build
	@test "$$(id -u)" = 0 || { echo "make demo builds network namespaces: run it as root"; exit 1; }
	bin/demo --bin bin --conflist conflist/offline-ports.conflist

# demo-clean removes what an interrupted demo (or testlan) left.
demo-clean: build
	bin/demo --clean
	bin/testlan down all

# dist: lanwire-linux-{amd64,arm64}-$(VERSION).tgz (static plugins, the
# netavark plugin, systemd units, conflists), each with a .sha256 and a
# CycloneDX SBOM; the same commit gives the same bytes (scripts/dist).
DIST_DIR ?= $(CURDIR)/dist
dist:
	GO=$(GO) scripts/dist $(VERSION) $(DIST_DIR)

clean:
	@! awk -v p="$(CURDIR)/.upstream" 'index($$2, p "/") == 1 { f = 1 } END { exit !f }' /proc/self/mounts || \
		{ echo "something is mounted under .upstream (left by a killed podman 5 test): umount -R it first"; exit 1; }
	rm -rf --one-file-system bin dist integration.log .upstream

# help lists the targets.
help:
	@echo "make demo       the main job on a self-contained demo LAN (root)"
	@echo "make test       installs what the tests need, runs unit and integration tests (root)"
	@echo "make build      binaries in bin/ (version $(VERSION))"
	@echo "make install    binaries to $(CNI_BIN_DIR), systemd units to $(SYSTEMD_DIR)"
	@echo "make uninstall  removes what install put there"
	@echo "make dist       release archives (linux amd64, arm64) with .sha256 and SBOM in dist/"
	@echo "make image      the Kubernetes node image (bin/lanwire-image.tar, no Docker needed)"
	@echo "make bench      lanwire against the upstream plugins, same run (root, ~35 min)"
	@echo "make test-faults  the reliability suite only;  make fuzz  the fuzz targets"
	@echo "make demo-clean   removes what an interrupted demo or testlan left"
