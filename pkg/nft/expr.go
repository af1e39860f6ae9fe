package nft

import (
	"encoding/binary"
	"fmt"
	"net"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// Part is a piece of a rule: its kernel expressions and how nft lists it.
type Part struct {
	Text  string
	Exprs []expr.Any
}

// Rule is one rule as data. Comment is stored with it (nft lists it) and
// names it for CHECK.
type Rule struct {
	Comment string
	Parts   []Part
}

// R makes a rule of parts, in order.
func R(comment string, parts ...Part) Rule { return Rule{Comment: comment, Parts: parts} }

// Text is the rule as nft would list it, without the comment.
func (r Rule) Text() string {
	ts := make([]string, 0, len(r.Parts))
	for _, p := range r.Parts {
		if p.Text != "" {
			ts = append(ts, p.Text)
		}
	}
	return strings.Join(ts, " ")
}

// Exprs are the rule's kernel expressions.
func (r Rule) Exprs() []expr.Any {
	var out []expr.Any
	for _, p := range r.Parts {
		out = append(out, p.Exprs...)
	}
	return out
}

// UserData is the rule's comment as nft stores it.
func (r Rule) UserData() []byte {
	return userdata.AppendString(nil, userdata.TypeComment, r.Comment)
}

// CommentOf returns the comment stored in a rule's user data.
func CommentOf(ud []byte) string {
	s, _ := userdata.GetString(ud, userdata.TypeComment)
	return s
}

// Conntrack values the kernel headers define but x/sys/unix does not.
const (
	ctDirReply = 1      // IP_CT_DIR_REPLY
	ipsDstNAT  = 1 << 5 // IPS_DST_NAT
)

// Registers: reg1 is a 16-byte register; concatenations start at the first
// 32-bit register and take ceil(len/4) registers per field.
const (
	reg1     = 1
	regConc0 = 8
)

// Field is a value a rule loads into a register: a packet field or a meta key.
type Field struct {
	Text string
	Len  uint32
	load func(reg uint32) expr.Any
}

func payload(text string, base expr.PayloadBase, off, n uint32) Field {
	return Field{text, n, func(reg uint32) expr.Any {
		return &expr.Payload{DestRegister: reg, Base: base, Offset: off, Len: n}
	}}
}

func meta(text string, key expr.MetaKey, n uint32) Field {
	return Field{text, n, func(reg uint32) expr.Any { return &expr.Meta{Key: key, Register: reg} }}
}

// Fields of packets and of the kernel's view of them.
var (
	IIFName    = meta("iifname", expr.MetaKeyIIFNAME, unix.IFNAMSIZ)
	MetaMark   = meta("meta mark", expr.MetaKeyMARK, 4)
	L4Proto    = meta("meta l4proto", expr.MetaKeyL4PROTO, 1)
	NFProto    = meta("meta nfproto", expr.MetaKeyNFPROTO, 1)
	EtherSaddr = payload("ether saddr", expr.PayloadBaseLLHeader, 6, 6)
	EtherDaddr = payload("ether daddr", expr.PayloadBaseLLHeader, 0, 6)
	// EtherType is read at link-layer offset 12, where nf_tables rebuilds
	// a VLAN tag the kernel moved into metadata: tagged frames show
	// 0x8100 or 0x88a8 here, never their inner type.
	EtherType = payload("ether type", expr.PayloadBaseLLHeader, 12, 2)

	ArpHType   = payload("arp htype", expr.PayloadBaseNetworkHeader, 0, 2)
	ArpPType   = payload("arp ptype", expr.PayloadBaseNetworkHeader, 2, 2)
	ArpHLen    = payload("arp hlen", expr.PayloadBaseNetworkHeader, 4, 1)
	ArpPLen    = payload("arp plen", expr.PayloadBaseNetworkHeader, 5, 1)
	ArpOp      = payload("arp operation", expr.PayloadBaseNetworkHeader, 6, 2)
	ArpSHA     = payload("arp saddr ether", expr.PayloadBaseNetworkHeader, 8, 6)
	ArpSPA     = payload("arp saddr ip", expr.PayloadBaseNetworkHeader, 14, 4)
	IPFragOff  = payload("ip frag-off", expr.PayloadBaseNetworkHeader, 6, 2)
	IPProto    = payload("ip protocol", expr.PayloadBaseNetworkHeader, 9, 1)
	IPSaddr    = payload("ip saddr", expr.PayloadBaseNetworkHeader, 12, 4)
	IPDaddr    = payload("ip daddr", expr.PayloadBaseNetworkHeader, 16, 4)
	IP6Len     = payload("ip6 length", expr.PayloadBaseNetworkHeader, 4, 2)
	IP6NextHdr = payload("ip6 nexthdr", expr.PayloadBaseNetworkHeader, 6, 1)
	IP6HopLim  = payload("ip6 hoplimit", expr.PayloadBaseNetworkHeader, 7, 1)
	IP6Saddr   = payload("ip6 saddr", expr.PayloadBaseNetworkHeader, 8, 16)
	IP6Daddr   = payload("ip6 daddr", expr.PayloadBaseNetworkHeader, 24, 16)
	THSport    = payload("th sport", expr.PayloadBaseTransportHeader, 0, 2)
	THDport    = payload("th dport", expr.PayloadBaseTransportHeader, 2, 2)
	// ICMPType is the type of an ICMP or ICMPv6 message (the first byte of
	// the transport header; match L4Proto first).
	ICMPType = payload("icmp type", expr.PayloadBaseTransportHeader, 0, 1)
	// ICMPInnerDaddr is the destination of the packet an ICMP error quotes.
	ICMPInnerDaddr = payload("@th,192,32", expr.PayloadBaseTransportHeader, 8+16, 4)
	// ICMP6InnerDaddr is the destination of the packet an ICMPv6 error quotes.
	ICMP6InnerDaddr = payload("@th,256,128", expr.PayloadBaseTransportHeader, 8+24, 16)
	// NDTarget is the target address of a neighbour solicitation or advertisement.
	NDTarget = payload("icmpv6 taddr", expr.PayloadBaseTransportHeader, 8, 16)
	// NAReserved is a neighbour advertisement's flags and reserved bits.
	NAReserved = payload("@th,32,32", expr.PayloadBaseTransportHeader, 4, 4)
	// NAOption is the type and length of an advertisement's first option.
	NAOption = payload("@th,192,16", expr.PayloadBaseTransportHeader, 24, 2)
	// NAOptionMAC is the link-layer address in that option.
	NAOptionMAC = payload("@th,208,48", expr.PayloadBaseTransportHeader, 26, 6)
)

// Is matches a field equal to value.
func Is(f Field, text string, value []byte) Part {
	return cmpPart(f, "", text, expr.CmpOpEq, value)
}

// IsNot matches a field different from value.
func IsNot(f Field, text string, value []byte) Part {
	return cmpPart(f, "!= ", text, expr.CmpOpNeq, value)
}

func cmpPart(f Field, op, text string, cmp expr.CmpOp, value []byte) Part {
	return Part{f.Text + " " + op + text, []expr.Any{f.load(reg1), &expr.Cmp{Op: cmp, Register: reg1, Data: value}}}
}

// Masked matches a field whose bits under mask equal (or, with not, differ
// from) value; text shows the mask and comparison.
func Masked(f Field, mask, value []byte, not bool, text string) Part {
	op := expr.CmpOpEq
	if not {
		op = expr.CmpOpNeq
	}
	return Part{f.Text + " " + text, []expr.Any{
		f.load(reg1),
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: uint32(len(mask)), Mask: mask, Xor: make([]byte, len(mask))},
		&expr.Cmp{Op: op, Register: reg1, Data: value},
	}}
}

