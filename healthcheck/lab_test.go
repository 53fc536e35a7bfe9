package healthcheck_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/cairn-pki/cairn/healthcheck"
	"github.com/cairn-pki/cairn/internal/labtest"
	"github.com/cairn-pki/cairn/lab"
)

func run(t *testing.T, tg *healthcheck.Target, kind string, timeout time.Duration) healthcheck.Result {
	t.Helper()
	fn, _ := healthcheck.KindFunc(kind)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return fn(ctx, tg)
}

func describe(r healthcheck.Result) string {
	s := r.Kind + ":"
	for _, st := range r.Steps {
		s += " " + st.Name
		if !st.OK {
			s += "[" + st.ErrorClass + " " + st.ACMEProblemType + " " + st.Detail + "]"
		}
	}
	return s
}

// Against the lab's real Boulder: every kind passes on a healthy site; a
// stopped SA leaves the directory answering while account and issuance
// fail; a stopped CT signer fails issuance at finalize only; a revoked
// probe certificate shows up in the CRL.
func TestProbesAgainstLabFaults(t *testing.T) {
	spec := labtest.Spec(t, labtest.BlockHealthcheck, "a", "b")
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
	a := targets[0]
	kinds := healthcheck.KindsIn(true)
	for _, k := range kinds {
		if r := run(t, a, k, 20*time.Second); !r.OK {
			t.Fatalf("healthy site: %s", describe(r))
		}
	}
	if r := run(t, a, healthcheck.KindDNS, 5*time.Second); r.Facts["activeSite"] != "a" {
		t.Errorf("dns probe: active site %q, want a", r.Facts["activeSite"])
	}

	// SA down: the directory still answers (Boulder serves it from memory).
	if err := l.StopComponent("a", "sa"); err != nil {
		t.Fatal(err)
	}
	if r := run(t, a, healthcheck.KindDirectory, 5*time.Second); !r.OK {
		t.Errorf("directory with SA down: %s", describe(r))
	}
	for _, k := range []string{healthcheck.KindAccount, healthcheck.KindIssuance} {
		const deadline = 5 * time.Second
		r := run(t, a, k, deadline)
		f := r.FailedStep()
		if r.OK || f == nil {
			t.Errorf("%s passed with the SA down: %s", k, describe(r))
			continue
		}
		if !slices.Contains([]string{healthcheck.ClassTimeout, healthcheck.ClassACME}, f.ErrorClass) || f.Name == "directory" {
			t.Errorf("%s with SA down failed at %s with class %q: %s", k, f.Name, f.ErrorClass, describe(r))
		}
		// The WFE answers 500 serverInternal: the probe fails at once
		// instead of retrying until its deadline (x/crypto's default).
		if f.ErrorClass == healthcheck.ClassACME && f.HTTPStatus >= 500 && r.Elapsed >= deadline/2 {
			t.Errorf("%s with SA down took %s of its %s deadline: a server error was retried", k, r.Elapsed, deadline)
		}
	}
	if err := l.StartComponent(ctx, "a", "sa"); err != nil {
		t.Fatal(err)
	}
	waitOK(t, a, healthcheck.KindAccount)

	// CT signer down: account fine, issuance fails at finalize.
	if err := l.StopComponent("a", "ct-test-srv"); err != nil {
		t.Fatal(err)
	}
	if r := run(t, a, healthcheck.KindAccount, 10*time.Second); !r.OK {
		t.Errorf("account with CT down: %s", describe(r))
	}
	r := run(t, a, healthcheck.KindIssuance, 15*time.Second)
	if f := r.FailedStep(); r.OK || f == nil || f.Name != "finalize" {
		t.Errorf("issuance with CT down should fail at finalize: %s", describe(r))
	}
	if err := l.StartComponent(ctx, "a", "ct-test-srv"); err != nil {
		t.Fatal(err)
	}
	waitOK(t, a, healthcheck.KindIssuance)

	// Revocation reaches the CRL (published here on demand, as crl-updater
	// would within its period).
	done := make(chan healthcheck.Result, 1)
	go func() { done <- run(t, a, healthcheck.KindRevocation, 90*time.Second) }()
	for {
		select {
		case r := <-done:
			if !r.OK || r.Facts["revocationDelaySeconds"] == "" {
				t.Fatalf("revocation: %s", describe(r))
			}
			return
		case <-time.After(3 * time.Second):
			if err := l.UpdateCRLs(ctx, "a"); err != nil {
				t.Log(err)
			}
		}
	}
}

func waitOK(t *testing.T, tg *healthcheck.Target, kind string) {
	t.Helper()
	var r healthcheck.Result
	for range 30 {
		if r = run(t, tg, kind, 10*time.Second); r.OK {
			return
		}
		time.Sleep(time.Second)
	}
	t.Fatalf("%s did not recover: %s", kind, describe(r))
}
