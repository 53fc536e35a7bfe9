package addition

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/weppos/publicsuffix-go/publicsuffix"
)

// The variables a rendered bundle sets on Boulder processes.
const (
	EnvSuffixes = cairnEnvSuffixes
	EnvNetworks = cairnEnvNetworks
)

var (
	//go:embed shared.go
	sharedSrc string
	//go:embed glue.go
	glueSrc string
	//go:embed selfcheck.go
	selfCheckSrc string
)

// SelfCheckPackage is the directory, inside Boulder's module, of the
// self-check program the overlay adds.
const SelfCheckPackage = "cairn-policycheck"

// Files are what cairn adds to Boulder's module when it builds it: path
// inside the module → content. The iana files sort after ip.go, so their
// init runs after Boulder's own.
func Files() map[string]string {
	return map[string]string{
		"iana/zz_cairn_shared.go":     strings.Replace(sharedSrc, "\npackage addition\n", "\npackage iana\n", 1),
		"iana/zz_cairn_glue.go":       strings.Replace(glueSrc, "//go:build ignore\n", "", 1),
		SelfCheckPackage + "/main.go": strings.Replace(selfCheckSrc, "//go:build ignore\n", "", 1),
	}
}

// Digest identifies the addition: binaries built with another (or none)
// are rebuilt.
func Digest() string {
	files := Files()
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	h := sha256.New()
	for _, n := range names {
		fmt.Fprintf(h, "%s\x00%d\x00%s", n, len(files[n]), files[n])
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// Env is what a Boulder process gets: the private suffixes for every
// component, the allowed networks too for a VA or remote VA.
func Env(suffixes, networks []string, validator bool) []string {
	var env []string
	if len(suffixes) > 0 {
		env = append(env, EnvSuffixes+"="+strings.Join(suffixes, ","))
	}
	if validator && len(networks) > 0 {
		env = append(env, EnvNetworks+"="+strings.Join(networks, ","))
	}
	return env
}

// CheckSuffix says why s cannot be a private suffix: not a DNS name, or
// already (under) a public suffix. Suffixes this process registered pass.
func CheckSuffix(s string) error {
	if err := cairnCheckSuffixSyntax(s); err != nil {
		return err
	}
	mu.Lock()
	mine := registered[s]
	mu.Unlock()
	if mine {
		return nil
	}
	return cairnCheckNotPublic(publicsuffix.DefaultList, s)
}

var (
	mu         sync.Mutex
	registered = map[string]bool{}
)

// Register makes this process's Boulder packages (the policy authority
// cairn validate uses) accept names under suffixes, as a Boulder process
// started with the bundle's environment does. It only ever adds: a
// process serves one cluster spec.
func Register(suffixes []string) error {
	mu.Lock()
	defer mu.Unlock()
	var add []string
	for _, s := range suffixes {
		if !registered[s] {
			add = append(add, s)
		}
	}
	if len(add) == 0 {
		return nil
	}
	if err := cairnAddSuffixes(publicsuffix.DefaultList, add); err != nil {
		return err
	}
	for _, s := range add {
		registered[s] = true
	}
	return nil
}

// ParseNetwork parses one allowed network (a CIDR written as its network
// address).
func ParseNetwork(s string) (netip.Prefix, error) {
	ps, err := cairnParseNetworks(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if len(ps) != 1 {
		return netip.Prefix{}, fmt.Errorf("%q is not one network", s)
	}
	return ps[0], nil
}

// Subtract is block minus the allowed networks, as the addition computes
// what stays reserved.
func Subtract(block netip.Prefix, allowed []netip.Prefix) []netip.Prefix {
	return cairnSubtract(block, allowed)
}

// SelfCheck is what the self-check program is run with and must answer,
// with and without the addition's environment.
var SelfCheck = struct {
	Env  []string
	Args []string
}{
	Env:  []string{EnvSuffixes + "=internal", EnvNetworks + "=10.0.0.0/8,fd00::/8"},
	Args: []string{"web1.corp.internal", "foo.example.invalid", "www.example.com", "10.1.2.3", "fd00::1", "192.168.1.1", "127.0.0.1", "fe80::1"},
}

// selfCheckWant: argument → accepted (a suffix, or not reserved) with the
// environment set, and without it.
var selfCheckWant = map[string][2]bool{
	"web1.corp.internal":  {true, false},
	"foo.example.invalid": {false, false},
	"www.example.com":     {true, true},
	"10.1.2.3":            {true, false},
	"fd00::1":             {true, false},
	"192.168.1.1":         {false, false},
	"127.0.0.1":           {false, false},
	"fe80::1":             {false, false},
}

// CheckSelfCheck reads the self-check program's output (run with
// SelfCheck.Env when withEnv) and says what differs from what the
// addition must do.
func CheckSelfCheck(out []byte, withEnv bool) error {
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var r struct{ In, Suffix, Err string }
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return fmt.Errorf("unexpected output %q", sc.Text())
		}
		want, ok := selfCheckWant[r.In]
		if !ok {
			return fmt.Errorf("unexpected answer for %q", r.In)
		}
		seen[r.In] = true
		accepted := r.Err == ""
		w := want[1]
		if withEnv {
			w = want[0]
		}
		if accepted != w {
			how := "without"
			if withEnv {
				how = "with"
			}
			if accepted {
				return fmt.Errorf("%s %s its environment: %s is accepted (suffix %q), must be refused", "the addition", how, r.In, r.Suffix)
			}
			return fmt.Errorf("%s %s its environment: %s is refused (%s), must be accepted", "the addition", how, r.In, r.Err)
		}
	}
	for _, a := range SelfCheck.Args {
		if !seen[a] {
			return fmt.Errorf("no answer for %s", a)
		}
	}
	return nil
}