// InPrefix matches an address field inside (or, with not, outside) a prefix.
func InPrefix(f Field, n *net.IPNet, not bool) Part {
	ip := n.IP.To4()
	if f.Len == 16 {
		ip = n.IP.To16()
	}
	mask := []byte(n.Mask)
	if len(mask) != len(ip) {
		mask = net.CIDRMask(maskOnes(n), 8*len(ip))
	}
	text := n.String()
	if not {
		text = "!= " + text
	}
	return Masked(f, mask, []byte(ip.Mask(mask)), not, text)
}

func maskOnes(n *net.IPNet) int { o, _ := n.Mask.Size(); return o }

// Range matches a field between from and to, inclusive (big-endian values).
func Range(f Field, from, to []byte, text string) Part {
	return Part{f.Text + " " + text, []expr.Any{f.load(reg1), &expr.Range{Op: expr.CmpOpEq, Register: reg1, FromData: from, ToData: to}}}
}

// InSet matches the concatenation of fields against a named set; with not,
// its absence.
func InSet(set string, not bool, fs ...Field) Part {
	texts := make([]string, len(fs))
	var es []expr.Any
	reg := uint32(reg1)
	if len(fs) > 1 {
		reg = regConc0
	}
	first := reg
	for i, f := range fs {
		texts[i] = f.Text
		es = append(es, f.load(reg))
		if len(fs) > 1 {
			reg += (f.Len + 3) / 4
		}
	}
	op := "@"
	if not {
		op = "!= @"
	}
	es = append(es, &expr.Lookup{SourceRegister: first, SetName: set, Invert: not})
	return Part{strings.Join(texts, " . ") + " " + op + set, es}
}

