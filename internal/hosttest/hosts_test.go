package hosttest

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/hostrun"
	"github.com/cairn-pki/cairn/internal/acmecli"
	"github.com/cairn-pki/cairn/internal/dnstest"
	"github.com/cairn-pki/cairn/internal/labtest"
	"github.com/cairn-pki/cairn/internal/rfc2136"
	"github.com/cairn-pki/cairn/internal/testenv"
	"github.com/cairn-pki/cairn/lab"
	"github.com/cairn-pki/cairn/site"
)

// hostLab is a running lab and the cairn CLI that drives it.
type hostLab struct {
	t     *testing.T
	spec  *cluster.Spec
	lab   *lab.Lab
	cairn string
}

// cli is `cairn -f SPEC lab exec --host NAME -- argv…` (the user's way).
func (h *hostLab) cli(ctx context.Context, host string, argv ...string) *exec.Cmd {
	args := append([]string{"-f", h.spec.File, "lab", "exec", "--host", host, "--"}, argv...)
	return exec.CommandContext(ctx, h.cairn, args...)
}

// output runs argv on host and returns its standard output.
func (h *hostLab) output(host string, argv ...string) string {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := h.cli(ctx, host, argv...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		h.t.Fatalf("lab exec --host %s -- %s: %v\n%s%s", host, strings.Join(argv, " "), err, out, stderr.String())
	}
	return string(out)
}

// env reads one variable of the host's environment (as lab exec sets it).
func (h *hostLab) env(host, name string) string {
	return strings.TrimSpace(h.output(host, "sh", "-c", `printf '%s\n' "$`+name+`"`))
}

// lookup asks server for name's A records.
func lookup(t *testing.T, server, name string) []string {
	t.Helper()
	r, err := rfc2136.Client{Server: server}.Query(context.Background(), name, dns.TypeA)
	if err != nil {
		t.Fatalf("%s A at %s: %v", name, server, err)
	}
	var out []string
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			out = append(out, a.A.String())
		}
	}
	return out
}

