package ssupolicy_test

import (
	"context"
	"errors"
	"fmt"
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
	"github.com/cairn-pki/cairn/internal/dnstest"
	"github.com/cairn-pki/cairn/internal/labtest"
	"github.com/cairn-pki/cairn/internal/rfc2136"
	"github.com/cairn-pki/cairn/site"
)

// The cluster zone's primary, rendered as the lab renders it and started
// as the lab starts it (BIND with its update-policy server; PowerDNS with
// its Lua policy): the clients' shared key writes _acme-challenge TXT
// records only, a client's own key only its own; a key added later is
// granted once the render that sees it restarts the primary.
func TestClusterDNSUpdatePolicy(t *testing.T) {
	for _, provider := range []string{cluster.DNSProviderRFC2136, cluster.DNSProviderPowerDNS} {
		t.Run(provider, func(t *testing.T) { testPolicy(t, provider) })
	}
}

// dnsServer is one rendered and running cluster DNS primary.
type dnsServer struct {
	t       *testing.T
	spec    *cluster.Spec
	public  string
	resolve func(string) (string, error)
	cb      *site.ClusterBundle
}

func (s *dnsServer) render() *site.ClusterBundle {
	s.t.Helper()
	cb, err := site.RenderCluster(site.ClusterOptions{Spec: s.spec, Out: filepath.Join(s.spec.Dir, "cluster"), PublicDir: s.public})
	if err != nil {
		s.t.Fatal(err)
	}
	s.cb = cb
	return cb
}

// start starts the named processes of the bundle (the lab's way).
func (s *dnsServer) start(names ...string) {
	s.t.Helper()
	for _, p := range s.cb.Processes {
		if slices.Contains(names, p.Name) {
			if err := hostrun.StartProc(context.Background(), hostrun.NewProc(p, s.cb.Root), s.resolve, s.t.Logf); err != nil {
				s.t.Fatalf("%v%s", err, s.logs())
			}
		}
	}
	// The server takes connections before its zone is loaded (SERVFAIL
	// until then): wait for the zone's SOA.
	if slices.Contains(names, "dns-primary") {
		var last error
		for start := time.Now(); ; time.Sleep(50 * time.Millisecond) {
			r, err := rfc2136.Client{Server: s.spec.PrimaryDNS().String()}.Query(context.Background(), s.spec.ACME.Zone, dns.TypeSOA)
			if err == nil && len(r.Answer) > 0 {
				break
			}
			if last = err; time.Since(start) > 30*time.Second {
				s.t.Fatalf("the primary does not serve the zone's SOA after 30 s (last error: %v)%s", last, s.logs())
			}
		}
	}
}

// logs are the primary's and the policy server's logs, for a failure.
func (s *dnsServer) logs() string {
	var b strings.Builder
	for _, f := range []string{"named.log", site.PolicyProcess + ".log", "dns-primary.log"} {
		if log, err := os.ReadFile(filepath.Join(s.cb.Root, "var", "logs", f)); err == nil {
			fmt.Fprintf(&b, "\n--- %s:\n%s", f, log)
		}
	}
	return b.String()
}

func (s *dnsServer) stop(name string) {
	s.t.Helper()
	for _, p := range s.cb.Processes {
		if p.Name == name {
			if _, err := hostrun.NewProc(p, s.cb.Root).Stop(10 * time.Second); err != nil {
				s.t.Fatal(err)
			}
		}
	}
}

func addClientKey(t *testing.T, spec *cluster.Spec, name string) rfc2136.Key {
	t.Helper()
	k, err := site.AddClientKey(spec, name)
	if err != nil {
		t.Fatal(err)
	}
	return k.Key
}

