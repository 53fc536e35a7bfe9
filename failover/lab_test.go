package failover_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/cairn-pki/cairn/acmedns"
	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/failover"
	"github.com/cairn-pki/cairn/internal/labtest"
	"github.com/cairn-pki/cairn/internal/rfc2136"
	"github.com/cairn-pki/cairn/internal/testenv"
	"github.com/cairn-pki/cairn/lab"
)

// Fast policy for tests: 3 deep successes over 3 s make a site healthy; 15 s hold-down.
const fastPolicy = "failover:\n  upAfter: 3\n  stablePeriod: 3s\n  holdDown: 15s\n"

func status(t testing.TB, spec *cluster.Spec) failover.Status {
	t.Helper()
	resp, err := http.Get("http://" + spec.Failover.Listen + "/api/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st failover.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

var waitFor = testenv.WaitFor

// answers is what every authoritative server says the ACME name is.
func answers(spec *cluster.Spec) []string {
	var out []string
	for _, s := range spec.DNS.Servers {
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(spec.ACME.Name), dns.TypeA)
		r, err := dns.Exchange(m, s.Address)
		if err != nil || len(r.Answer) == 0 {
			out = append(out, "?")
			continue
		}
		out = append(out, r.Answer[0].(*dns.A).A.String())
	}
	return out
}

func allAnswer(spec *cluster.Spec, site string) bool {
	s, _ := spec.SiteByName(site)
	for _, a := range answers(spec) {
		if a != s.Address {
			return false
		}
	}
	return true
}

// decided waits until the controller has made n more decisions.
func decided(t *testing.T, spec *cluster.Spec, n int64) {
	t.Helper()
	base := status(t, spec).Decisions
	waitFor(t, fmt.Sprintf("%d more decisions", n), 30*time.Second, func() bool { return status(t, spec).Decisions >= base+n })
}

func epoch(t *testing.T, spec *cluster.Spec) acmedns.Epoch {
	a, err := acmedns.FromSpec(spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	cur, err := a.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return cur.Epoch
}

func pidOf(t *testing.T, l *lab.Lab, path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.Fields(string(b))[0])
	return pid
}

func TestLabFailsOverByItself(t *testing.T) {
	spec := labtest.SpecWith(t, labtest.BlockFailover, fastPolicy, "a", "b", "c")
	l := &lab.Lab{Spec: spec, Log: labtest.Log{T: t}, Cairn: labtest.CairnBinary(t)}
	ctx := context.Background()
	t.Cleanup(func() { l.Down(context.Background()) })
	if _, err := l.Up(ctx, lab.UpOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every site healthy", 60*time.Second, func() bool {
		for _, s := range status(t, spec).Sites {
			if s.State != failover.Healthy {
				return false
			}
		}
		return true
	})
	if st := status(t, spec); st.Active != "a" || !st.Leading || st.Leader != st.Controller {
		t.Fatalf("active %s (want a), leader %q, leading %v (the lab's controller leads its embedded etcd)", st.Active, st.Leader, st.Leading)
	}

	// SIGKILL site a's WFE: the name moves to b on every authoritative server.
	siteDir := func(s string) string { return filepath.Join(spec.Dir, "sites", s) }
	syscall.Kill(pidOf(t, l, filepath.Join(siteDir("a"), "var", "pids", "wfe.pid")), syscall.SIGKILL)
	d := waitFor(t, "the name on b", 30*time.Second, func() bool { return allAnswer(spec, "b") })
	t.Logf("hard down (SIGKILL wfe): every authoritative server answers b %.1f s after the kill", d.Seconds())
	st := status(t, spec)
	if len(st.Moves) != 1 || st.Moves[0].To != "b" || !strings.Contains(st.Moves[0].Reason, "down") {
		t.Fatalf("moves: %+v", st.Moves)
	}

	// Stop b's SA while its directory still answers: after the hold-down
	// the name moves on to c.
	if err := l.StopComponent("b", "sa"); err != nil {
		t.Fatal(err)
	}
	d = waitFor(t, "the name on c", 60*time.Second, func() bool { return allAnswer(spec, "c") })
	t.Logf("deep failure (b's SA stopped): the name is on c %.1f s later (includes the rest of the hold-down)", d.Seconds())
	e := epoch(t, spec)
	if e.Site != "c" || e.N != 2 {
		t.Fatalf("epoch %+v", e)
	}

	// Restart the controller right after the move: it converges on what
	// DNS says and makes no second move.
	cb := filepath.Join(spec.Dir, "cluster", "var", "pids", "controller.pid")
	old := pidOf(t, l, cb)
	syscall.Kill(old, syscall.SIGKILL)
	waitFor(t, "the old controller to die", 10*time.Second, func() bool {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", old))
		return err != nil || strings.Contains(string(b), ") Z ")
	})
	if err := l.StartComponent(ctx, "cluster", "controller"); err != nil {
		t.Fatal(err)
	}
	// It has judged every site, then decided five more times: a second
	// move would have been made by now.
	waitFor(t, "the restarted controller to judge every site", 60*time.Second, func() bool {
		for _, s := range status(t, spec).Sites {
			if s.State == failover.Unknown {
				return false
			}
		}
		return true
	})
	decided(t, spec, 5)
	if e2 := epoch(t, spec); e2.N != e.N {
		t.Fatalf("the restarted controller moved again: epoch %d -> %d (%s)", e.N, e2.N, e2.Reason)
	}
	if st := status(t, spec); st.Active != "c" || len(st.Moves) != 1 || st.Moves[0].Epoch != e.N {
		t.Fatalf("restarted controller: active %s, moves %+v", st.Active, st.Moves)
	}

	// The status page, rendered by Chromium, shows every site and the active one.
	if _, err := exec.LookPath("chromium"); err == nil || os.Getenv("CI") != "" {
		dom := chromium(t, "--dump-dom", "http://"+spec.Failover.Listen+"/")
		for _, want := range []string{">a<", ">b<", "c ◀ active", "healthy", "down"} {
			if !strings.Contains(dom, want) {
				t.Errorf("status page lacks %q", want)
			}
		}
		shot := filepath.Join(t.TempDir(), "status.png")
		chromium(t, "--screenshot="+shot, "--window-size=1100,700", "http://"+spec.Failover.Listen+"/")
		if st, err := os.Stat(shot); err != nil || st.Size() < 5000 {
			t.Errorf("screenshot: %v %v", st, err)
		}
		if dir := os.Getenv("CAIRN_SCREENSHOT_DIR"); dir != "" {
			b, _ := os.ReadFile(shot)
			os.WriteFile(filepath.Join(dir, "failover-status.png"), b, 0o644)
		}
	}

	// All sites down: DNS stays on c and the alert is raised.
	if err := l.StopComponent("c", "wfe"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the no-healthy-site alert", 30*time.Second, func() bool { return status(t, spec).Alert })
	decided(t, spec, 5)
	if !allAnswer(spec, "c") {
		t.Fatalf("DNS changed with every site down: %v", answers(spec))
	}
	resp, err := http.Get("http://" + spec.Failover.Listen + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "cairn_failover_no_healthy_site 1") {
		t.Error("alert metric not set")
	}
	if !strings.Contains(string(body), "cairn_failover_leader 1") {
		t.Error("leadership metric not 1 on the lab's only controller")
	}
	if e3 := epoch(t, spec); e3.N != e.N {
		t.Errorf("epoch changed with every site down: %+v", e3)
	}
}

func chromium(t *testing.T, args ...string) string { t.Helper(); return testenv.Chromium(t, args...) }

// A lab whose cairn.yaml selects PowerDNS as the cluster DNS: PowerDNS is
// the primary (the controller writes through its API, fenced through
// etcd; clients' DNS-01 arrives as RFC 2136 under a Lua policy), Knot the
// secondary; the name fails over end to end.
func TestLabWithPowerDNSFailsOver(t *testing.T) {
	spec := labtest.SpecWithDNS(t, labtest.BlockPowerDNS, cluster.DNSProviderPowerDNS, fastPolicy, "a", "b")
	l := &lab.Lab{Spec: spec, Log: labtest.Log{T: t}, Cairn: labtest.CairnBinary(t)}
	ctx := context.Background()
	t.Cleanup(func() { l.Down(context.Background()) })
	if _, err := l.Up(ctx, lab.UpOptions{}); err != nil {
		t.Fatal(err)
	}
	// Healthy needs deep probes: issuance proves DNS-01 through PowerDNS.
	waitFor(t, "every site healthy", 90*time.Second, func() bool {
		for _, s := range status(t, spec).Sites {
			if s.State != failover.Healthy {
				return false
			}
		}
		return true
	})
	// The clients' key may not touch the epoch record (the Lua policy).
	clientKey, err := rfc2136.ReadKey(spec.Path(spec.DNS.TSIG.ClientKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	cl := rfc2136.Client{Server: spec.PrimaryDNS().String(), Key: clientKey}
	if err := cl.SetTXT(ctx, spec.ACME.Zone, true, spec.EpochName(), "forged", 10); err == nil {
		t.Fatal("the clients' key wrote the epoch record")
	}
	if err := cl.SetTXT(ctx, spec.ACME.Zone, true, "_acme-challenge.x."+spec.ACME.Zone, "ok", 10); err != nil {
		t.Fatalf("the clients' key may write DNS-01 records: %v", err)
	}

	siteDir := func(s string) string { return filepath.Join(spec.Dir, "sites", s) }
	syscall.Kill(pidOf(t, l, filepath.Join(siteDir("a"), "var", "pids", "wfe.pid")), syscall.SIGKILL)
	d := waitFor(t, "the name on b at PowerDNS and Knot", 30*time.Second, func() bool { return allAnswer(spec, "b") })
	t.Logf("PowerDNS: every authoritative server answers b %.1f s after the kill", d.Seconds())
	st := status(t, spec)
	if len(st.Moves) != 1 || st.Moves[0].To != "b" || st.Moves[0].Cause != failover.CauseDown {
		t.Fatalf("moves: %+v", st.Moves)
	}
	for _, p := range st.Moves[0].Propagation {
		if !p.Done {
			t.Errorf("propagation: %+v", p)
		}
	}
	if e := epoch(t, spec); e.N != 1 || e.Site != "b" {
		t.Fatalf("epoch %+v", e)
	}
}