// until polls cond every 50 ms until it is true or within passes, then
// fails with what describe says about the last state.
func until(t *testing.T, within time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s (last: %s)", what, within, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A client host is a network namespace with an address of its own in the
// lab's client network, its name in the cluster DNS, the lab's resolver
// and root: the ACME directory answers there through the ACME name, a
// server on its port 80 or 443 answers this machine (as the VAs connect),
// lego issues with DNS-01 from it, and lab down removes it all.
func TestClientHosts(t *testing.T) {
	testenv.Integration(t, "lego", "curl", "python3", "getent", "unshare")
	// Validation may reach the client hosts (lab.clientNetwork,
	// 10.77.<block>.0/24 by default), as in cairn init's lab.
	// The sites' VAs ask the organisation's resolver (a BIND of this
	// test, serving internal.) for every name outside the ACME zone.
	orgDNS := fmt.Sprintf("127.0.%d.200", labtest.BlockHosts)
	spec := labtest.SpecWith(t, labtest.BlockHosts, fmt.Sprintf("validation:\n  allowedNetworks: [10.77.%d.0/24]\n  resolvers: [%s]\npolicy:\n  privateSuffixes: [internal]\n",
		labtest.BlockHosts, orgDNS), "a")
	l := &lab.Lab{Spec: spec, Log: labtest.Log{T: t}, Cairn: labtest.CairnBinary(t)}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	t.Cleanup(func() { l.Down(context.Background()) })
	sum, err := l.Up(ctx, lab.UpOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h := &hostLab{t: t, spec: spec, lab: l, cairn: labtest.CairnBinary(t)}
	clients := cluster.LabClientNetwork(spec)
	zone := spec.ACME.Zone

	// Its own network namespace, its own address in the clients' block.
	self, _ := os.Readlink("/proc/self/ns/net")
	made := time.Now()
	out := h.output("web1", "sh", "-c", `readlink /proc/self/ns/net; ip -4 -o addr show dev eth0; printf '%s %s\n' "$CAIRN_LAB_HOST" "$CAIRN_LAB_HOST_ADDRESS"`)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || lines[0] == self {
		t.Fatalf("web1 is not in a network namespace of its own (this one %s):\n%s", self, out)
	}
	fields := strings.Fields(lines[2])
	addr1, err := netip.ParseAddr(fields[len(fields)-1])
	if err != nil || !clients.Contains(addr1) || fields[0] != "web1."+zone || !strings.Contains(lines[1], " "+addr1.String()+"/") {
		t.Fatalf("web1: want an address of %s on eth0 and CAIRN_LAB_HOST web1.%s:\n%s", clients, zone, out)
	}
	t.Logf("web1: %s; first lab exec --host (host made) %.2fs", lines[1], time.Since(made).Seconds())
	// Kept: the second run is the same host.
	made = time.Now()
	if again := h.env("web1", "CAIRN_LAB_HOST_ADDRESS"); again != addr1.String() {
		t.Fatalf("web1's address changed from %s to %s between two runs", addr1, again)
	}
	t.Logf("second lab exec --host web1 (host kept) %.2fs", time.Since(made).Seconds())
	addr2, err := netip.ParseAddr(h.env("web2", "CAIRN_LAB_HOST_ADDRESS"))
	if err != nil || addr2 == addr1 || !clients.Contains(addr2) {
		t.Fatalf("web2 has %v (%v), web1 %s: want two addresses of %s", addr2, err, addr1, clients)
	}

	// Names: in the cluster DNS (every server, as the VAs ask), and from
	// inside through the host's resolver.
	for _, srv := range spec.DNSAddresses() {
		until(t, 30*time.Second, "web1."+zone+" at "+srv, func() (bool, string) {
			got := lookup(t, srv, "web1."+zone)
			return len(got) == 1 && got[0] == addr1.String(), fmt.Sprint(got)
		})
	}
	if got := strings.Fields(h.output("web2", "getent", "ahostsv4", "web1."+zone)); len(got) == 0 || got[0] != addr1.String() {
		t.Errorf("web1.%s from inside web2: %v, want %s", zone, got, addr1)
	}

	// The ACME directory over HTTPS through the ACME name, from inside.
	dir := h.output("web1", "curl", "-sS", "--max-time", "20", sum.DirectoryURL)
	if !strings.Contains(dir, `"newNonce"`) {
		t.Fatalf("directory from web1: %s", dir)
	}

	// Issuance from the hosts with every challenge type (before the
	// servers below take ports 80 and 443 of web1).
	issueEveryChallenge(t, h, sum.DirectoryURL)

	// A name of the organisation's DNS (not the ACME zone), pointing at
	// web1: HTTP-01 validates it through validation.resolvers.
	orgName := "app.corp.internal"
	// (It serves the whole private TLD, as the organisation's resolvers
	// answer for it: CAA is looked up up to "internal".)
	dnstest.BIND(t, orgDNS, dnstest.Zone{Zone: "internal", Name: orgName, EpochName: "_unused.internal", Initial: addr1.String(), Key: dnstest.Default.Key})
	org := acmecli.Lego{Server: sum.DirectoryURL, Email: "ops@" + zone, Path: filepath.Join(t.TempDir(), "lego-org"), Domain: orgName, Challenge: cluster.ChallengeHTTP01}
	h.output("web1", org.Args("run")...)
	if leaf := labtest.ReadCert(t, org.CertFile()); len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != orgName {
		t.Errorf("lego --http for %s (the organisation's DNS) from web1: certificate for %v", orgName, leaf.DNSNames)
	}

	// lego v5 asks for the shortlived profile (HTTP-01 from web1): the
	// certificate is valid as long as the spec's profile says.
	short := shortLived(t, spec)
	l5 := acmecli.Lego5{Program: testenv.Tool(t, "lego5"), Profile: short.Name, Lego: acmecli.Lego{Server: sum.DirectoryURL, Email: "ops@" + zone,
		Path: filepath.Join(t.TempDir(), "lego5"), Domain: "web1." + zone, Challenge: cluster.ChallengeHTTP01}}
	h.output("web1", l5.Args()...)
	leaf := labtest.ReadCert(t, l5.CertFile())
	if got := leaf.NotAfter.Sub(leaf.NotBefore) + time.Second; got != short.Validity.Duration {
		t.Errorf("lego v5 --profile %s --http from web1: certificate valid %s, want %s", short.Name, got, short.Validity)
	}

	// Servers on ports 80 and 443 inside web1 answer at its address from
	// this namespace, from any source address, as a VA bound to a site's
	// loopback address connects.
	www := t.TempDir()
	if err := os.WriteFile(filepath.Join(www, "marker"), []byte("inside web1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	serve := h.cli(ctx, "web1", "sh", "-c", `python3 -m http.server --bind 0.0.0.0 --directory "$0" 80 & exec python3 -m http.server --bind 0.0.0.0 --directory "$0" 443`, www)
	serve.Stdout, serve.Stderr = io.Discard, io.Discard
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- serve.Wait() }()
	vaSource := &net.TCPAddr{IP: net.ParseIP(spec.Sites[0].Address)}
	for _, port := range []string{"80", "443"} {
		for _, local := range []*net.TCPAddr{nil, vaSource} {
			client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DialContext: (&net.Dialer{LocalAddr: local}).DialContext}}
			url := "http://" + net.JoinHostPort(addr1.String(), port) + "/marker"
			until(t, 30*time.Second, fmt.Sprintf("GET %s from %v", url, local), func() (bool, string) {
				resp, err := client.Get(url)
				if err != nil {
					return false, err.Error()
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return string(b) == "inside web1\n", resp.Status + " " + string(b)
			})
		}
	}

	// The hosts' key writes host records only: never the ACME name, never
	// a DNS-01 record.
	cb, err := site.ReadClusterBundle(filepath.Join(spec.Dir, "cluster"))
	if err != nil {
		t.Fatal(err)
	}
	hostsKey, err := rfc2136.ReadKey(cb.HostsKey)
	if err != nil {
		t.Fatal(err)
	}
	hc := rfc2136.Client{Server: spec.PrimaryDNS().String(), Key: hostsKey, TCP: true}
	steal := new(dns.Msg)
	steal.SetUpdate(zone + ".")
	steal.Insert([]dns.RR{&dns.A{Hdr: dns.RR_Header{Name: spec.ACME.Name + ".", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 30}, A: addr1.AsSlice()}})
	var ue *rfc2136.UpdateError
	if err := hc.Update(ctx, steal); !errors.As(err, &ue) || ue.Rcode != "REFUSED" {
		t.Errorf("the hosts' key writing the ACME name: %v, want REFUSED", err)
	}
	if err := hc.SetTXT(ctx, zone, true, "_acme-challenge.web1."+zone, "x", 10); !errors.As(err, &ue) || ue.Rcode != "REFUSED" {
		t.Errorf("the hosts' key writing a DNS-01 record: %v, want REFUSED", err)
	}

	// lab down: the processes left in web1 end, and the namespaces,
	// interfaces and names go.
	hosts := l.Hosts()
	if len(hosts) != 2 {
		t.Fatalf("lab state has %d hosts, want 2: %+v", len(hosts), hosts)
	}
	links := []string{l.ClientBridge()}
	for _, hst := range hosts {
		links = append(links, hst.Veth)
	}
	for _, link := range links {
		if _, err := os.Stat("/sys/class/net/" + link); err != nil {
			t.Fatalf("interface %s of the client hosts: %v", link, err)
		}
	}
	if !leftRoutes(t, clients) {
		t.Fatalf("no route to %s while client hosts run", clients)
	}
	if err := l.Down(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-served:
	case <-time.After(30 * time.Second):
		t.Fatal("the server in web1 still runs after lab down")
	}
	for _, hst := range hosts {
		if _, err := os.Stat("/run/netns/" + hst.Netns); err == nil {
			t.Errorf("network namespace %s is left after lab down", hst.Netns)
		}
	}
	for _, link := range links {
		if _, err := os.Stat("/sys/class/net/" + link); err == nil {
			t.Errorf("interface %s is left after lab down", link)
		}
	}
	if leftRoutes(t, clients) {
		t.Errorf("a route to %s is left after lab down", clients)
	}
	// The records: the primary alone back up (with its loopback address,
	// which down removed) answers none.
	primary := spec.PrimaryDNS().Addr().String()
	if added, err := hostrun.AddLoopback(primary); err != nil {
		t.Fatal(err)
	} else if added {
		t.Cleanup(func() { hostrun.RemoveLoopback(primary) })
	}
	for _, p := range []string{site.PolicyProcess, "dns-primary"} {
		if err := l.StartComponent(ctx, "cluster", p); err != nil {
			t.Fatal(err)
		}
	}
	until(t, 30*time.Second, "the primary serves the zone again", func() (bool, string) {
		r, err := rfc2136.Client{Server: spec.PrimaryDNS().String()}.Query(ctx, zone, dns.TypeSOA)
		return err == nil && len(r.Answer) > 0, fmt.Sprint(err)
	})
	for _, name := range []string{"web1." + zone, "web2." + zone} {
		if got := lookup(t, spec.PrimaryDNS().String(), name); len(got) > 0 {
			t.Errorf("%s still has A %v after lab down", name, got)
		}
	}
}

// shortLived is the spec's shortlived profile.
func shortLived(t *testing.T, spec *cluster.Spec) cluster.Profile {
	t.Helper()
	for _, p := range spec.Profiles {
		if p.Name == cluster.ShortLivedProfile {
			return p
		}
	}
	t.Fatalf("the spec has no %s profile", cluster.ShortLivedProfile)
	return cluster.Profile{}
}

// issueRounds: one round in `make test`; the figures in docs/lab.md are
// from `go test -run TestClientHosts -v ./internal/hosttest/ -args -issue-rounds 5`.
var issueRounds = flag.Int("issue-rounds", 1, "lego runs per challenge type (figures: 5)")

// issueEveryChallenge has lego issue from the client hosts with each
// challenge type, as users run it with lab exec --host: DNS-01 (the lab's
// RFC2136_*), HTTP-01 (lego's server on web1's port 80), TLS-ALPN-01 (on
// web2's port 443), each run with a new account, so a new authorization
// the VA validates. Rounds of one run per type; the times (from the
// command's start to its end, as a user waits) are logged for docs/lab.md.
func issueEveryChallenge(t *testing.T, h *hostLab, directory string) {
	t.Helper()
	rounds := *issueRounds
	zone := h.spec.ACME.Zone
	kinds := []struct{ challenge, host string }{
		{cluster.ChallengeDNS01, "web1"}, {cluster.ChallengeHTTP01, "web1"}, {cluster.ChallengeTLSALPN01, "web2"},
	}
	took := map[string][]time.Duration{}
	dir := t.TempDir()
	for i := range rounds {
		for _, k := range kinds {
			lego := acmecli.Lego{Server: directory, Email: "ops@" + zone, Path: filepath.Join(dir, fmt.Sprintf("%s-%d", k.challenge, i)),
				Resolver: h.spec.PrimaryDNS().String(), Domain: k.host + "." + zone, Challenge: k.challenge}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			start := time.Now()
			out, err := h.cli(ctx, k.host, lego.Args("run")...).CombinedOutput()
			d := time.Since(start)
			cancel()
			if err != nil {
				t.Fatalf("lego %s from %s: %v\n%s", k.challenge, k.host, err, out)
			}
			// A new account has no valid authorization to reuse: the VA
			// validated this one.
			if !strings.Contains(string(out), "The server validated our request") {
				t.Fatalf("lego %s from %s issued without a validation:\n%s", k.challenge, k.host, out)
			}
			t.Logf("lego %s from %s, run %d: %.1f s", k.challenge, k.host, i+1, d.Seconds())
			took[k.challenge] = append(took[k.challenge], d)
			cert := labtest.ReadCert(t, lego.CertFile())
			if len(cert.DNSNames) != 1 || cert.DNSNames[0] != lego.Domain {
				t.Errorf("lego %s from %s: the certificate names %v, want %s", k.challenge, k.host, cert.DNSNames, lego.Domain)
			}
		}
	}
	for _, k := range kinds {
		d := slices.Sorted(slices.Values(took[k.challenge]))
		t.Logf("issuance with lego %s from %s, %d runs (a new account each): p50 %.1f s (%.1f–%.1f s)",
			k.challenge, k.host, len(d), d[len(d)/2].Seconds(), d[0].Seconds(), d[len(d)-1].Seconds())
	}
}

// leftRoutes reports whether the main table still routes into clients.
func leftRoutes(t *testing.T, clients netip.Prefix) bool {
	t.Helper()
	out, err := exec.Command("ip", "-4", "route", "show", "table", "main").Output()
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if p, err := netip.ParsePrefix(f[0]); err == nil && p.Overlaps(clients) {
			return true
		}
		if a, err := netip.ParseAddr(f[0]); err == nil && clients.Contains(a) {
			return true
		}
	}
	return false
}
