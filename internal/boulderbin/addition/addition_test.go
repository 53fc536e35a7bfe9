package addition

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/weppos/publicsuffix-go/publicsuffix"
)

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

// The set difference keeps a reserved block that no allowed network
// touches, drops one an allowed network covers, and splits one that
// covers an allowed network into what remains.
func TestSubtract(t *testing.T) {
	cases := []struct {
		block   string
		allowed []string
		want    []string
	}{
		{"10.0.0.0/8", []string{"10.0.0.0/8"}, nil},
		{"10.0.0.0/8", []string{"0.0.0.0/1"}, nil},
		{"192.168.0.0/16", []string{"10.0.0.0/8"}, []string{"192.168.0.0/16"}},
		{"192.168.0.0/16", []string{"fd00::/8"}, []string{"192.168.0.0/16"}},
		{"fc00::/7", []string{"fd00::/8"}, []string{"fc00::/8"}},
		{"10.0.0.0/8", []string{"10.1.0.0/16"}, []string{"10.128.0.0/9", "10.64.0.0/10", "10.32.0.0/11", "10.16.0.0/12",
			"10.8.0.0/13", "10.4.0.0/14", "10.2.0.0/15", "10.0.0.0/16"}},
		{"10.0.0.0/8", []string{"10.0.0.0/9", "10.128.0.0/9"}, nil},
		{"100.64.0.0/10", []string{"10.0.0.0/8", "100.100.0.0/16"}, []string{"100.64.0.0/11", "100.112.0.0/12", "100.104.0.0/13",
			"100.96.0.0/14", "100.102.0.0/15", "100.101.0.0/16"}},
	}
	for _, c := range cases {
		got := Subtract(netip.MustParsePrefix(c.block), prefixes(c.allowed...))
		if !slices.Equal(got, prefixes(c.want...)) {
			t.Errorf("%s minus %v = %v, want %v", c.block, c.allowed, got, c.want)
		}
	}
}

// Every address of a block: reserved after the subtraction exactly when
// it was reserved and is in no allowed network, and the parts never
// overlap.
func TestSubtractExhaustive(t *testing.T) {
	block := netip.MustParsePrefix("192.0.2.0/24")
	for _, allowed := range [][]string{
		{"192.0.2.0/25"}, {"192.0.2.77/32"}, {"192.0.2.64/27", "192.0.2.200/30"}, {"192.0.0.0/16"}, {"198.51.100.0/24"},
		{"192.0.2.0/28", "192.0.2.8/29"}, // one inside another
	} {
		nets := prefixes(allowed...)
		parts := Subtract(block, nets)
		for i := range 256 {
			a := netip.AddrFrom4([4]byte{192, 0, 2, byte(i)})
			in := 0
			for _, p := range parts {
				if p.Contains(a) {
					in++
				}
			}
			want := !slices.ContainsFunc(nets, func(n netip.Prefix) bool { return n.Contains(a) })
			if in > 1 || (in == 1) != want {
				t.Fatalf("%v: %s is in %d of the parts %v; want reserved=%v", allowed, a, in, parts, want)
			}
		}
	}
}

func TestParseNetworks(t *testing.T) {
	got, err := cairnParseNetworks("10.0.0.0/8, fd00::/8")
	if err != nil || !slices.Equal(got, prefixes("10.0.0.0/8", "fd00::/8")) {
		t.Fatalf("got %v, %v", got, err)
	}
	for _, bad := range []string{"", "10.0.0.0", "10.1.2.3/8", "::ffff:10.0.0.0/104", "10.0.0.0/8,", "nonsense/8"} {
		if _, err := cairnParseNetworks(bad); err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: err = %v, want one line", bad, err)
		}
	}
	if _, err := ParseNetwork("10.1.2.3/8"); err == nil || !strings.Contains(err.Error(), "write 10.0.0.0/8") {
		t.Errorf("ParseNetwork(10.1.2.3/8): %v", err)
	}
}

