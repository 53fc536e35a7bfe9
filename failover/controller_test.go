package failover

import (
	"context"
	"errors"
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
	// Account replication broken at a, however often: shown, never voted
	// on (a still issues).
	for range 10 {
		c.Sink(healthcheck.Result{Site: "a", Kind: healthcheck.KindReplication, Started: time.Now(),
			Steps: []healthcheck.Step{{Name: "from b", ErrorClass: healthcheck.ClassReplication, Detail: "replication from b not running"}}})
	}
	c.step(ctx)
	if st := c.Status(); st.Sites[0].State != Healthy || st.Active != "a" || st.Sites[0].Accounts == nil ||
		st.Sites[0].Accounts.OK || st.Sites[0].Accounts.Detail != "replication from b not running" || st.Sites[1].Accounts != nil {
		t.Fatalf("broken replication at a: %+v", st.Sites)
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

	// a goes down while b has not been probed since it died too: the check
	// right before the move finds b failing, and the name stays.
	failing := map[string]bool{"b": true}
	c.Confirm = func(ctx context.Context, site string) error {
		if failing[site] {
			c.Sink(healthcheck.Result{Site: site, Kind: healthcheck.KindAccount, Started: time.Now(),
				Steps: []healthcheck.Step{{Name: "directory", ErrorClass: healthcheck.ClassRefused}}})
			return errors.New("refused")
		}
		return nil
	}
	for range 3 {
		c.Sink(healthcheck.Result{Site: "a", Kind: healthcheck.KindNonce, Started: time.Now(),
			Steps: []healthcheck.Step{{Name: "directory", ErrorClass: healthcheck.ClassRefused}}})
	}
	c.step(ctx)
	c.step(ctx)
	if st := c.Status(); st.Active != "a" || len(st.Moves) != 0 || !st.Alert {
		t.Fatalf("a down, b failing its check: active %s, moves %+v, alert %v", st.Active, st.Moves, st.Alert)
	}
	if cur, _ := a.Read(ctx); c.Spec.SiteAt(cur.Addrs...) != "a" {
		t.Fatalf("DNS moved to %v", cur.Addrs)
	}
	// b is fine again and passes the check: the name moves.
	failing["b"] = false
	c.Sink(ok("b"))
	c.step(ctx)
	if st := c.Status(); st.Active != "b" || len(st.Moves) != 1 {
		t.Fatalf("b passing its check: active %s, moves %+v", st.Active, st.Moves)
	}
}
