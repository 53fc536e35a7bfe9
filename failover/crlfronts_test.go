package failover

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cairn-pki/cairn/healthcheck"
	"github.com/cairn-pki/cairn/site"
)

// front feeds one crlfront result of site.
func (r *rig) front(site string, ok bool) {
	res := healthcheck.Result{Site: site, Kind: healthcheck.KindCRLFront, OK: ok, Started: r.now,
		Steps: []healthcheck.Step{{Name: "crl http://crl/1.crl", OK: ok}}}
	if !ok {
		res.Steps[0].ErrorClass, res.Steps[0].Detail = healthcheck.ClassTimeout, "dial tcp: i/o timeout"
	}
	r.c.Sink(res)
}

// crlNames is what every CRL name lists now, by name.
func (r *rig) crlNames() map[string][]string {
	r.t.Helper()
	out := map[string][]string{}
	for _, n := range site.CRLNames(r.c.Spec) {
		set, err := r.dns.ReadA(context.Background(), n.Name)
		if err != nil {
			r.t.Fatal(err)
		}
		out[n.Name] = set.Addrs
	}
	return out
}

// everyName checks that every CRL name lists exactly the fronts of sites.
func (r *rig) everyName(sites ...string) {
	r.t.Helper()
	var want []string
	for _, f := range site.CRLNames(r.c.Spec)[0].Fronts {
		if slices.Contains(sites, f.Site) {
			want = append(want, f.Addr.String())
		}
	}
	slices.Sort(want)
	for name, got := range r.crlNames() {
		if !slices.Equal(got, want) {
			r.t.Fatalf("%s lists %v, want the fronts of %v: %v", name, got, sites, want)
		}
	}
}

func TestCRLFrontWithdrawnAndPutBack(t *testing.T) {
	r := newRig(t, nil)
	var rechecks []string
	r.c.Recheck = func(site, kind string, _ time.Duration) bool {
		rechecks = append(rechecks, site+"/"+kind)
		return true
	}
	names := site.CRLNames(r.c.Spec)
	if len(names) != 3 || len(names[0].Fronts) != 3 {
		t.Fatalf("CRL names of a 3-site spec: %+v", names)
	}
	var all []string
	for _, f := range names[0].Fronts {
		all = append(all, f.Addr.String())
	}
	for _, n := range names {
		r.dns.SetA(n.Name, all, 30)
	}
	// A front another controller withdrew before this one started stays
	// out until this one has probed it.
	r.dns.SetA(names[0].Name, all[:2], 30)
	withdrawn := func(s string) float64 {
		return testutil.ToFloat64(r.c.metrics.withdrawn.WithLabelValues(s))
	}
	// Nothing probed yet: the names stay as they are.
	r.step()
	if n := r.dns.RecordsWritten(); n != 0 {
		t.Fatalf("%d writes before any probe", n)
	}
	r.front("a", true)
	r.front("b", true)
	r.step()
	if got := r.crlNames()[names[0].Name]; !slices.Equal(got, all[:2]) || r.dns.RecordsWritten() != 0 {
		t.Fatalf("%s lists %v before c's front was probed (%d writes)", names[0].Name, got, r.dns.RecordsWritten())
	}
	r.front("c", true)
	r.step()
	r.everyName("a", "b", "c")

	// One failure: confirmed at once, not yet withdrawn.
	r.front("b", false)
	r.step()
	r.everyName("a", "b", "c")
	if !slices.Equal(rechecks, []string{"b/" + healthcheck.KindCRLFront}) {
		t.Fatalf("confirmation probes asked: %v", rechecks)
	}
	// The second: b's front leaves every name, the ACME name stays.
	r.front("b", false)
	r.step()
	r.everyName("a", "c")
	if r.served() != "a" || withdrawn("b") != 1 || withdrawn("a") != 0 {
		t.Fatalf("active %s, withdrawn a=%v b=%v", r.served(), withdrawn("a"), withdrawn("b"))
	}
	st := r.c.Status().CRLFronts
	if len(st) != 3 || !st[1].Withdrawn || st[1].Site != "b" || st[0].Withdrawn {
		t.Fatalf("status: %+v", st)
	}
	// One success is not enough; two put it back.
	r.front("b", true)
	r.step()
	r.everyName("a", "c")
	r.front("b", true)
	r.step()
	r.everyName("a", "b", "c")
	if withdrawn("b") != 0 {
		t.Fatal("b still counted withdrawn")
	}

	// Every front failing: every name keeps every front (never none).
	for range frontFailsToWithdraw {
		for _, s := range []string{"a", "b", "c"} {
			r.front(s, false)
		}
	}
	r.step()
	r.everyName("a", "b", "c")
	for range frontOKsToRestore {
		for _, s := range []string{"a", "b", "c"} {
			r.front(s, true)
		}
	}

	// A failed write is retried at the next decision.
	r.front("c", false)
	r.front("c", false)
	r.dns.FailNext(errors.New("primary unreachable"))
	r.step()
	r.step()
	r.everyName("a", "b")
	r.front("c", true)
	r.front("c", true)
	r.step()
	r.everyName("a", "b", "c")

	// A name changed behind the controller's back is put right within
	// crlNamesEvery, not before.
	r.dns.SetA(names[0].Name, all[:1], 30)
	writes := r.dns.RecordsWritten()
	r.step()
	if r.dns.RecordsWritten() != writes {
		t.Fatal("the names were read back before their interval")
	}
	r.advance(crlNamesEvery)
	r.step()
	r.everyName("a", "b", "c")
	if got := testutil.ToFloat64(r.c.metrics.crlUpdates.WithLabelValues("ok")); got != float64(r.dns.RecordsWritten()) {
		t.Fatalf("updates metric %v, writes %d", got, r.dns.RecordsWritten())
	}
}