// DNATMap DNATs to the address and port a map gives for the concatenation
// of fields (ipv4: addr . port of 4+4 bytes; ipv6: 16+4).
func DNATMap(v6 bool, set string, fs ...Field) Part {
	p := InSet(set, false, fs...)
	lk := p.Exprs[len(p.Exprs)-1].(*expr.Lookup)
	lk.DestRegister, lk.IsDestRegSet = reg1, true
	fam, proto, t := uint32(unix.NFPROTO_IPV4), uint32(regConc0+1), "ip"
	if v6 {
		fam, proto, t = unix.NFPROTO_IPV6, regConc0+4, "ip6"
	}
	text := "dnat " + t + " to " + strings.TrimSuffix(p.Text, " @"+set) + " map @" + set
	return Part{text, append(p.Exprs, &expr.NAT{Type: expr.NATTypeDestNAT, Family: fam, RegAddrMin: reg1, RegProtoMin: proto, Specified: true})}
}

// MarkHas matches packets whose mark has all of bits (or, with not, none).
func MarkHas(bits uint32, not bool) Part {
	v := binaryutil.NativeEndian.PutUint32(bits)
	text := fmt.Sprintf("meta mark & 0x%08x == 0x%08x", bits, bits)
	op := expr.CmpOpEq
	if not {
		v = make([]byte, 4)
		text = fmt.Sprintf("meta mark & 0x%08x == 0x00000000", bits)
	}
	return Part{text, []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(bits), Xor: make([]byte, 4)},
		&expr.Cmp{Op: op, Register: reg1, Data: v},
	}}
}

// SetMark clears the bits of clear in the packet's mark and sets those of set.
func SetMark(clear, set uint32) Part {
	keep := ^(clear | set)
	return Part{fmt.Sprintf("meta mark set meta mark & 0x%08x | 0x%08x", keep, set), []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(keep), Xor: binaryutil.NativeEndian.PutUint32(set)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: reg1},
	}}
}

// FibLocal matches packets addressed to this host.
func FibLocal() Part {
	return Part{"fib daddr type local", []expr.Any{
		&expr.Fib{Register: reg1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
	}}
}

// CtReply matches packets of the reply direction of an established or
// related connection.
func CtReply() []Part {
	return []Part{
		{"ct direction reply", []expr.Any{
			&expr.Ct{Register: reg1, Key: expr.CtKeyDIRECTION},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{ctDirReply}},
		}},
		{"ct state established,related", []expr.Any{
			&expr.Ct{Register: reg1, Key: expr.CtKeySTATE},
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED), Xor: make([]byte, 4)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: make([]byte, 4)},
		}},
	}
}

// CtDNAT matches connections this host DNATed.
func CtDNAT() Part {
	return Part{"ct status dnat", []expr.Any{
		&expr.Ct{Register: reg1, Key: expr.CtKeySTATUS},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(ipsDstNAT), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: make([]byte, 4)},
	}}
}

// Masquerade source-NATs to the outgoing interface's address.
func Masquerade() Part { return Part{"masquerade", []expr.Any{&expr.Masq{}}} }

// LogLimited logs at most 10 packets a minute (bursts of 5) with prefix.
func LogLimited(prefix string) []Part {
	return []Part{
		{"limit rate 10/minute burst 5 packets", []expr.Any{&expr.Limit{Type: expr.LimitTypePkts, Rate: 10, Unit: expr.LimitTimeMinute, Burst: 5}}},
		{fmt.Sprintf("log prefix %q", prefix), []expr.Any{&expr.Log{Key: 1 << unix.NFTA_LOG_PREFIX, Data: []byte(prefix)}}},
	}
}

// Verdicts.
var (
	Accept = Part{"accept", []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}}
	Drop   = Part{"drop", []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}}}
	Return = Part{"return", []expr.Any{&expr.Verdict{Kind: expr.VerdictReturn}}}
)

// Jump continues in chain and comes back.
func Jump(chain string) Part {
	return Part{"jump " + chain, []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: chain}}}
}

// Goto continues in chain and does not come back.
func Goto(chain string) Part {
	return Part{"goto " + chain, []expr.Any{&expr.Verdict{Kind: expr.VerdictGoto, Chain: chain}}}
}

// U32LE is a value in the host's byte order (marks, conntrack states).
func U32LE(v uint32) []byte { return binaryutil.NativeEndian.PutUint32(v) }

// Byte values of fields, big-endian as they are on the wire.
func U8(v uint8) []byte   { return []byte{v} }
func U16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
func U32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

// Chain is a chain as data: a base chain when Hook is set. A Dynamic
// chain's rules are added and removed per container (Verify skips it).
type Chain struct {
	Name     string
	Hook     *nftables.ChainHook
	Type     nftables.ChainType
	Priority int32
	Rules    []Rule
	Dynamic  bool
}

