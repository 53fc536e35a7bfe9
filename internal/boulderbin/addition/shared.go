// Package addition is the file cairn adds to Boulder's iana package when
// it builds Boulder (docs/policy.md), and cairn's own use of the same code.
//
// shared.go is shipped into package iana as is (its package clause
// rewritten), so everything in it is unexported and named cairn…, and it
// imports only what Boulder's module already requires. glue.go, built
// only inside Boulder, applies it to Boulder's own tables at start.
package addition

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/weppos/publicsuffix-go/publicsuffix"
)

// The environment variables the rendered bundle sets on Boulder processes.
const (
	// cairnEnvSuffixes: comma-separated private suffixes names may end in
	// (every Boulder component).
	cairnEnvSuffixes = "CAIRN_PRIVATE_SUFFIXES"
	// cairnEnvNetworks: comma-separated CIDRs validation may connect to
	// (the VA and the remote VAs only).
	cairnEnvNetworks = "CAIRN_VALIDATION_ALLOWED_NETWORKS"
)

// cairnParseSuffixes parses a comma-separated list of suffixes (lower-case
// LDH labels separated by dots, no leading or trailing dot).
func cairnParseSuffixes(s string) ([]string, error) {
	var out []string
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if err := cairnCheckSuffixSyntax(item); err != nil {
			return nil, fmt.Errorf("%q: %w", item, err)
		}
		out = append(out, item)
	}
	return out, nil
}

func cairnCheckSuffixSyntax(s string) error {
	if s == "" {
		return errors.New("empty suffix")
	}
	if len(s) > 253 {
		return errors.New("longer than 253 characters")
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 {
			return errors.New("not a DNS name (an empty label, a leading or trailing dot, or a label over 63 characters)")
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			ok := (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (c == '-' && i > 0 && i < len(label)-1)
			if !ok {
				return fmt.Errorf("label %q is not lower-case letters, digits and inner '-'", label)
			}
		}
	}
	return nil
}

// cairnCheckNotPublic refuses a suffix that is, or lies under, a suffix of
// the ICANN section of the public suffix list: names under it are
// accepted already, and a rule for it would change how Boulder groups
// public names.
func cairnCheckNotPublic(list *publicsuffix.List, s string) error {
	if r := list.Find(s, &publicsuffix.FindOptions{IgnorePrivate: true}); r != nil {
		if r.Value == s {
			return fmt.Errorf("%q is already a public suffix (names under it are accepted without it)", s)
		}
		return fmt.Errorf("%q lies under the public suffix %q (names under it are accepted without it)", s, r.Value)
	}
	return nil
}

// cairnAddSuffixes adds each suffix to list as a rule of its ICANN
// section, after checking none is public already.
func cairnAddSuffixes(list *publicsuffix.List, suffixes []string) error {
	for _, s := range suffixes {
		if err := cairnCheckSuffixSyntax(s); err != nil {
			return fmt.Errorf("%q: %w", s, err)
		}
		if err := cairnCheckNotPublic(list, s); err != nil {
			return err
		}
	}
	for _, s := range suffixes {
		r, err := publicsuffix.NewRule(s)
		if err != nil {
			return fmt.Errorf("%q: %w", s, err)
		}
		r.Private = false
		if err := list.AddRule(r); err != nil {
			return fmt.Errorf("%q: %w", s, err)
		}
	}
	return nil
}

// cairnParseNetworks parses a comma-separated list of CIDRs, each written
// as its network address (10.0.0.0/8, not 10.1.2.3/8).
func cairnParseNetworks(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		p, err := netip.ParsePrefix(item)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR network (e.g. 10.0.0.0/8)", item)
		}
		if p != p.Masked() {
			return nil, fmt.Errorf("%q is not a network address; write %s", item, p.Masked())
		}
		if p.Addr().Is4In6() {
			return nil, fmt.Errorf("%q is an IPv4-mapped IPv6 network; write the IPv4 network", item)
		}
		out = append(out, p)
	}
	return out, nil
}

// cairnSubtract is block minus every allowed network: nothing when an
// allowed network covers the block, the block itself when none overlaps
// it, else the largest prefixes that cover what remains.
func cairnSubtract(block netip.Prefix, allowed []netip.Prefix) []netip.Prefix {
	out := []netip.Prefix{block}
	for _, a := range allowed {
		var next []netip.Prefix
		for _, b := range out {
			next = append(next, cairnSubtractOne(b, a)...)
		}
		out = next
	}
	return out
}

func cairnSubtractOne(b, a netip.Prefix) []netip.Prefix {
	if b.Addr().Is4() != a.Addr().Is4() || !b.Overlaps(a) {
		return []netip.Prefix{b}
	}
	if a.Bits() <= b.Bits() {
		return nil // a covers b
	}
	// b covers a: halve b down to a, keeping each half a is not in.
	var out []netip.Prefix
	for cur := b; cur.Bits() < a.Bits(); {
		lo := netip.PrefixFrom(cur.Addr(), cur.Bits()+1)
		hi := netip.PrefixFrom(cairnSetBit(cur.Addr(), cur.Bits()), cur.Bits()+1)
		if lo.Contains(a.Addr()) {
			out, cur = append(out, hi), lo
		} else {
			out, cur = append(out, lo), hi
		}
	}
	return out
}

// cairnSetBit sets bit i (0 = most significant) of addr.
func cairnSetBit(addr netip.Addr, i int) netip.Addr {
	if addr.Is4() {
		b := addr.As4()
		b[i/8] |= 0x80 >> (i % 8)
		return netip.AddrFrom4(b)
	}
	b := addr.As16()
	b[i/8] |= 0x80 >> (i % 8)
	return netip.AddrFrom16(b)
}
