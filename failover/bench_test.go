package failover_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-pki/cairn/acmedns"
	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/failover"
	"github.com/cairn-pki/cairn/internal/labtest"
	"github.com/cairn-pki/cairn/lab"
)

// BenchmarkFailoverTrials measures fault → every authoritative server
// answers the new site, over repeated trials in a 3-site lab (TTL 30 s,
// hold-down 15 s):
//
//	go test -run '^$' -bench FailoverTrials -benchtime 1x -timeout 60m ./failover/
//
// hard_*: SIGKILL of the active site's WFE (connection refused).
// deep_*: the active site's SA stopped (directory answers, account fails).
func BenchmarkFailoverTrials(b *testing.B) {
	trials := 20
	if v := os.Getenv("CAIRN_TRIALS"); v != "" {
		fmt.Sscan(v, &trials)
	}
	for range b.N {
		spec := labtest.SpecWith(b, labtest.BlockFailover, fastPolicy, "a", "b", "c")
		l := &lab.Lab{Spec: spec, Log: labtest.Log{T: b}, Cairn: labtest.CairnBinary(b)}
		ctx := context.Background()
		if _, err := l.Up(ctx, lab.UpOptions{}); err != nil {
			b.Fatal(err)
		}
		hard := runTrials(b, l, spec, trials, func(site string) (func(), error) {
			pid := pidOfB(b, filepath.Join(spec.Dir, "sites", site, "var", "pids", "wfe.pid"))
			return func() { l.StartComponent(ctx, site, "wfe") }, syscall.Kill(pid, syscall.SIGKILL)
		})
		deep := runTrials(b, l, spec, trials, func(site string) (func(), error) {
			return func() { l.StartComponent(ctx, site, "sa") }, l.StopComponent(site, "sa")
		})
		report(b, "hard", hard)
		report(b, "deep", deep)
		l.Down(ctx)
	}
}

func report(b *testing.B, name string, d []time.Duration) {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	if len(d) == 0 {
		return
	}
	b.ReportMetric(d[len(d)/2].Seconds(), name+"_p50_s")
	b.ReportMetric(d[(len(d)*95+99)/100-1].Seconds(), name+"_p95_s")
	b.ReportMetric(d[len(d)-1].Seconds(), name+"_max_s")
	var all []string
	for _, x := range d {
		all = append(all, fmt.Sprintf("%.1f", x.Seconds()))
	}
	fmt.Fprintf(os.Stderr, "%s trials (s): %s\n", name, strings.Join(all, " "))
}

// runTrials injects a fault on the active site, times the switch, repairs
// the site and waits until every site is healthy and the hold-down over.
func runTrials(b *testing.B, l *lab.Lab, spec *cluster.Spec, n int, inject func(site string) (func(), error)) []time.Duration {
	var out []time.Duration
	for i := 0; i < n; i++ {
		waitHealthyAndFree(b, spec)
		from := statusB(b, spec).Active
		start := time.Now()
		repair, err := inject(from)
		if err != nil {
			b.Fatal(err)
		}
		deadline := time.Now().Add(60 * time.Second)
		for {
			if st := statusB(b, spec); st.Active != from {
				if allAnswer(spec, st.Active) {
					out = append(out, time.Since(start))
					break
				}
			}
			if time.Now().After(deadline) {
				b.Fatalf("trial %d: no switch away from %s within 60 s", i, from)
			}
			time.Sleep(20 * time.Millisecond)
		}
		repair()
	}
	return out
}

