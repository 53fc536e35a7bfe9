package lab

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-pki/cairn/backup"
	"github.com/cairn-pki/cairn/revocation"
)

// BenchmarkLabRebuild measures docs/backup.md's figures for a site that
// issued many certificates (CAIRN_BENCH_CERTS, default 1000):
//
//	go test -run '^$' -bench LabRebuild -benchtime 1x -timeout 30m ./lab/
//
// certs: certificates site b issued; backup_MB, backup_s: its backup
// through its agent; restore_s: unpack, prepare and move into the empty
// datadir, start MariaDB; rebuild_s: cairn site rebuild in all.
func BenchmarkLabRebuild(b *testing.B) {
	n := 1000
	if v, err := strconv.Atoi(os.Getenv("CAIRN_BENCH_CERTS")); err == nil && v > 0 {
		n = v
	}
	const workers = 8
	for range b.N {
		spec := testSpec(b, "a", "b")
		l, sum := upLab(b, spec)
		ctx := context.Background()
		// The controller would back up and probe on its own: stopped, so
		// the figures are the rebuild's.
		if err := l.StopComponent("cluster", "controller"); err != nil {
			b.Fatal(err)
		}
		var next, failed atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := goClient(b, spec, sum, 1)
				if _, err := c.Register(ctx); err != nil {
					b.Error(err)
					return
				}
				for i := next.Add(1); i <= int64(n); i = next.Add(1) {
					if _, _, _, err := c.Issue(ctx, []string{fmt.Sprintf("bulk%d.%s", i, spec.ACME.Zone)}); err != nil {
						failed.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		issued := int64(n) - failed.Load()
		b.Logf("site b issued %d certificates in %.0f s (%d failed)", issued, time.Since(start).Seconds(), failed.Load())

		store := backup.Store{Dir: spec.Path(spec.Backup.Dir)}
		agents := revocation.Agents{Spec: spec}
		m, err := store.Take(ctx, "b", func(ctx context.Context, w io.Writer) error { return agents.Backup(ctx, "b", w) })
		if err != nil {
			b.Fatal(err)
		}
		if err := l.DestroySite("b"); err != nil {
			b.Fatal(err)
		}
		rb, err := l.Rebuild("b", nil, io.Discard)
		if err != nil {
			b.Fatal(err)
		}
		rep, err := rb.Run(ctx, false)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(issued), "certs")
		b.ReportMetric(float64(m.Bytes)/1e6, "backup_MB")
		b.ReportMetric(m.Seconds, "backup_s")
		b.ReportMetric(rep.RestoreTime.Seconds(), "restore_s")
		b.ReportMetric(rep.Total.Seconds(), "rebuild_s")
	}
}
