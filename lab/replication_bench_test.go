package lab

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-pki/cairn/accounts"
	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/internal/labtest"
)

// BenchmarkAccountReplication measures what account replication costs and
// how far behind it runs, on two 3-site labs side by side (one with
// accounts.replication: mariadb, one with off; their controllers stopped):
//
//   - on_certs/s, off_certs/s: issuance throughput of site a, 4 clients in
//     parallel, in alternating 20 s rounds (on, off, off, on, ...);
//   - lag_p50_ms, lag_p95_ms, lag_max_ms: from an account's registration
//     at site a until sites b and c have it, 60 accounts, while 2 clients
//     issue at site a.
//
// go test -run '^$' -bench AccountReplication -benchtime 1x -timeout 30m ./lab/
func BenchmarkAccountReplication(b *testing.B) {
	const rounds, roundLen, workers, accountsN = 4, 20 * time.Second, 4, 60
	for range b.N {
		on := testSpec(b, "a", "b", "c")
		off := labtest.SpecWith(b, labtest.BlockAccounts, "accounts:\n  replication: off\n", "a", "b", "c")
		labs := map[string]*Summary{}
		for name, spec := range map[string]*cluster.Spec{"on": on, "off": off} {
			l, sum := upLab(b, spec)
			if err := l.StopComponent("cluster", "controller"); err != nil {
				b.Fatal(err)
			}
			labs[name] = sum
		}
		specs := map[string]*cluster.Spec{"on": on, "off": off}
		ctx := context.Background()

		// Throughput, alternating so both see the same machine.
		certs := map[string]float64{}
		for r := range rounds {
			order := []string{"on", "off"}
			if r%2 == 1 {
				order = []string{"off", "on"}
			}
			for _, name := range order {
				n := issueFor(b, specs[name], labs[name], workers, roundLen, fmt.Sprintf("r%d%s", r, name), nil)
				certs[name] += float64(n) / roundLen.Seconds() / rounds
			}
		}
		b.ReportMetric(certs["on"], "on_certs/s")
		b.ReportMetric(certs["off"], "off_certs/s")

		// Lag under a steady load.
		reader, err := accounts.NewMariaDB(on)
		if err != nil {
			b.Fatal(err)
		}
		peers := map[string]*sql.DB{}
		for _, s := range []string{"b", "c"} {
			if peers[s], err = reader.Open(s); err != nil {
				b.Fatal(err)
			}
			defer peers[s].Close()
		}
		stop := make(chan struct{})
		loadDone := make(chan struct{})
		go func() {
			issueFor(b, on, labs["on"], 2, time.Hour, "lag", stop)
			close(loadDone)
		}()
		var lags []time.Duration
		for i := range accountsN {
			c := goClient(b, on, labs["on"], 0)
			acct, err := c.Register(ctx)
			c.Close()
			if err != nil {
				b.Fatal(err)
			}
			registered := time.Now()
			id, _ := strconv.ParseInt(path.Base(acct.URI), 10, 64)
			for _, s := range []string{"b", "c"} {
				for {
					var one int
					err := peers[s].QueryRowContext(ctx, "SELECT 1 FROM boulder_sa.registrations WHERE id = ?", id).Scan(&one)
					if err == nil {
						lags = append(lags, time.Since(registered))
						break
					}
					if err != sql.ErrNoRows {
						b.Fatal(err)
					}
					if time.Since(registered) > time.Minute {
						b.Fatalf("account %d (%d of %d) did not reach %s in a minute", id, i, accountsN, s)
					}
					time.Sleep(time.Millisecond)
				}
			}
		}
		close(stop)
		<-loadDone
		sort.Slice(lags, func(i, j int) bool { return lags[i] < lags[j] })
		ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
		b.ReportMetric(ms(lags[len(lags)/2]), "lag_p50_ms")
		b.ReportMetric(ms(lags[len(lags)*95/100]), "lag_p95_ms")
		b.ReportMetric(ms(lags[len(lags)-1]), "lag_max_ms")
	}
	fmt.Fprintln(os.Stderr, "figures above: see docs/accounts.md")
}

// issueFor has workers clients issue at site a for d (or until stop) and
// returns how many certificates they got.
func issueFor(b *testing.B, spec *cluster.Spec, sum *Summary, workers int, d time.Duration, tag string, stop chan struct{}) int64 {
	var got atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(d)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := goClient(b, spec, sum, 0)
			defer c.Close()
			if _, err := c.Register(context.Background()); err != nil {
				b.Error(err)
				return
			}
			for n := 0; time.Now().Before(deadline); n++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, _, _, err := c.Issue(context.Background(), []string{fmt.Sprintf("%s-%d-%d.%s", tag, w, n, spec.ACME.Zone)}); err == nil {
					got.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return got.Load()
}
