package failover

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-pki/cairn/acmedns"
	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/internal/testenv"
)

// embeddedEtcd starts the embedded etcd (the daemon's own, with its TLS)
// on 127.0.0.1 at a free port pair (client, client+1 for peers).
func embeddedEtcd(t *testing.T) (*Etcd, *cluster.Spec) {
	t.Helper()
	for range 5 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		peer, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port+1))
		l.Close()
		if err != nil {
			continue
		}
		peer.Close()
		spec := etcdSpec(t, t.TempDir(), "127.0.0.1:"+strconv.Itoa(port))
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		e, err := OpenEtcd(ctx, spec, "test", slog.New(slog.NewTextHandler(io.Discard, nil)))
		cancel()
		if err != nil {
			t.Logf("embedded etcd on port %d: %v", port, err)
			continue
		}
		t.Cleanup(e.Close)
		return e, spec
	}
	t.Fatal("no embedded etcd after 5 attempts")
	return nil, nil
}

// One coordinator leads, the other waits; Publish needs a session;
// Snapshot reads the leader, the views, drained sites and pending moves;
// Ack removes moves; a stopped coordinator resigns and its view goes, so
// the other leads at once.
func TestCoordinatorThroughEmbeddedEtcd(t *testing.T) {
	e, spec := embeddedEtcd(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var changes atomic.Int32
	newCoord := func(id string) *Coordinator {
		return &Coordinator{Client: e.Client, Prefix: spec.Failover.Etcd.Prefix, ID: id, API: "http://" + id, TTL: 2 * time.Second, Log: log,
			OnChange: func() { changes.Add(1) }}
	}
	ctx := context.Background()
	x, y := newCoord("x"), newCoord("y")
	if err := x.Publish(ctx, View{Controller: "x"}); err == nil || !strings.Contains(err.Error(), "no etcd session") {
		t.Fatalf("Publish before Run: %v", err)
	}
	if x.StillLeader(ctx) {
		t.Fatal("StillLeader before Run")
	}
	xctx, xstop := context.WithCancel(ctx)
	xdone := make(chan struct{})
	go func() { x.Run(xctx); close(xdone) }()
	defer func() { xstop(); <-xdone }()
	testenv.WaitFor(t, "x leads", 10*time.Second, x.Leading)
	if changes.Load() == 0 {
		t.Error("OnChange not called when x was elected")
	}
	yctx, ystop := context.WithCancel(ctx)
	ydone := make(chan struct{})
	go func() { y.Run(yctx); close(ydone) }()
	defer func() { ystop(); <-ydone }()
	testenv.WaitFor(t, "y's session", 10*time.Second, func() bool { return y.Publish(ctx, View{Controller: "y", Published: time.Now()}) == nil })
	if y.Leading() || y.StillLeader(ctx) {
		t.Fatal("two leaders")
	}
	if !x.StillLeader(ctx) {
		t.Fatal("x leads but etcd says it does not")
	}
	at := time.Now().UTC().Truncate(time.Second)
	if err := x.Publish(ctx, View{Controller: "x", API: x.API, Published: at, Obs: []Observation{{Site: "a", Vantage: "x", At: at}}}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []Command{{Type: "drain", Site: "a"}, {Type: "drain", Site: "b"}, {Type: "undrain", Site: "b"}, {Type: "move", Site: "b"}} {
		if err := y.Submit(ctx, c); err != nil {
			t.Fatalf("Submit %+v: %v", c, err)
		}
	}
	if err := y.Submit(ctx, Command{Type: "reboot", Site: "a"}); err == nil || !strings.Contains(err.Error(), "reboot") {
		t.Fatalf("unknown command: %v", err)
	}
	sh, err := y.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sh.Leader != "x" || len(sh.Views) != 2 || !sh.Drained["a"] || sh.Drained["b"] || len(sh.Moves) != 1 || sh.Moves[0].Site != "b" {
		t.Fatalf("snapshot: %+v", sh)
	}
	for _, v := range sh.Views {
		if v.Controller == "x" && (v.API != "http://x" || len(v.Obs) != 1 || !v.Published.Equal(at)) {
			t.Fatalf("x's view: %+v", v)
		}
	}
	if err := x.Ack(ctx, sh.Moves); err != nil {
		t.Fatal(err)
	}
	if err := x.Ack(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if sh, _ := x.Snapshot(ctx); len(sh.Moves) != 0 || !sh.Drained["a"] {
		t.Fatalf("after Ack: %+v", sh)
	}

	// x stops: it resigns and revokes its lease, y leads well within the TTL.
	t0 := time.Now()
	xstop()
	<-xdone
	testenv.WaitFor(t, "y leads", 10*time.Second, y.Leading)
	if d := time.Since(t0); d >= y.TTL {
		t.Errorf("y led %v after x stopped: not a resignation", d)
	}
	sh, err = y.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sh.Leader != "y" || len(sh.Views) != 1 || sh.Views[0].Controller != "y" {
		t.Fatalf("after x stopped: %+v", sh)
	}
}

// Two controllers on one etcd: commands given to either go through etcd
// and the leader carries them out; the follower shows the leader's move
// (read from DNS) and the drained sites, and names the leader.
func TestControllersShareThroughEmbeddedEtcd(t *testing.T) {
	_, spec := embeddedEtcd(t)
	dns := acmedns.NewFake([]string{"127.0.69.10"}, 30, acmedns.Epoch{N: 0, Site: "a", Controller: "seed", Reason: "initial"})
	x := startController(t, external(t, spec), "x", dns, 1)
	y := startController(t, external(t, spec), "y", dns, 1)
	defer probeEvery([]*testController{x, y}, func(string, string) bool { return false })()
	var leader, follower *testController
	testenv.WaitFor(t, "a leader", 15*time.Second, func() bool {
		for _, c := range []*testController{x, y} {
			if c.Status().Leading {
				leader = c
			}
		}
		return leader != nil
	})
	follower = x
	if leader == x {
		follower = y
	}
	ctx := context.Background()
	if err := follower.Command(ctx, Command{Type: "drain", Site: "nowhere"}); err == nil || !strings.Contains(err.Error(), "nowhere") {
		t.Fatalf("a command for no site: %v", err)
	}
	testenv.WaitFor(t, "both healthy", 15*time.Second, func() bool {
		st := leader.Status()
		return siteIn(st, "a").State == Healthy && siteIn(st, "b").State == Healthy
	})
	if err := follower.Command(ctx, Command{Type: "move", Site: "b"}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "the follower sees the move", 15*time.Second, func() bool { return follower.Status().Active == "b" })
	cur, err := dns.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cur.Epoch.Controller != leader.ID || cur.Epoch.Site != "b" {
		t.Fatalf("DNS epoch %+v, want written by the leader %s", cur.Epoch, leader.ID)
	}
	st := follower.Status()
	if st.Leader != leader.ID || st.Leading || len(st.Moves) == 0 || st.Moves[len(st.Moves)-1].To != "b" {
		t.Fatalf("follower's status: %+v", st)
	}
	if err := leader.Command(ctx, Command{Type: "drain", Site: "a"}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "the follower sees a drained", 15*time.Second, func() bool { return siteIn(follower.Status(), "a").Drained })
	if len(dns.Writes()) != 1 {
		t.Fatalf("DNS writes: %+v, want the one move", dns.Writes())
	}
}

// probeEvery has each controller report an account probe of a and b
// through Sink every 100 ms, failed where bad says, until stop.
func probeEvery(cs []*testController, bad func(id, site string) bool) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				case <-time.After(100 * time.Millisecond):
				}
				for _, s := range []string{"a", "b"} {
					c.Sink(account(s, !bad(c.ID, s)))
				}
			}
		}()
	}
	return func() { close(done); wg.Wait() }
}
