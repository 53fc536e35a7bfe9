package healthcheck

import (
	"bytes"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cairn-pki/cairn/internal/testenv"
)

// The exposition passes promtool's lint (names, units, suffixes, help).
func TestMetricsPassPromtool(t *testing.T) {
	testenv.Integration(t, "promtool")
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	now := time.Now()
	m.Observe(Result{Site: "a", Kind: KindTLS, OK: true, Started: now, Elapsed: 3 * time.Millisecond,
		Steps: []Step{{Name: "handshake", OK: true, Duration: 2 * time.Millisecond}}, Facts: map[string]string{"notAfter": now.Add(90 * 24 * time.Hour).Format(time.RFC3339)}})
	m.Observe(Result{Site: "b", Kind: KindIssuance, Started: now, Elapsed: 80 * time.Millisecond,
		Steps: []Step{{Name: "new-order", OK: true}, {Name: "finalize", ErrorClass: ClassACME, ACMEProblemType: "urn:ietf:params:acme:error:serverInternal"}}})
	// The controller's confirmation of that failure: a run like any other, counted as a confirmation too.
	m.Observe(Result{Site: "b", Kind: KindIssuance, Started: now, Elapsed: 60 * time.Millisecond, Confirmation: true,
		Steps: []Step{{Name: "new-order", OK: true}, {Name: "finalize", ErrorClass: ClassACME, ACMEProblemType: "urn:ietf:params:acme:error:serverInternal"}}})
	m.Observe(Result{Site: "a", Kind: KindCRL, OK: true, Started: now, Steps: []Step{{Name: "crl", OK: true}},
		Facts: map[string]string{NextUpdateFact + "cairn lab a E1": now.Add(9 * 24 * time.Hour).Format(time.RFC3339)}})
	m.Observe(Result{Site: "a", Kind: KindReplication, OK: true, Started: now, Steps: []Step{{Name: "from b", OK: true}},
		Facts: map[string]string{FactLagSeconds + "b": "0", FactForeignWrites + "b": "2", "skippedRows": "3"}})
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`cairn_accounts_foreign_writes_total{peer="b",site="a"} 2`,
		`cairn_probe_success{kind="issuance",site="b"} 0`,
		`cairn_probe_runs_total{kind="issuance",result="acme",site="b"} 2`,
		`cairn_probe_confirmations_total{kind="issuance",result="acme",site="b"} 1`,
		`cairn_probe_acme_problems_total{kind="issuance",site="b",type="serverInternal"} 2`,
		`cairn_probe_step_success{kind="issuance",site="b",step="finalize"} 0`,
		`cairn_certificate_expiry_timestamp_seconds{site="a"}`,
		`cairn_crl_next_update_timestamp_seconds{issuer="cairn lab a E1",site="a"}`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	cmd := exec.Command("promtool", "check", "metrics")
	cmd.Stdin = bytes.NewBufferString(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

// The count of rows a site refused from a peer lives in the site's
// database: the counter follows it across probes and controller restarts,
// and starts over when the site's count went down.
func TestForeignWritesFollowTheSite(t *testing.T) {
	observe := func(m *Metrics, n string) {
		m.Observe(Result{Site: "b", Kind: KindReplication, OK: true, Facts: map[string]string{FactForeignWrites + "a": n}})
	}
	m := NewMetrics(prometheus.NewRegistry())
	for _, tc := range []struct {
		count string
		want  float64
	}{{"0", 0}, {"2", 2}, {"2", 2}, {"5", 5}, {"1", 1}} {
		observe(m, tc.count)
		if got := testutil.ToFloat64(m.foreign.WithLabelValues("b", "a")); got != tc.want {
			t.Errorf("after a count of %s: counter %v, want %v", tc.count, got, tc.want)
		}
	}
	restarted := NewMetrics(prometheus.NewRegistry())
	observe(restarted, "7")
	if got := testutil.ToFloat64(restarted.foreign.WithLabelValues("b", "a")); got != 7 {
		t.Errorf("a restarted controller exports %v, want the site's count 7", got)
	}
}

// A site's release, read from its directory's header, is one series that
// follows the site's upgrades.
func TestSiteReleaseFollowsTheDirectory(t *testing.T) {
	r := newRecorder("a", KindDirectory)
	recordRelease(r, "site=a; boulder=v0.20260921.0; bundle=0123abcd4567")
	res := r.done()
	if res.Facts[FactBoulderVersion] != "v0.20260921.0" || res.Facts[FactBundle] != "0123abcd4567" {
		t.Fatalf("facts %v", res.Facts)
	}
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	m.Observe(res)
	res.Facts[FactBundle] = "89abcdef0123"
	m.Observe(res)
	if n := testutil.CollectAndCount(m.release); n != 1 {
		t.Errorf("%d release series after an upgrade, want 1", n)
	}
	if v := testutil.ToFloat64(m.release.WithLabelValues("a", "v0.20260921.0", "89abcdef0123")); v != 1 {
		t.Errorf("new release = %v", v)
	}
}