// Set is a named set (or map) as data.
type Set struct {
	Name     string
	Key      []nftables.SetDatatype
	Data     []nftables.SetDatatype // a map when set
	Interval bool
	Comment  string
	// Elements are fixed at creation (keys as the set stores them).
	Elements [][]byte
}

// Table is a table as data: what lanwire installs, in order.
type Table struct {
	Family nftables.TableFamily
	Name   string
	Sets   []Set
	Chains []Chain
}

// Ref is the table as google/nftables names it.
func (t Table) Ref() *nftables.Table { return &nftables.Table{Family: t.Family, Name: t.Name} }

// SetRef returns the named set of t, for element changes.
func (t Table) SetRef(name string) *nftables.Set {
	for _, s := range t.Sets {
		if s.Name == name {
			return s.ref(t.Ref())
		}
	}
	panic("nft: no set " + name + " in table " + t.Name)
}

func (s Set) ref(t *nftables.Table) *nftables.Set {
	key := s.Key[0]
	if len(s.Key) > 1 {
		key = nftables.MustConcatSetType(s.Key...)
	}
	out := &nftables.Set{Table: t, Name: s.Name, KeyType: key, Concatenation: len(s.Key) > 1, Interval: s.Interval, Comment: s.Comment}
	if key == nftables.TypeIFName {
		// nft prints names in host byte order; without this it shows "".
		out.KeyByteOrder = binaryutil.NativeEndian
	}
	if len(s.Data) > 0 {
		out.IsMap = true
		out.DataType = s.Data[0]
		if len(s.Data) > 1 {
			out.DataType = nftables.MustConcatSetType(s.Data...)
		}
	}
	return out
}

// Create queues the whole table (it must not exist: the transaction then
// fails with EEXIST rather than doubling its rules).
func (c *Conn) Create(t Table) error {
	tr := c.CreateTable(t.Ref())
	for _, s := range t.Sets {
		var es []nftables.SetElement
		for _, k := range s.Elements {
			es = append(es, nftables.SetElement{Key: k})
		}
		if err := c.AddSet(s.ref(tr), es); err != nil {
			return fmt.Errorf("set %s: %w", s.Name, err)
		}
	}
	chains := map[string]*nftables.Chain{}
	for _, ch := range t.Chains {
		nc := &nftables.Chain{Table: tr, Name: ch.Name}
		if ch.Hook != nil {
			pol := nftables.ChainPolicyAccept
			nc.Hooknum, nc.Type, nc.Priority, nc.Policy = ch.Hook, ch.Type, nftables.ChainPriorityRef(nftables.ChainPriority(ch.Priority)), &pol
		}
		chains[ch.Name] = c.AddChain(nc)
	}
	for _, ch := range t.Chains {
		for _, r := range ch.Rules {
			c.AddRule(&nftables.Rule{Table: tr, Chain: chains[ch.Name], Exprs: r.Exprs(), UserData: r.UserData()})
		}
	}
	return nil
}

// Delete queues the table's deletion.
func (c *Conn) Delete(t Table) { c.DelTable(t.Ref()) }

// Verify compares the table in the kernel with t: every chain holds its
// rules, by comment, in order, and nothing else. It returns a description
// of the first difference, or "" when they agree.
func (c *Conn) Verify(t Table) (string, error) {
	tr := t.Ref()
	for _, ch := range t.Chains {
		if _, err := c.ListChain(tr, ch.Name); err != nil {
			// google/nftables does not wrap the errno here.
			return fmt.Sprintf("chain %s %s %s is missing (%v)", familyName(t.Family), t.Name, ch.Name, err), nil
		}
		if ch.Dynamic {
			continue
		}
		rules, err := c.GetRules(tr, &nftables.Chain{Table: tr, Name: ch.Name})
		if err != nil {
			return "", err
		}
		var got []string
		for _, r := range rules {
			got = append(got, CommentOf(r.UserData))
		}
		for i, want := range ch.Rules {
			if i >= len(got) || got[i] != want.Comment {
				return fmt.Sprintf("chain %s %s %s: rule %d should be %q (%s)", familyName(t.Family), t.Name, ch.Name, i+1, want.Comment, want.Text()), nil
			}
		}
		if len(got) > len(ch.Rules) {
			return fmt.Sprintf("chain %s %s %s holds %d rules, want %d", familyName(t.Family), t.Name, ch.Name, len(got), len(ch.Rules)), nil
		}
	}
	return "", nil
}

func familyName(f nftables.TableFamily) string {
	switch f {
	case nftables.TableFamilyBridge:
		return "bridge"
	case nftables.TableFamilyINet:
		return "inet"
	case nftables.TableFamilyIPv4:
		return "ip"
	case nftables.TableFamilyIPv6:
		return "ip6"
	}
	return fmt.Sprint(f)
}