func waitHealthyAndFree(b *testing.B, spec *cluster.Spec) {
	deadline := time.Now().Add(120 * time.Second)
	for time.Now().Before(deadline) {
		st := statusB(b, spec)
		ok := time.Now().After(st.HoldUntil)
		for _, s := range st.Sites {
			ok = ok && s.State == failover.Healthy
		}
		if ok {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	b.Fatal("sites did not all become healthy again")
}

func statusB(b *testing.B, spec *cluster.Spec) failover.Status { return status(b, spec) }

func pidOfB(b *testing.B, path string) int {
	raw, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	var pid int
	fmt.Sscan(strings.Fields(string(raw))[0], &pid)
	return pid
}

// BenchmarkUpdateVersusNsupdate compares the applier's compare-and-swap
// update with nsupdate's plain update against the same BIND primary.
func BenchmarkUpdateVersusNsupdate(b *testing.B) {
	spec := labtest.Spec(b, labtest.BlockFailover, "a", "b")
	l := &lab.Lab{Spec: spec, Log: labtest.Log{T: b}, Cairn: labtest.CairnBinary(b)}
	ctx := context.Background()
	if _, err := l.Up(ctx, lab.UpOptions{}); err != nil {
		b.Fatal(err)
	}
	defer l.Down(ctx)
	// The controller would move the name too: stop it for this measurement.
	l.StopComponent("cluster", "controller")
	a, err := acmedns.FromSpec(spec, nil)
	if err != nil {
		b.Fatal(err)
	}
	primary := spec.PrimaryDNS()
	const n = 200
	addrs := []string{spec.Sites[0].Address, spec.Sites[1].Address}
	cur, _ := a.Read(ctx)
	var total time.Duration
	for i := 0; i < n; i++ {
		e := acmedns.Epoch{N: cur.Epoch.N + 1, Site: "x", Controller: "bench", Time: time.Now()}
		t0 := time.Now()
		if err := a.Move(ctx, cur, []string{addrs[i%2]}, 30, e); err != nil {
			b.Fatal(err)
		}
		total += time.Since(t0)
		cur, _ = a.Read(ctx)
	}
	cas := total / n
	// nsupdate: the same number of updates in one process (no process start per update).
	var script strings.Builder
	fmt.Fprintf(&script, "server %s %d\n", primary.Addr(), primary.Port())
	for i := 0; i < n; i++ {
		fmt.Fprintf(&script, "update delete %s. A\nupdate add %s. 30 A %s\nsend\n", spec.ACME.Name, spec.ACME.Name, addrs[i%2])
	}
	cmd := exec.Command("nsupdate", "-k", spec.Path(spec.DNS.TSIG.ControllerKeyFile))
	cmd.Stdin = strings.NewReader(script.String())
	t0 := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("nsupdate: %v %s", err, out)
	}
	ns := time.Since(t0) / n
	b.ReportMetric(float64(cas.Microseconds())/1000, "cas_update_ms")
	b.ReportMetric(float64(ns.Microseconds())/1000, "nsupdate_ms")
	b.ReportMetric(float64(cas)/float64(ns), "ratio")
}

// BenchmarkNoiseRun pauses a random site's WFE (SIGSTOP/SIGCONT) for
// 0.2–1.2 s every few seconds — single failed or slow probes, below the
// thresholds — for CAIRN_NOISE_FOR (default 10m) and counts moves, which
// must stay 0. Default policy (downAfter 3, upAfter 20, stable 60 s).
func BenchmarkNoiseRun(b *testing.B) {
	dur := 10 * time.Minute
	if v := os.Getenv("CAIRN_NOISE_FOR"); v != "" {
		dur, _ = time.ParseDuration(v)
	}
	for range b.N {
		spec := labtest.Spec(b, labtest.BlockFailover, "a", "b", "c")
		l := &lab.Lab{Spec: spec, Log: labtest.Log{T: b}, Cairn: labtest.CairnBinary(b)}
		ctx := context.Background()
		if _, err := l.Up(ctx, lab.UpOptions{}); err != nil {
			b.Fatal(err)
		}
		waitHealthyAndFree(b, spec)
		before := statusB(b, spec)
		pauses := 0
		end := time.Now().Add(dur)
		for i := 0; time.Now().Before(end); i++ {
			site := spec.Sites[i%3].Name
			pid := pidOfB(b, filepath.Join(spec.Dir, "sites", site, "var", "pids", "wfe.pid"))
			pause := time.Duration(200+(i*370)%1000) * time.Millisecond
			syscall.Kill(pid, syscall.SIGSTOP)
			time.Sleep(pause)
			syscall.Kill(pid, syscall.SIGCONT)
			pauses++
			time.Sleep(time.Duration(3000+(i*1700)%4000) * time.Millisecond)
		}
		after := statusB(b, spec)
		moves := len(after.Moves) - len(before.Moves)
		b.ReportMetric(float64(moves), "moves")
		b.ReportMetric(float64(pauses), "pauses")
		b.ReportMetric(dur.Minutes(), "minutes")
		if moves != 0 {
			b.Errorf("%d moves during the noise run: %+v", moves, after.Moves)
		}
		l.Down(ctx)
	}
}

// BenchmarkFaultAfterRestart measures the blind time after a controller
// restart: the controller is restarted, the active site's WFE is killed
// 10 s later, and the time from the kill until every authoritative
// server answers another site is reported, over CAIRN_TRIALS trials
// (default 5) with the lab's default policy (upAfter 20 over 60 s):
//
//	go test -run '^$' -bench FaultAfterRestart -benchtime 1x -timeout 60m ./failover/
//
// CAIRN_RESUME=off measures a controller that does not resume from its
// probe history (every restart needs the full proof).
func BenchmarkFaultAfterRestart(b *testing.B) {
	trials := 5
	if v := os.Getenv("CAIRN_TRIALS"); v != "" {
		fmt.Sscan(v, &trials)
	}
	extra := ""
	if os.Getenv("CAIRN_RESUME") == "off" {
		extra = "failover:\n  resume: off\n"
	}
	for range b.N {
		spec := labtest.SpecWith(b, labtest.BlockFailover, extra, "a", "b", "c")
		l := &lab.Lab{Spec: spec, Log: labtest.Log{T: b}, Cairn: labtest.CairnBinary(b)}
		ctx := context.Background()
		if _, err := l.Up(ctx, lab.UpOptions{}); err != nil {
			b.Fatal(err)
		}
		var out []time.Duration
		for i := 0; i < trials; i++ {
			waitHealthyAndFree(b, spec)
			from := statusB(b, spec).Active
			if err := l.StopComponent("cluster", "controller"); err != nil {
				b.Fatal(err)
			}
			if err := l.StartComponent(ctx, "cluster", "controller"); err != nil {
				b.Fatal(err)
			}
			time.Sleep(10 * time.Second) // the fault comes 10 s after the restart
			start := time.Now()
			if err := syscall.Kill(pidOfB(b, filepath.Join(spec.Dir, "sites", from, "var", "pids", "wfe.pid")), syscall.SIGKILL); err != nil {
				b.Fatal(err)
			}
			for deadline := start.Add(120 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				if st := statusB(b, spec); st.Active != from && allAnswer(spec, st.Active) {
					out = append(out, time.Since(start))
					break
				}
				if time.Now().After(deadline) {
					b.Fatalf("trial %d: no switch away from %s within 120 s", i, from)
				}
			}
			fmt.Fprintf(os.Stderr, "trial %d: %s -> %s in %.1f s\n", i, from, statusB(b, spec).Active, out[len(out)-1].Seconds())
			if err := l.StartComponent(ctx, from, "wfe"); err != nil {
				b.Fatal(err)
			}
		}
		report(b, "restart_then_fault", out)
		l.Down(ctx)
	}
}
