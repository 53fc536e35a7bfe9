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
	// Accounts replicate: lego v5 renews at b with its site-a account. A
	// fast policy: the operator's move waits for b to be seen healthy.
	spec := labtest.SpecWith(t, labtest.BlockProfiles, "failover:\n  upAfter: 3\n  stablePeriod: 3s\n", "a", "b")
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
	client := newLego5(t, spec, lego5)
	_, leaf := client.run("--profile", short.Name)
	t.Logf("lego v5 --profile %s: %s valid %s, serial prefix %x", short.Name, leaf.DNSNames[0], validity(leaf), leaf.SerialNumber.Bytes()[0])
	if got := validity(leaf); got != short.Validity.Duration {
		t.Errorf("lego v5 --profile %s: certificate valid %s, want %s", short.Name, got, short.Validity)
	}
	renewalInfoAfterAMove(t, spec, l, client, leaf, "--profile", short.Name, "--no-random-sleep")
}

// renewalInfoAfterAMove: the ACME name moves to b; lego v5 asks b for its
// site-a certificate's ARI window (RFC 9773) and gets a's answer through
// b's front (not 404 "unknown issuer"), so it keeps the certificate;
// once a revoked it, b's answer says "renew now" and lego renews at b.
func renewalInfoAfterAMove(t *testing.T, spec *cluster.Spec, l *lab.Lab, client *lego5Client, leaf *x509.Certificate, flags ...string) {
	if leaf.SerialNumber.Bytes()[0] != spec.Sites[0].SerialPrefix.Value() {
		t.Fatalf("lego v5's certificate (serial %x) is not from site a", leaf.SerialNumber)
	}
	cairn := func(args ...string) (string, error) {
		cmd := exec.Command(l.Cairn, append([]string{"-f", spec.File}, args...)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	testenv.WaitFor(t, "failover move --to b (the controller has seen b healthy)", 3*time.Minute, func() bool {
		_, err := cairn("failover", "move", "--to", "b")
		return err == nil
	})
	forwarded := func() float64 {
		return labtest.Sample(labtest.FrontMetrics(t, l.SiteDir("b")), "cairn_front_renewal_info_forwarded_total ")
	}
	before := forwarded()
	out, kept := client.run(flags...)
	if kept.SerialNumber.Cmp(leaf.SerialNumber) != 0 {
		t.Errorf("lego v5 renewed a certificate ARI says is not due (serial %x → %x):\n%s", leaf.SerialNumber, kept.SerialNumber, out)
	}
	// lego warns ("Calling renewal info endpoint") when the lookup fails.
	if strings.Contains(out, "WARN") || forwarded() != before+1 {
		t.Errorf("lego v5 after the move: forwarded %v → %v, output:\n%s", before, forwarded(), out)
	}
	if out, err := cairn("revoke", "--cert", filepath.Join(client.l.Path, "certificates", client.domain+".crt"), "--reason", "keyCompromise"); err != nil {
		t.Fatalf("cairn revoke: %v\n%s", err, out)
	}
	out, renewed := client.run(flags...)
	if renewed.SerialNumber.Cmp(leaf.SerialNumber) == 0 || renewed.SerialNumber.Bytes()[0] != spec.Sites[1].SerialPrefix.Value() {
		t.Errorf("after the revocation at a, lego v5 did not renew at b (serial %x → %x):\n%s", leaf.SerialNumber, renewed.SerialNumber, out)
	}
	t.Logf("lego v5 after the move: ARI answered through b's front (kept %x); revoked at a → renewed at b (%x)", kept.SerialNumber, renewed.SerialNumber)
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
// lego5Client is lego v5 with one state directory and name, through the
// ACME name with DNS-01 (the clients' TSIG key, the cluster DNS as its
// resolver).
type lego5Client struct {
	t      *testing.T
	l      acmecli.Lego5
	env    []string
	resolv string
	domain string
}

func newLego5(t *testing.T, spec *cluster.Spec, prog string) *lego5Client {
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
	return &lego5Client{t: t, resolv: resolv, domain: domain,
		l: acmecli.Lego5{Program: prog, Lego: acmecli.Lego{Server: "https://" + spec.ACME.Name + "/directory", Email: "ops@" + spec.ACME.Zone,
			Path: filepath.Join(dir, "lego"), Resolver: primary.Server, Domain: domain}},
		env: acmecli.Lego5Env(os.Environ(), pki.RootCertFile(), primary.Server, spec.ACME.Zone, primary.Key)}
}

// run runs lego v5 run (issue, or renew when ARI or its window says so)
// and returns its output and its certificate.
func (c *lego5Client) run(extra ...string) (string, *x509.Certificate) {
	c.t.Helper()
	argv := acmecli.WithResolver(c.resolv, c.l.Args(extra...))
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = c.env
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		c.t.Fatalf("lego v5 %v: %v\n%s", extra, err, out)
	}
	return string(out), labtest.ReadCert(c.t, filepath.Join(c.l.Path, "certificates", c.domain+".crt"))
}
