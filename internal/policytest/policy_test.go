// Package policytest runs a lab whose cluster uses cairn's changes to
// Boulder's rules (docs/policy.md): a zone under a private suffix and
// networks validation may reach. Test-only: no product code lives here.
package policytest

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/acme"

	"github.com/cairn-pki/cairn/internal/labtest"
	"github.com/cairn-pki/cairn/lab"
)

// With acme.zone corp.internal and privateSuffixes [internal], the lab's
// real Boulder (built with cairn's addition) issues for
// web1.corp.internal through DNS-01 (policy authority, RA, CA lints and
// ceremony lints all pass), still refuses a name under no suffix with
// rejectedIdentifier, offers the three challenge types, and gives the
// allowed networks to the VA and remote VAs only.
func TestPrivateSuffixIssues(t *testing.T) {
	spec := labtest.SpecWith(t, labtest.BlockPolicy,
		"acme:\n  zone: corp.internal\npolicy:\n  privateSuffixes: [internal]\n  allowedNames: [corp.internal]\nvalidation:\n  allowedNetworks: [10.0.0.0/8]\n", "a")
	l := &lab.Lab{Spec: spec, Log: labtest.Log{T: t}, Cairn: labtest.CairnBinary(t)}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	t.Cleanup(func() { l.Down(context.Background()) })
	sum, err := l.Up(ctx, lab.UpOptions{})
	if err != nil {
		t.Fatal(err)
	}

	c := labtest.ACMEClient(t, spec, 0, sum.RootCert, sum.ClientKey, sum.DNS)
	pool := x509.NewCertPool()
	pool.AddCert(labtest.ReadCert(t, sum.RootCert))
	if _, err := c.Register(ctx); err != nil {
		t.Fatal(err)
	}

	// The challenge types the spec lists, offered for a name under the
	// private suffix.
	order, err := c.ACME().AuthorizeOrder(ctx, acme.DomainIDs("web1.corp.internal"))
	if err != nil {
		t.Fatalf("order for web1.corp.internal: %v", err)
	}
	authz, err := c.ACME().GetAuthorization(ctx, order.AuthzURLs[0])
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, ch := range authz.Challenges {
		types = append(types, ch.Type)
	}
	slices.Sort(types)
	if want := []string{"dns-01", "http-01", "tls-alpn-01"}; !slices.Equal(types, want) {
		t.Errorf("challenges offered: %v, want %v", types, want)
	}

	start := time.Now()
	der, _, steps, err := c.Issue(ctx, []string{"web1.corp.internal"})
	if err != nil {
		t.Fatalf("issuing web1.corp.internal: %v", err)
	}
	t.Logf("issued web1.corp.internal through DNS-01 in %s (%v)", time.Since(start).Round(time.Millisecond), steps)
	leaf, err := x509.ParseCertificate(der[0])
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(leaf.DNSNames, []string{"web1.corp.internal"}) {
		t.Errorf("certificate names %v", leaf.DNSNames)
	}
	inter := x509.NewCertPool()
	for _, d := range der[1:] {
		if ic, err := x509.ParseCertificate(d); err == nil {
			inter.AddCert(ic)
		}
	}
	chains, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, DNSName: "web1.corp.internal"})
	if err != nil {
		t.Errorf("certificate does not verify for web1.corp.internal: %v", err)
	}
	// Its intermediate is name-constrained to the private zone
	// (policy.allowedNames), and cairn's own signing of it passed the
	// linter with the private suffix in its URLs.
	for _, ch := range chains {
		if !slices.Equal(ch[1].PermittedDNSDomains, []string{"corp.internal"}) {
			t.Errorf("issued by %s, constrained to %v", ch[1].Subject, ch[1].PermittedDNSDomains)
		}
	}

	// Nothing else is loosened: a name under no suffix, public or
	// private, is refused as before.
	_, err = c.ACME().AuthorizeOrder(ctx, acme.DomainIDs("foo.example.invalid"))
	var ae *acme.Error
	if !errors.As(err, &ae) || ae.ProblemType != "urn:ietf:params:acme:error:rejectedIdentifier" {
		t.Fatalf("order for foo.example.invalid: want rejectedIdentifier, got %v", err)
	}
	t.Logf("foo.example.invalid refused: %s", ae.Detail)

	// The running processes' environment: the suffixes everywhere in
	// Boulder, the networks in the VAs only.
	st, err := l.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, p := range st.Sites[0].Processes {
		isVA := p.Name == "va" || strings.HasPrefix(p.Name, "rva")
		if !isVA && p.Name != "ra" && p.Name != "wfe" && p.Name != "ca" {
			continue
		}
		seen++
		env := environ(t, p.PID)
		if !slices.Contains(env, "CAIRN_PRIVATE_SUFFIXES=internal") {
			t.Errorf("%s runs without the private suffixes", p.Name)
		}
		if got := slices.Contains(env, "CAIRN_VALIDATION_ALLOWED_NETWORKS=10.0.0.0/8"); got != isVA {
			t.Errorf("%s has the allowed networks: %v, want %v", p.Name, got, isVA)
		}
	}
	if seen != 7 {
		t.Errorf("checked %d processes, want 7 (va, rva1-3, ra, wfe, ca)", seen)
	}
}

// environ is a running process's environment.
func environ(t *testing.T, pid int) []string {
	t.Helper()
	if pid == 0 {
		t.Fatal("process not running")
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
}
