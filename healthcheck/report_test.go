package healthcheck

import (
	"math"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

func at(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }

func iss(site string, sec int, ok bool, step string) Sample {
	return Sample{Site: site, Kind: KindIssuance, At: at(sec), OK: ok, FailedStep: step}
}

func dnsAt(sec int, active string) Sample {
	return Sample{Site: active, Kind: KindDNS, At: at(sec), OK: true, ActiveSite: active}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestAvailabilityMaths(t *testing.T) {
	cases := []struct {
		name     string
		samples  []Sample
		from, to int
		uptime   float64
		outages  []float64 // seconds
		shares   map[string]float64
		ongoing  bool
	}{
		{"always up", []Sample{iss("a", 0, true, ""), iss("a", 600, true, "")}, 0, 1000, 100, nil,
			map[string]float64{"0s": 0, "30s": 0, "2m0s": 0, "10m0s": 0}, false},
		// Down from 100 to 400 (300 s) in 1000 s: 70 % up. A client that
		// retries 30 s fails if it starts in the first 270 s of the outage,
		// 2 min: 180 s, 10 min: never.
		{"one outage", []Sample{iss("a", 0, true, ""), iss("a", 100, false, "validation"), iss("a", 250, false, "validation"), iss("a", 400, true, "")}, 0, 1000, 70, []float64{300},
			map[string]float64{"0s": 0.3, "30s": 0.27, "2m0s": 0.18, "10m0s": 0}, false},
		// Two short outages of 20 s each: no client retrying 30 s loses anything.
		{"blips", []Sample{iss("a", 0, true, ""), iss("a", 100, false, "finalize"), iss("a", 120, true, ""), iss("a", 500, false, "finalize"), iss("a", 520, true, "")}, 0, 1000, 96, []float64{20, 20},
			map[string]float64{"0s": 0.04, "30s": 0, "2m0s": 0, "10m0s": 0}, false},
		// Still down at the end: the outage is ongoing and cut at "to".
		{"ongoing", []Sample{iss("a", 0, true, ""), iss("a", 800, false, "account")}, 0, 1000, 80, []float64{200},
			map[string]float64{"0s": 0.2, "30s": 0.17, "2m0s": 0.08, "10m0s": 0}, true},
		// The span starts inside an outage: only the part after "from" counts.
		{"from inside an outage", []Sample{iss("a", 0, false, "directory"), iss("a", 300, true, "")}, 100, 1100, 80, []float64{200},
			map[string]float64{"0s": 0.2, "30s": 0.17, "2m0s": 0.08, "10m0s": 0}, false},
		// Before the first sample the state is unknown and not counted.
		{"unknown start", []Sample{iss("a", 500, true, ""), iss("a", 750, false, "ca"), iss("a", 1000, true, "")}, 0, 1000, 50, []float64{250},
			map[string]float64{"0s": 0.5, "30s": 0.44, "2m0s": 0.26, "10m0s": 0}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rep := Compute(tc.samples, KindIssuance, at(tc.from), at(tc.to))
			if len(rep.Sites) != 1 {
				t.Fatalf("sites: %+v", rep.Sites)
			}
			a := rep.Sites[0]
			if !near(a.UptimePct, tc.uptime) {
				t.Errorf("uptime %.3f, want %.3f", a.UptimePct, tc.uptime)
			}
			if len(a.Outages) != len(tc.outages) {
				t.Fatalf("outages %+v, want %v", a.Outages, tc.outages)
			}
			for i, o := range a.Outages {
				if !near(o.Seconds, tc.outages[i]) {
					t.Errorf("outage %d: %.0f s, want %.0f", i, o.Seconds, tc.outages[i])
				}
				if o.FailingStep == "" {
					t.Errorf("outage %d has no failing step", i)
				}
			}
			if len(a.Outages) > 0 && a.Outages[len(a.Outages)-1].Ongoing != tc.ongoing {
				t.Errorf("ongoing = %v", !tc.ongoing)
			}
			for w, want := range tc.shares {
				if !near(a.FailedShare[w], want) {
					t.Errorf("share(%s) = %.4f, want %.4f", w, a.FailedShare[w], want)
				}
			}
		})
	}
}

// The service follows the ACME name: a's outage after the switch to b does
// not count against the service.
func TestServiceFollowsTheACMEName(t *testing.T) {
	samples := []Sample{
		dnsAt(0, "a"), iss("a", 0, true, ""), iss("b", 0, true, ""),
		iss("a", 100, false, "sa"), // a fails at 100
		dnsAt(160, "b"),            // the name moves to b at 160
		iss("a", 900, true, ""),    // a comes back much later
	}
	rep := Compute(samples, KindIssuance, at(0), at(1000))
	if rep.Service == nil {
		t.Fatal("no service availability")
	}
	if len(rep.Service.Outages) != 1 || !near(rep.Service.Outages[0].Seconds, 60) {
		t.Fatalf("service outages %+v, want one of 60 s", rep.Service.Outages)
	}
	if !near(rep.Service.FailedShare["30s"], 0.03) || rep.Service.FailedShare["2m0s"] != 0 {
		t.Errorf("service shares %v", rep.Service.FailedShare)
	}
	var a Availability
	for _, s := range rep.Sites {
		if s.Name == "a" {
			a = s
		}
	}
	if !near(a.Outages[0].Seconds, 800) {
		t.Errorf("site a outage %+v", a.Outages)
	}
}

func TestPercentiles(t *testing.T) {
	v := []float64{}
	for i := 100; i >= 1; i-- {
		v = append(v, float64(i))
	}
	st := Percentiles(map[[3]string][]float64{{"a", "issuance", "finalize"}: v, {"a", "issuance", "new-order"}: {7}})
	if len(st) != 2 || st[0].Step != "finalize" || st[0].P50ms != 50 || st[0].P95ms != 95 || st[0].Count != 100 {
		t.Errorf("%+v", st[0])
	}
	if st[1].P50ms != 7 || st[1].P95ms != 7 {
		t.Errorf("%+v", st[1])
	}
}