func TestParseSuffixes(t *testing.T) {
	got, err := cairnParseSuffixes("internal, corp.example-x,lan")
	if err != nil || !slices.Equal(got, []string{"internal", "corp.example-x", "lan"}) {
		t.Fatalf("got %v, %v", got, err)
	}
	for _, bad := range []string{"", ".internal", "internal.", "Corp", "a..b", "-x", "x-", "under_score", strings.Repeat("a", 64), "internal,"} {
		if _, err := cairnParseSuffixes(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// A private suffix may not be, or lie under, an ICANN suffix; a rule added
// makes names under it have that suffix, and nothing else changes.
func TestAddSuffixes(t *testing.T) {
	for _, public := range []string{"com", "co.uk", "corp.example.com", "home.arpa"} {
		if err := cairnCheckNotPublic(publicsuffix.DefaultList, public); err == nil {
			t.Errorf("%s accepted as a private suffix", public)
		}
	}
	list, err := publicsuffix.NewListFromString("com\n// ===BEGIN PRIVATE DOMAINS===\nblogspot.com\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	find := func(name string) string {
		r := list.Find(name, &publicsuffix.FindOptions{IgnorePrivate: true})
		if r == nil {
			return ""
		}
		return r.Value
	}
	if find("web1.corp.internal") != "" {
		t.Fatal("internal known before it was added")
	}
	if err := cairnAddSuffixes(list, []string{"internal", "corp.lan"}); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"web1.corp.internal": "internal", "a.corp.lan": "corp.lan", "x.lan": "", "x.com": "com", "x.blogspot.com": "com"} {
		if got := find(name); got != want {
			t.Errorf("%s: suffix %q, want %q", name, got, want)
		}
	}
	if err := cairnAddSuffixes(list, []string{"lan", "com"}); err == nil {
		t.Error("com added as a private suffix")
	} else if find("x.lan") != "" {
		t.Error("a refused list was partly added")
	}
}

func TestEnv(t *testing.T) {
	s, n := []string{"internal", "corp"}, []string{"10.0.0.0/8"}
	if got := Env(s, n, false); !slices.Equal(got, []string{"CAIRN_PRIVATE_SUFFIXES=internal,corp"}) {
		t.Errorf("Env(non-validator) = %v", got)
	}
	if got := Env(s, n, true); !slices.Equal(got, []string{"CAIRN_PRIVATE_SUFFIXES=internal,corp", "CAIRN_VALIDATION_ALLOWED_NETWORKS=10.0.0.0/8"}) {
		t.Errorf("Env(validator) = %v", got)
	}
	if got := Env(nil, nil, true); got != nil {
		t.Errorf("Env(nothing) = %v", got)
	}
}

// The shipped files are package iana, without the ignore constraint, and
// the digest changes with them.
func TestFiles(t *testing.T) {
	files := Files()
	for name, src := range files {
		pkg := "package iana\n"
		if strings.HasPrefix(name, SelfCheckPackage+"/") {
			pkg = "package main\n"
		}
		if !strings.Contains(src, "\n"+pkg) || strings.Contains(src, "go:build") {
			t.Errorf("%s: not a plain %q file", name, pkg)
		}
	}
	d := Digest()
	sharedSrc += "\n// changed\n"
	defer func() { sharedSrc = strings.TrimSuffix(sharedSrc, "\n// changed\n") }()
	if Digest() == d {
		t.Error("digest does not follow the files")
	}
}

func TestCheckSelfCheck(t *testing.T) {
	line := func(in, suffix, err string) string {
		return `{"In":"` + in + `","Suffix":"` + suffix + `","Err":"` + err + `"}` + "\n"
	}
	good := ""
	for _, a := range SelfCheck.Args {
		if selfCheckWant[a][0] {
			good += line(a, "x", "")
		} else {
			good += line(a, "", "refused")
		}
	}
	if err := CheckSelfCheck([]byte(good), true); err != nil {
		t.Fatal(err)
	}
	if err := CheckSelfCheck([]byte(good), false); err == nil || !strings.Contains(err.Error(), "without its environment") {
		t.Fatalf("without env: %v", err)
	}
	if err := CheckSelfCheck([]byte(line("web1.corp.internal", "internal", "")), true); err == nil || !strings.Contains(err.Error(), "no answer") {
		t.Fatalf("short output: %v", err)
	}
}
