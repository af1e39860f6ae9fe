package main

import (
	"bytes"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestRecordAndReport(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sum.json")
	in := strings.Join([]string{
		`{"Action":"run","Package":"p","Test":"TestA"}`,
		`{"Action":"output","Package":"p","Test":"TestA","Output":"=== RUN   TestA\n"}`,
		`{"Action":"pass","Package":"p","Test":"TestA"}`,
		`{"Action":"skip","Package":"p","Test":"TestB"}`,
		`{"Action":"pass","Package":"p","Test":"TestC/sub"}`,
		`{"Action":"pass","Package":"p"}`,
	}, "\n")
	var out bytes.Buffer
	if err := record(path, strings.NewReader(in), &out); err != nil {
		t.Fatal(err)
	}
	if out.String() != "=== RUN   TestA\n" {
		t.Errorf("output %q", out.String())
	}
	fail := `{"Action":"fail","Package":"q","Test":"TestD"}` + "\n" + `{"Action":"fail","Package":"q"}`
	if err := record(path, strings.NewReader(fail), &out); err == nil {
		t.Error("a failed package was not an error")
	}
	var rep bytes.Buffer
	t.Setenv("CI", "")
	if code := report(path, &rep); code != 1 || !strings.HasPrefix(rep.String(), "2 passed, 1 failed, 1 skipped\n") {
		t.Errorf("report %d %q", code, rep.String())
	}
	clean := filepath.Join(t.TempDir(), "clean.json")
	_ = record(clean, strings.NewReader(`{"Action":"skip","Package":"p","Test":"TestB"}`), &out)
	if code := report(clean, &rep); code != 0 {
		t.Errorf("a skip outside CI failed the report")
	}
	t.Setenv("CI", "true")
	if code := report(clean, &rep); code != 1 {
		t.Errorf("a skip under CI did not fail the report")
	}
}

// A failed test's message lines reach the report; its log dumps do not.
func TestReportSaysWhy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sum.json")
	line := func(test, s string) string {
		return `{"Action":"output","Package":"p","Test":"` + test + `","Output":` + strconv.Quote(s+"\n") + `}`
	}
	in := strings.Join([]string{
		line("TestE", "=== RUN   TestE"),
		line("TestE", "    a_test.go:12: the lease was lost"),
		line("TestE", "    harness_test.go:182: daemon log:"),
		line("TestE", "        2026/11/30 acquired 10.0.0.5"),
		line("TestE", "    harness_test.go:110: dnsmasq log of LAN 3ff597:"),
		line("TestF", "    b_test.go:3: passed tests say nothing"),
		`{"Action":"fail","Package":"p","Test":"TestE"}`,
		`{"Action":"pass","Package":"p","Test":"TestF"}`,
	}, "\n")
	var out, rep bytes.Buffer
	_ = record(path, strings.NewReader(in), &out)
	report(path, &rep)
	want := "1 passed, 1 failed, 0 skipped\nfailed: TestE\n  TestE: a_test.go:12: the lease was lost\n"
	if rep.String() != want {
		t.Errorf("report\n%s\nwant\n%s", rep.String(), want)
	}
}
