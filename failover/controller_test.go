package failover

import (
	"context"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/healthcheck"
	"github.com/cairn-pki/cairn/internal/testenv"
)

// The TTL is lowered while the active site is suspect and put back when it
// is healthy again, against a real BIND.
func TestControllerPrearmsAndRestoresTTL(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Integration(t)
		t.Fatal("needs root (loopback addresses, port 53)")
	}
	server := startBIND(t)
	a := applier(server)
	ctx := context.Background()
	if cur := readWhenLoaded(t, a); cur.TTL != 30 {
		t.Fatalf("initial TTL %d, want 30", cur.TTL)
	}
	spec := cluster.Default([]string{"a", "b"})
	spec.Sites[0].Address, spec.Sites[1].Address = "127.0.69.10", "127.0.69.11"
	spec.ACME.TTL = 30
	c := &Controller{Spec: spec, ID: "test", Applier: a, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Policy: Policy{DownAfter: 3, UpAfter: 1, HoldDown: time.Minute, Failback: "manual", Quorum: 1,
			Priority: map[string]int{"a": 1, "b": 2}, Sites: []string{"a", "b"}}}
	if err := c.Init(ctx, prometheus.NewRegistry()); err != nil {
		t.Fatal(err)
	}
	ok := func(site string) healthcheck.Result {
		return healthcheck.Result{Site: site, Kind: healthcheck.KindAccount, OK: true, Started: time.Now(), Steps: []healthcheck.Step{{Name: "account", OK: true}}}
	}
	ttl := func() uint32 {
		cur, err := a.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return cur.TTL
	}
	c.Sink(ok("b"))
	c.Sink(ok("a"))
	c.step(ctx)
	if st := c.Status(); st.Sites[0].State != Healthy || st.Active != "a" {
		t.Fatalf("not healthy: %+v", st)
	}
	// One hard failure: a is suspect, the TTL drops to 5 s, nothing moves.
	c.Sink(healthcheck.Result{Site: "a", Kind: healthcheck.KindNonce, Started: time.Now(),
		Steps: []healthcheck.Step{{Name: "directory", ErrorClass: healthcheck.ClassRefused}}})
	c.step(ctx)
	if got := ttl(); got != 5 || c.Status().Active != "a" {
		t.Fatalf("after one failure: TTL %d, active %s", got, c.Status().Active)
	}
	// a succeeds again: healthy, the TTL is back to 30 s.
	c.Sink(ok("a"))
	c.step(ctx)
	if got := ttl(); got != 30 {
		t.Fatalf("after recovery: TTL %d, want 30", got)
	}
	if st := c.Status(); len(st.Moves) != 0 {
		t.Fatalf("moves: %+v", st.Moves)
	}
}
