package profiletest

import (
	"context"
	"crypto/x509"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/healthcheck"
	"github.com/cairn-pki/cairn/intermediates"
	"github.com/cairn-pki/cairn/internal/acmecli"
	"github.com/cairn-pki/cairn/internal/acmeclient"
	"github.com/cairn-pki/cairn/internal/labtest"
	"github.com/cairn-pki/cairn/internal/testenv"
	"github.com/cairn-pki/cairn/lab"
)

// On a two-site lab with the default profiles: every site's directory
// advertises the spec's profiles (the directory probe's profiles step
// passes, and fails against a spec with one more); a certificate ordered with shortlived is valid exactly as long
// as the spec says, one ordered with no profile as long as the default
// profile says, with the Go client at each site and with lego v5
// (--profile) through the ACME name.
func TestProfilesIssueWithTheirValidity(t *testing.T) {
	spec := labtest.SpecWith(t, labtest.BlockProfiles, "accounts: {replication: off}\n", "a", "b")
	lego5 := testenv.Tool(t, "lego5")
	testenv.Integration(t, "unshare", "mount")
	short, def := profile(t, spec, cluster.ShortLivedProfile), profile(t, spec, spec.ACME.DefaultProfile)
	if short.Validity == def.Validity {
		t.Fatalf("the default profile %s and %s have the same validity %s: the test could not tell them apart", def.Name, short.Name, def.Validity)
	}
	l := &lab.Lab{Spec: spec, Log: labtest.Log{T: t}, Cairn: labtest.CairnBinary(t)}
	ctx := context.Background()
	t.Cleanup(func() { l.Down(context.Background()) })
	if _, err := l.Up(ctx, lab.UpOptions{}); err != nil {
		t.Fatal(err)
	}
	targets, err := healthcheck.SiteTargets(spec)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Join(slices.Sorted(maps.Keys(spec.ProfileDescriptions())), ",")
	for _, tg := range targets {
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		r := healthcheck.ProbeDirectory(pctx, tg)
		cancel()
		if !r.OK || r.Facts[healthcheck.FactProfiles] != want {
			t.Errorf("site %s: directory probe %+v, want profiles %s", tg.Site, r, want)
		}
	}
	// Against a spec with one more profile, the sites (rendered from this
	// one) are not what it says.
	other := *spec
	other.Profiles = append(slices.Clone(spec.Profiles), cluster.Profile{Name: "extra", Validity: short.Validity, Description: "extra"})
	otherTargets, err := healthcheck.SiteTargets(&other)
	if err != nil {
		t.Fatal(err)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	r := healthcheck.ProbeDirectory(pctx, otherTargets[0])
	cancel()
	wantDetail := fmt.Sprintf("profiles differ from the spec: site has [%s], spec has [%s]", want,
		strings.Join(slices.Sorted(maps.Keys(other.ProfileDescriptions())), ","))
	if f := r.FailedStep(); f == nil || f.Name != healthcheck.StepProfiles || f.Detail != wantDetail {
		t.Errorf("directory probe against a spec with another profile: %+v, want step %s failing with %q", r, healthcheck.StepProfiles, wantDetail)
	}

	for _, tg := range targets {
		for _, p := range []struct{ ask, want cluster.Profile }{{short, short}, {cluster.Profile{}, def}} {
			leaf := issueGo(t, tg, p.ask.Name)
			t.Logf("site %s, profile %q: %s valid %s", tg.Site, p.ask.Name, leaf.DNSNames[0], validity(leaf))
			if got := validity(leaf); got != p.want.Validity.Duration {
				t.Errorf("site %s, profile %q: certificate valid %s, want %s (profile %s)", tg.Site, p.ask.Name, got, p.want.Validity, p.want.Name)
			}
		}
	}

	// lego v5 through the ACME name (site a is active), DNS-01 with the
	// clients' TSIG key, the cluster DNS as its resolver.
	leaf := issueLego5(t, spec, lego5, "--profile", short.Name)
	t.Logf("lego v5 --profile %s: %s valid %s, serial prefix %x", short.Name, leaf.DNSNames[0], validity(leaf), leaf.SerialNumber.Bytes()[0])
	if got := validity(leaf); got != short.Validity.Duration {
		t.Errorf("lego v5 --profile %s: certificate valid %s, want %s", short.Name, got, short.Validity)
	}
}

func profile(t *testing.T, spec *cluster.Spec, name string) cluster.Profile {
	t.Helper()
	for _, p := range spec.Profiles {
		if p.Name == name {
			return p
		}
	}
	t.Fatalf("no profile %q in the spec", name)
	return cluster.Profile{}
}

// validity is how long a certificate is valid, its last second included
// (RFC 5280: notAfter is inclusive).
func validity(c *x509.Certificate) time.Duration { return c.NotAfter.Sub(c.NotBefore) + time.Second }

// issueGo orders a certificate at the target's site with the Go client,
// asking for profile (none when "").
func issueGo(t *testing.T, tg *healthcheck.Target, profile string) *x509.Certificate {
	t.Helper()
	c, err := acmeclient.New(acmeclient.Options{DirectoryURL: tg.DirectoryURL, Roots: tg.Roots, ServerName: tg.ServerName,
		DialAddr: tg.DialAddr, DNS: *tg.DNS01, Profile: profile})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if _, err := c.Register(ctx); err != nil {
		t.Fatalf("site %s: register: %v", tg.Site, err)
	}
	name := fmt.Sprintf("p%d-%s.%s", time.Now().UnixNano(), tg.Site, tg.Zone)
	der, _, _, err := c.Issue(ctx, []string{name})
	if err != nil {
		t.Fatalf("site %s, profile %q: %v", tg.Site, profile, err)
	}
	leaf, err := x509.ParseCertificate(der[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf
}

// issueLego5 runs lego v5 (run, extra flags) against the ACME name and
// returns its certificate.
func issueLego5(t *testing.T, spec *cluster.Spec, prog string, extra ...string) *x509.Certificate {
	t.Helper()
	pki, err := intermediates.OpenReadOnly(spec)
	if err != nil {
		t.Fatal(err)
	}
	tg, err := healthcheck.SiteTargets(spec)
	if err != nil {
		t.Fatal(err)
	}
	primary := tg[0].DNS01
	dir := t.TempDir()
	resolv := filepath.Join(dir, "resolv.conf")
	host, _, _ := strings.Cut(primary.Server, ":")
	if err := os.WriteFile(resolv, acmecli.ResolvConf(host), 0o644); err != nil {
		t.Fatal(err)
	}
	domain := fmt.Sprintf("lego5-%d.%s", time.Now().Unix(), spec.ACME.Zone)
	l := acmecli.Lego5{Program: prog, Lego: acmecli.Lego{Server: "https://" + spec.ACME.Name + "/directory", Email: "ops@" + spec.ACME.Zone,
		Path: filepath.Join(dir, "lego"), Resolver: primary.Server, Domain: domain}}
	argv := acmecli.WithResolver(resolv, l.Args(extra...))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = acmecli.Lego5Env(os.Environ(), pki.RootCertFile(), primary.Server, spec.ACME.Zone, primary.Key)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("lego v5 %v: %v\n%s", extra, err, out)
	}
	leaf := labtest.ReadCert(t, filepath.Join(l.Path, "certificates", domain+".crt"))
	return leaf
}