func testPolicy(t *testing.T, provider string) {
	spec := labtest.SpecWithDNS(t, labtest.BlockDNSPolicy, provider, "", "a")
	zone, primary := spec.ACME.Zone, spec.PrimaryDNS()
	dnstest.Loopback(t, primary.Addr().String())
	cairn := labtest.CairnBinary(t)
	s := &dnsServer{t: t, spec: spec, public: t.TempDir(), resolve: func(name string) (string, error) {
		if name == "cairn" {
			return cairn, nil
		}
		return hostrun.LookProgram(name)
	}}
	one, two := "one."+zone, "two."+zone
	oneKey, twoKey := addClientKey(t, spec, one), addClientKey(t, spec, two)
	cb := s.render()
	procs := []string{"dns-primary"}
	if provider == cluster.DNSProviderRFC2136 {
		procs = []string{site.PolicyProcess, "dns-primary"}
	}
	t.Cleanup(func() {
		for _, p := range procs {
			s.stop(p)
		}
	})
	s.start(procs...)
	shared, err := rfc2136.ReadKey(cb.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// BIND answers REFUSED; a PowerDNS 4.7 Lua policy can only fail the
	// update, which PowerDNS answers SERVFAIL.
	want := "REFUSED"
	if provider == cluster.DNSProviderPowerDNS {
		want = "SERVFAIL"
	}
	txt := func(name string) []string {
		t.Helper()
		r, err := rfc2136.Client{Server: primary.String()}.Query(ctx, name, dns.TypeTXT)
		if err != nil {
			t.Fatal(err)
		}
		var v []string
		for _, rr := range r.Answer {
			if tr, ok := rr.(*dns.TXT); ok {
				v = append(v, strings.Join(tr.Txt, ""))
			}
		}
		return v
	}
	allow := func(key rfc2136.Key, name string) {
		t.Helper()
		c := rfc2136.Client{Server: primary.String(), Key: key}
		if err := c.SetTXT(ctx, zone, true, name, "token-"+key.Name, 10); err != nil {
			t.Fatalf("key %s may write %s TXT: %v%s", key.Name, name, err, s.logs())
		}
		if got := txt(name); !slices.Contains(got, "token-"+key.Name) {
			t.Fatalf("after the update, %s TXT is %q", name, got)
		}
		if err := c.SetTXT(ctx, zone, false, name, "token-"+key.Name, 10); err != nil {
			t.Fatalf("key %s may delete its %s TXT: %v", key.Name, name, err)
		}
	}
	refuse := func(key rfc2136.Key, name string) {
		t.Helper()
		before := txt(name)
		err := rfc2136.Client{Server: primary.String(), Key: key}.SetTXT(ctx, zone, true, name, "forged", 10)
		var ue *rfc2136.UpdateError
		if !errors.As(err, &ue) || ue.Rcode != want {
			t.Fatalf("key %s writing %s TXT: want %s, got %v%s", key.Name, name, want, err, s.logs())
		}
		if after := txt(name); !slices.Equal(before, after) {
			t.Fatalf("a refused update changed %s TXT: %q -> %q", name, before, after)
		}
	}

	// The clients' shared key: any _acme-challenge record in the zone.
	allow(shared, "_acme-challenge.host."+zone)
	allow(shared, "_acme-challenge."+zone) // certificates for the apex
	allow(shared, "_acme-challenge."+one)
	refuse(shared, zone)                      // the apex
	refuse(shared, "www."+zone)               // any other name
	refuse(shared, spec.EpochName())          // the controller's epoch record
	refuse(shared, "x._acme-challenge."+zone) // the label must come first
	// Other types at a DNS-01 name are refused too.
	c := rfc2136.Client{Server: primary.String(), Key: shared}
	m := new(dns.Msg)
	m.SetUpdate(dns.Fqdn(zone))
	m.Insert([]dns.RR{&dns.A{Hdr: dns.RR_Header{Name: dns.Fqdn("_acme-challenge.host." + zone), Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 10}, A: netip.MustParseAddr("127.0.0.9").AsSlice()}})
	var ue *rfc2136.UpdateError
	if err := c.Update(ctx, m); !errors.As(err, &ue) || ue.Rcode != want {
		t.Fatalf("shared key writing an A record at a DNS-01 name: want %s, got %v", want, err)
	}

	// A client's own key: its own record, nothing else.
	allow(oneKey, "_acme-challenge."+one)
	allow(twoKey, "_acme-challenge."+two)
	refuse(oneKey, "_acme-challenge."+two)
	refuse(oneKey, "_acme-challenge.host."+zone)
	refuse(oneKey, one)
	refuse(twoKey, zone)

	// The lab's hosts key: A records of client hosts below the zone, none
	// of the cluster's own names, no DNS-01 record.
	hostsKey, err := rfc2136.ReadKey(cb.HostsKey)
	if err != nil {
		t.Fatal(err)
	}
	setA := func(key rfc2136.Key, name string) error {
		m := new(dns.Msg)
		m.SetUpdate(dns.Fqdn(zone))
		m.RemoveRRset([]dns.RR{&dns.A{Hdr: dns.RR_Header{Name: dns.Fqdn(name), Rrtype: dns.TypeA, Class: dns.ClassINET}}})
		m.Insert([]dns.RR{&dns.A{Hdr: dns.RR_Header{Name: dns.Fqdn(name), Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 10}, A: netip.MustParseAddr("10.77.0.2").AsSlice()}})
		return rfc2136.Client{Server: primary.String(), Key: key}.Update(ctx, m)
	}
	if err := setA(hostsKey, "web1."+zone); err != nil {
		t.Fatalf("the hosts key writing web1 A: %v%s", err, s.logs())
	}
	if r, err := (rfc2136.Client{Server: primary.String()}).Query(ctx, "web1."+zone, dns.TypeA); err != nil || len(r.Answer) != 1 {
		t.Fatalf("web1 A after the hosts key's update: %v %v", r, err)
	}
	for _, name := range site.ClusterNames(spec) {
		if err := setA(hostsKey, name); !errors.As(err, &ue) || ue.Rcode != want {
			t.Fatalf("the hosts key writing %s A: want %s, got %v", name, want, err)
		}
	}
	refuse(hostsKey, "_acme-challenge.web1."+zone)
	if err := setA(shared, "web2."+zone); !errors.As(err, &ue) || ue.Rcode != want {
		t.Fatalf("the clients' key writing a host's A record: want %s, got %v", want, err)
	}

	if provider == cluster.DNSProviderRFC2136 {
		// The controller's key keeps its own records (granted before the
		// policy server is asked) and gets no DNS-01 record.
		ctl, err := rfc2136.ReadKey(cb.ControllerKey)
		if err != nil {
			t.Fatal(err)
		}
		allow(ctl, spec.EpochName())
		refuse(ctl, "_acme-challenge.host."+zone)
		// It may rewrite the CRL names' addresses (withdrawing a CRL
		// front that does not serve), and no other A record.
		names := site.CRLNames(spec)
		if len(names) == 0 {
			t.Fatal("the spec has no CRL name in the zone")
		}
		for _, n := range names {
			if err := setA(ctl, n.Name); err != nil {
				t.Fatalf("the controller's key writing %s A: %v%s", n.Name, err, s.logs())
			}
		}
		for _, name := range []string{"www." + zone, "one." + zone} {
			if err := setA(ctl, name); !errors.As(err, &ue) || ue.Rcode != want {
				t.Fatalf("the controller's key writing %s A: want %s, got %v", name, want, err)
			}
		}
		// The acceptance, with the real client: nsupdate -k
		// tsig-clients.key adding an apex TXT record is refused.
		cmd := exec.Command("nsupdate", "-k", cb.ClientKey)
		cmd.Stdin = strings.NewReader(fmt.Sprintf("server %s %d\nzone %s\nupdate add %s. 10 TXT \"forged\"\nsend\n", primary.Addr(), primary.Port(), zone, zone))
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "REFUSED") {
			t.Fatalf("nsupdate -k %s adding an apex TXT record: %v\n%s", cb.ClientKey, err, out)
		}
		t.Logf("nsupdate -k tsig-clients.key, apex TXT: %s", strings.TrimSpace(string(out)))
		// Fail closed: with its policy server down, BIND refuses what
		// the server would allow.
		s.stop(site.PolicyProcess)
		refuse(shared, "_acme-challenge.host."+zone)
		s.start(site.PolicyProcess)
		allow(shared, "_acme-challenge.host."+zone)
	}

	// A render that changes nothing restarts nothing.
	if again := s.render(); len(again.Changed) != 0 {
		t.Fatalf("a second render with no change marks %v changed", again.Changed)
	}
	// A key added later: the next render marks the primary changed, and
	// once restarted (as lab up does) it grants the new key.
	threeKey := addClientKey(t, spec, "three."+zone)
	later := s.render()
	if !slices.Contains(later.Changed, "dns-primary") {
		t.Fatalf("adding a client key changed %v, not the primary", later.Changed)
	}
	if err := hostrun.StopChanged(later, t.Logf); err != nil {
		t.Fatal(err)
	}
	s.start(procs...)
	allow(threeKey, "_acme-challenge.three."+zone)
	refuse(threeKey, "_acme-challenge."+one)
	allow(oneKey, "_acme-challenge."+one)
	// A removed key is refused after the next render and restart.
	if err := site.RemoveClientKey(spec, two); err != nil {
		t.Fatal(err)
	}
	if err := hostrun.StopChanged(s.render(), t.Logf); err != nil {
		t.Fatal(err)
	}
	s.start(procs...)
	err = rfc2136.Client{Server: primary.String(), Key: twoKey}.SetTXT(ctx, zone, true, "_acme-challenge."+two, "x", 10)
	if err == nil {
		t.Fatal("a removed client key still writes its record")
	}
	t.Logf("removed key: %v", err)
}
