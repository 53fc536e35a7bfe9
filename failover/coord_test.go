package failover

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairn-pki/cairn/acmedns"
	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/healthcheck"
	"github.com/cairn-pki/cairn/internal/dnstest"
	"github.com/cairn-pki/cairn/internal/testenv"
)

// etcdSpec is a two-site spec whose controllers use an embedded etcd at
// listen, in dir.
func etcdSpec(t *testing.T, dir, listen string) *cluster.Spec {
	t.Helper()
	spec := cluster.Default([]string{"a", "b"})
	spec.Dir = dir
	spec.Sites[0].Address, spec.Sites[1].Address = "127.0.69.10", "127.0.69.11"
	spec.ACME.TTL = 30
	spec.Failover.Etcd = cluster.Etcd{Listen: listen, DataDir: "var/etcd", Prefix: "/cairn/test/", SessionTTL: cluster.Duration{Duration: 2 * time.Second}}
	return spec
}

// external is the same spec seen by a controller that joins the embedded
// etcd as an external cluster, with the client certificate it made.
func external(t *testing.T, spec *cluster.Spec) *cluster.Spec {
	t.Helper()
	files, err := embeddedTLS(spec, netip.MustParseAddrPort(spec.Failover.Etcd.Listen))
	if err != nil {
		t.Fatal(err)
	}
	cp := *spec
	cp.Failover.Etcd = cluster.Etcd{Endpoints: []string{"https://" + spec.Failover.Etcd.Listen}, Prefix: spec.Failover.Etcd.Prefix,
		SessionTTL: spec.Failover.Etcd.SessionTTL, CAFile: files.CA, CertFile: files.Cert, KeyFile: files.Key}
	return &cp
}

type testController struct {
	*Controller
	etcd   *Etcd
	cancel context.CancelFunc
	done   chan struct{}
}

func startController(t *testing.T, spec *cluster.Spec, id string, a acmedns.Provider, quorum int) *testController {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil)).With("controller", id)
	}
	e, err := OpenEtcd(ctx, spec, id, log)
	if err != nil {
		t.Fatal(err)
	}
	c := &Controller{Spec: spec, ID: id, DNS: a, Log: log,
		Coord: &Coordinator{Client: e.Client, Prefix: spec.Failover.Etcd.Prefix, ID: id, TTL: spec.Failover.Etcd.SessionTTL.Duration, Log: log},
		Policy: Policy{DownAfter: 2, UpAfter: 1, HoldDown: time.Minute, Failback: "manual", Quorum: quorum, ViewMaxAge: 10 * time.Second,
			Priority: map[string]int{"a": 1, "b": 2}, Sites: []string{"a", "b"}}}
	if err := c.Init(ctx, prometheus.NewRegistry()); err != nil {
		t.Fatal(err)
	}
	tc := &testController{Controller: c, etcd: e, cancel: cancel, done: make(chan struct{})}
	go func() { c.Run(ctx); close(tc.done) }()
	t.Cleanup(tc.stop)
	return tc
}

// stop shuts the controller down cleanly: it resigns and its lease goes.
func (tc *testController) stop() {
	tc.cancel()
	<-tc.done
	tc.etcd.Close()
}

func account(site string, ok bool) healthcheck.Result {
	r := healthcheck.Result{Site: site, Kind: healthcheck.KindAccount, OK: ok, Started: time.Now(), Steps: []healthcheck.Step{{Name: "account", OK: ok}}}
	if !ok {
		r.Steps[0].ErrorClass = healthcheck.ClassRefused
	}
	return r
}

