package lab

import (
	"context"
	"fmt"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkLab measures the lab's performance figures (docs/lab.md) on a
// fresh 3-site lab, with binaries already built:
//
//	make bench   (go test -run '^$' -bench Lab -benchtime 1x ./lab/)
//
// up_s: `lab up` from nothing until every site has issued a certificate.
// rss_MiB: total RSS of every lab process after that.
// <site>_p50_ms / p95_ms: sequential issuance with a fresh DNS-01 authz each.
// par_certs/s: one site, parallel clients.
func BenchmarkLab(b *testing.B) {
	const sequential, parallelCerts, workers = 40, 200, 8
	for range b.N {
		spec := testSpec(b, "a", "b", "c")
		start := time.Now()
		l, sum := upLab(b, spec)
		ctx := context.Background()
		var wg sync.WaitGroup
		for i := range spec.Sites {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := goClient(b, spec, sum, i)
				if _, err := c.Register(ctx); err != nil {
					b.Error(err)
					return
				}
				if _, _, _, err := c.Issue(ctx, []string{fmt.Sprintf("first%d.%s", i, spec.ACME.Zone)}); err != nil {
					b.Error(err)
				}
			}()
		}
		wg.Wait()
		b.ReportMetric(time.Since(start).Seconds(), "up_s")

		st, err := l.Status(ctx)
		if err != nil {
			b.Fatal(err)
		}
		total := 0
		for _, p := range st.Cluster {
			total += p.RSSKB
		}
		for _, s := range st.Sites {
			for _, p := range s.Processes {
				total += p.RSSKB
			}
		}
		b.ReportMetric(float64(total)/1024, "rss_MiB")

		// Issuance figures are the CA's own: the failover controller probes
		// all three sites continuously (on 2 cores it costs ~40 % of the
		// parallel throughput), so it is stopped for them.
		if os.Getenv("CAIRN_BENCH_WITH_CONTROLLER") == "" {
			if err := l.StopComponent("cluster", "controller"); err != nil {
				b.Fatal(err)
			}
		}

		for i, s := range spec.Sites {
			c := goClient(b, spec, sum, i)
			if _, err := c.Register(ctx); err != nil {
				b.Fatal(err)
			}
			var d []time.Duration
			for n := range sequential {
				t0 := time.Now()
				if _, _, _, err := c.Issue(ctx, []string{fmt.Sprintf("seq%d.%s.%s", n, s.Name, spec.ACME.Zone)}); err != nil {
					b.Fatal(err)
				}
				d = append(d, time.Since(t0))
			}
			sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
			b.ReportMetric(float64(d[len(d)/2].Microseconds())/1000, s.Name+"_p50_ms")
			b.ReportMetric(float64(d[len(d)*95/100].Microseconds())/1000, s.Name+"_p95_ms")
		}

		var next, failed atomic.Int64
		t0 := time.Now()
		var pw sync.WaitGroup
		for w := range workers {
			pw.Add(1)
			go func() {
				defer pw.Done()
				c := goClient(b, spec, sum, 0)
				if _, err := c.Register(ctx); err != nil {
					failed.Add(1)
					return
				}
				for {
					n := next.Add(1)
					if n > parallelCerts {
						return
					}
					if _, _, _, err := c.Issue(ctx, []string{fmt.Sprintf("par%d-%d.%s", w, n, spec.ACME.Zone)}); err != nil {
						failed.Add(1)
					}
				}
			}()
		}
		pw.Wait()
		b.ReportMetric(float64(parallelCerts-failed.Load())/time.Since(t0).Seconds(), "par_certs/s")
		b.ReportMetric(float64(failed.Load()), "par_failed")
		if err := l.Down(ctx); err != nil {
			b.Fatal(err)
		}
	}
	fmt.Fprintln(os.Stderr, "figures above: see docs/lab.md for the goals")
}