// Three controllers on one etcd: one leader; one vantage seeing site a
// down is not a quorum of two; two are, and exactly one move is made;
// the leader's crash hands over within the session TTL; operator commands
// given to a follower are carried out by the leader.
func TestThreeControllersCoordinateThroughEtcd(t *testing.T) {
	server := dnstest.BIND(t, "127.0.69.2", dnstest.Default)
	a := provider(server)
	ctx := context.Background()

	// One etcd (the embedded server, started here on its own), and three
	// controllers that join it as an external cluster with its client
	// certificate.
	spec := etcdSpec(t, t.TempDir(), "127.0.69.20:23790")
	srv, err := OpenEtcd(ctx, spec, "etcd", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	x := startController(t, external(t, spec), "x", provider(server), 2)
	y := startController(t, external(t, spec), "y", provider(server), 2)
	z := startController(t, external(t, spec), "z", provider(server), 2)
	all := []*testController{x, y, z}

	// Probes: every controller reports through Sink every 100 ms.
	var mu sync.Mutex
	failing := map[string]bool{} // controller/site -> reports failures
	defer probeEvery(all, func(id, site string) bool {
		mu.Lock()
		defer mu.Unlock()
		return failing[id+"/"+site]
	})()
	set := func(id, site string, bad bool) { mu.Lock(); failing[id+"/"+site] = bad; mu.Unlock() }

	leaders := func(cs ...*testController) (names []string) {
		for _, c := range cs {
			if st := c.Status(); st.Leading {
				names = append(names, st.Controller)
			}
		}
		return names
	}
	wait := func(what string, d time.Duration, cond func() bool) time.Duration {
		t.Helper()
		return testenv.WaitFor(t, what, d, cond)
	}
	wait("one leader and every controller sees both sites healthy", 10*time.Second, func() bool {
		if len(leaders(all...)) != 1 {
			return false
		}
		for _, c := range all {
			st := c.Status()
			if st.Leader == "" || st.Sites[0].State != Healthy || st.Sites[1].State != Healthy || len(st.Views) != 3 {
				return false
			}
		}
		return true
	})
	leader := leaders(all...)[0]
	for _, c := range all {
		if got := c.Status().Leader; got != leader {
			t.Fatalf("%s sees leader %q, want %q", c.ID, got, leader)
		}
	}
	dnsNow := func() acmedns.Current {
		cur, err := a.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return cur
	}
	before := dnsNow()

	// One vantage sees a down: a quorum of 2 is not reached.
	set("z", "a", true)
	decided(t, 5, all...)
	if cur := dnsNow(); cur.Epoch.N != before.Epoch.N || x.Spec.SiteAt(cur.Addrs...) != "a" {
		t.Fatalf("moved on one vantage's view: %+v", cur)
	}
	for _, c := range all {
		if st := c.Status(); st.Sites[0].State == Down {
			t.Fatalf("%s judged a down on one vantage", c.ID)
		}
	}

	// A second vantage agrees: exactly one move, to b.
	set("y", "a", true)
	took := wait("the ACME name moved to b", 10*time.Second, func() bool { return x.Spec.SiteAt(dnsNow().Addrs...) == "b" })
	t.Logf("second vantage → moved in %s", took.Round(time.Millisecond))
	decided(t, 5, all...)
	after := dnsNow()
	if after.Epoch.N != before.Epoch.N+1 || after.Epoch.Controller != leader {
		t.Fatalf("epoch %d by %s, want %d by the leader %s", after.Epoch.N, after.Epoch.Controller, before.Epoch.N+1, leader)
	}
	wait("followers show the move", 5*time.Second, func() bool {
		for _, c := range all {
			if st := c.Status(); st.Active != "b" || len(st.Moves) == 0 || st.Moves[len(st.Moves)-1].Epoch != after.Epoch.N {
				return false
			}
		}
		return true
	})

	// a recovers; a follower takes an operator move to a and the leader
	// carries it out.
	set("y", "a", false)
	set("z", "a", false)
	wait("a healthy again everywhere", 10*time.Second, func() bool {
		for _, c := range all {
			if c.Status().Sites[0].State != Healthy {
				return false
			}
		}
		return true
	})
	var follower *testController
	for _, c := range all {
		if c.ID != leader {
			follower = c
		}
	}
	if err := follower.Command(ctx, Command{Type: "move", Site: "a"}); err != nil {
		t.Fatal(err)
	}
	wait("operator move through a follower", 5*time.Second, func() bool { return x.Spec.SiteAt(dnsNow().Addrs...) == "a" })
	if cur := dnsNow(); cur.Epoch.N != after.Epoch.N+1 || cur.Epoch.Reason != "operator move" {
		t.Fatalf("after the operator move: %+v", cur.Epoch)
	}
	// A drain given to a follower reaches every controller (and stays in etcd).
	if err := follower.Command(ctx, Command{Type: "drain", Site: "b"}); err != nil {
		t.Fatal(err)
	}
	wait("b drained everywhere", 5*time.Second, func() bool {
		for _, c := range all {
			if !c.Status().Sites[1].Drained {
				return false
			}
		}
		return true
	})

	// The leader crashes (its etcd connection dies without resigning):
	// another takes over once its lease expires (TTL 2 s).
	others := func(gone *testController, cs []*testController) (rest []*testController) {
		for _, c := range cs {
			if c != gone {
				rest = append(rest, c)
			}
		}
		return rest
	}
	byName := map[string]*testController{"x": x, "y": y, "z": z}
	crashed := byName[leaders(all...)[0]]
	crashed.etcd.Client.Close()
	rest := others(crashed, all)
	took = wait("a leader among the others after a crash", 10*time.Second, func() bool { return len(leaders(rest...)) == 1 })
	t.Logf("leader %s crashed: %v leads after %s", crashed.ID, leaders(rest...), took.Round(time.Millisecond))
	if crashed.Status().Leading {
		t.Fatalf("%s still believes it leads without etcd", crashed.ID)
	}
	crashed.cancel()
	<-crashed.done
	wait("the crashed controller's view expires", 10*time.Second, func() bool { return len(rest[0].Status().Views) == 2 })

	// The next leader stops cleanly: it resigns, the last one leads at once.
	stopped := byName[leaders(rest...)[0]]
	stopped.stop()
	last := others(stopped, rest)
	took = wait("the last controller leads", 5*time.Second, func() bool { return len(leaders(last...)) == 1 })
	t.Logf("leader %s resigned: %s leads after %s", stopped.ID, last[0].ID, took.Round(time.Millisecond))
	// It still has b drained and a active, from etcd and DNS.
	if st := last[0].Status(); st.Active != "a" || !st.Sites[1].Drained {
		t.Fatalf("last controller: active %s, b drained %v", st.Active, st.Sites[1].Drained)
	}
}

// provider writes the test zone on server with RFC 2136, once it is loaded.
func provider(server string) acmedns.Provider {
	z := dnstest.Default
	p := &acmedns.RFC2136{Servers: acmedns.Servers{Names: acmedns.Names{Zone: z.Zone, Name: z.Name, EpochName: z.EpochName}, List: []string{server}},
		Primary: server, Key: z.Key}
	for range 100 {
		if _, err := p.Read(context.Background()); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return p
}

// decided waits until every controller has made n more decisions: what
// a test asserts after that has had n chances to happen.
func decided(t *testing.T, n int64, cs ...*testController) {
	t.Helper()
	base := map[*testController]int64{}
	for _, c := range cs {
		base[c] = c.Status().Decisions
	}
	testenv.WaitFor(t, "decisions", 30*time.Second, func() bool {
		for _, c := range cs {
			if c.Status().Decisions < base[c]+n {
				return false
			}
		}
		return true
	})
}
