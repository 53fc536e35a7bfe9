package acmedns_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-pki/cairn/acmedns"
	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/failover"
	"github.com/cairn-pki/cairn/internal/dnstest"
)

var zone = dnstest.Default

func names() acmedns.Names {
	return acmedns.Names{Zone: zone.Zone, Name: zone.Name, EpochName: zone.EpochName}
}

// A provider under test: make returns a new writer on the same server
// (racing writers are separate instances, as separate controllers are);
// badCredentials one whose writes the server refuses.
type harness struct {
	make           func() acmedns.Provider
	badCredentials func() acmedns.Provider
}

// readWhenLoaded reads the name once the server has loaded the zone: it
// listens before that and answers SERVFAIL meanwhile.
func readWhenLoaded(t *testing.T, p acmedns.Provider) acmedns.Current {
	t.Helper()
	var cur acmedns.Current
	var err error
	for range 200 {
		if cur, err = p.Read(context.Background()); err == nil && len(cur.Addrs) > 0 {
			return cur
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%v: %+v", err, cur)
	return cur
}

func rfc2136Harness(server string) harness {
	mk := func(key string) func() acmedns.Provider {
		return func() acmedns.Provider {
			k := zone.Key
			if key != "" {
				k.Secret = key
			}
			return &acmedns.RFC2136{Servers: acmedns.Servers{Names: names(), List: []string{server}}, Primary: server, Key: k}
		}
	}
	return harness{make: mk(""), badCredentials: mk(base64.StdEncoding.EncodeToString([]byte("not the secret, not the secret!!")))}
}

// The fake keeps the same contract as the real servers (hermetic).
func TestFakeKeepsTheContract(t *testing.T) {
	f := acmedns.NewFake([]string{zone.Initial}, 30, acmedns.ParseEpoch(dnstest.InitialEpoch))
	f.SetA(zone.CRLName, zone.CRLInitial, 30)
	contract(t, harness{make: func() acmedns.Provider { return f }})
}

// The same contract against BIND 9.18 and Knot 3.2 (RFC 2136).
func TestRFC2136AgainstBINDAndKnot(t *testing.T) {
	t.Run("bind", func(t *testing.T) { contract(t, rfc2136Harness(dnstest.BIND(t, "127.0.170.2", zone))) })
	t.Run("knot", func(t *testing.T) { contract(t, rfc2136Harness(dnstest.Knot(t, "127.0.170.3", zone))) })
}

func contract(t *testing.T, h harness) {
	p := h.make()
	ctx := context.Background()
	cur := readWhenLoaded(t, p)
	if fmt.Sprint(cur.Addrs) != "["+zone.Initial+"]" || cur.Epoch.N != 0 || cur.Serial == 0 || cur.TTL != 30 {
		t.Fatalf("initial read: %+v", cur)
	}
	// A move: addresses and epoch change together; the serial grows.
	e := acmedns.Epoch{N: 1, Site: "b", Controller: "c1", Reason: "site a is down", Time: time.Now().Truncate(time.Second)}
	if err := p.Move(ctx, cur, []string{"127.0.69.11"}, 30, e); err != nil {
		t.Fatal(err)
	}
	after, _ := p.Read(ctx)
	if fmt.Sprint(after.Addrs) != "[127.0.69.11]" || after.Epoch.N != 1 || after.Epoch.Site != "b" || after.Epoch.Reason != "site a is down" || !after.Epoch.Time.Equal(e.Time) {
		t.Fatalf("after move: %+v", after)
	}
	if after.Serial <= cur.Serial {
		t.Errorf("serial %d -> %d, want it to grow", cur.Serial, after.Serial)
	}
	// A stale writer (read before the move) is refused and changes nothing.
	err := h.make().Move(ctx, cur, []string{"127.0.69.12"}, 30, acmedns.Epoch{N: 1, Site: "c", Controller: "stale"})
	if !errors.Is(err, acmedns.ErrConflict) {
		t.Fatalf("stale writer: %v, want ErrConflict", err)
	}
	if again, _ := p.Read(ctx); fmt.Sprint(again.Addrs) != "[127.0.69.11]" || again.EpochTXT != after.EpochTXT {
		t.Fatalf("stale writer changed the zone: %+v", again)
	}
	// Three controllers racing on one epoch: exactly one wins.
	var wg sync.WaitGroup
	results := make([]error, 3)
	for i := range 3 {
		w := h.make()
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = w.Move(ctx, after, []string{fmt.Sprintf("127.0.69.%d", 20+i)}, 30, acmedns.Epoch{N: 2, Site: fmt.Sprint(i), Controller: fmt.Sprintf("c%d", i)})
		}()
	}
	wg.Wait()
	wins, conflicts, winner := 0, 0, -1
	for i, err := range results {
		switch {
		case err == nil:
			wins, winner = wins+1, i
		case errors.Is(err, acmedns.ErrConflict):
			conflicts++
		default:
			t.Errorf("racing writer: %v", err)
		}
	}
	if wins != 1 || conflicts != 2 {
		t.Fatalf("race: %d wins, %d conflicts, want 1 and 2", wins, conflicts)
	}
	final, _ := p.Read(ctx)
	if final.Epoch.N != 2 || fmt.Sprint(final.Addrs) != fmt.Sprintf("[127.0.69.%d]", 20+winner) {
		t.Errorf("after the race (writer %d won): %+v", winner, final)
	}
	// Pre-arming the TTL keeps the addresses and the epoch.
	if err := p.SetTTL(ctx, final, 5); err != nil {
		t.Fatal(err)
	}
	if ttl, _ := p.Read(ctx); ttl.TTL != 5 || fmt.Sprint(ttl.Addrs) != fmt.Sprint(final.Addrs) || ttl.Epoch.N != 2 {
		t.Errorf("after SetTTL: %+v", ttl)
	}
	// A TTL change based on a stale read is refused too.
	if err := h.make().SetTTL(ctx, after, 7); !errors.Is(err, acmedns.ErrConflict) {
		t.Errorf("stale SetTTL: %v, want ErrConflict", err)
	}
	cur2, _ := p.Read(ctx)
	if h.badCredentials != nil {
		// Wrong credentials are an error, not a conflict.
		if err := h.badCredentials().Move(ctx, cur2, []string{"127.0.69.30"}, 30, acmedns.Epoch{N: 3}); err == nil || errors.Is(err, acmedns.ErrConflict) {
			t.Errorf("wrong credentials: %v", err)
		}
	}
	if err := p.Move(ctx, cur2, []string{"not-an-address"}, 30, acmedns.Epoch{N: 3}); err == nil || errors.Is(err, acmedns.ErrConflict) {
		t.Errorf("bad address: %v", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if pr := p.WaitPropagated(pctx, cur2.Addrs, 2, time.Now()); len(pr) != 1 || !pr[0].Done {
		t.Errorf("propagation: %+v", pr)
	}
	// A long reason survives the 255-byte TXT string limit.
	long := acmedns.Epoch{N: 3, Site: "a", Controller: "c1", Reason: fmt.Sprintf("%0300d", 7)}
	if err := p.Move(ctx, cur2, []string{zone.Initial}, 30, long); err != nil {
		t.Fatal(err)
	}
	if got, _ := p.Read(ctx); got.Epoch.Reason != long.Reason {
		t.Errorf("long reason: got %d bytes back", len(got.Epoch.Reason))
	}
	recordsContract(t, h)
}

// recordsContract: the zone's other A RRsets (a CRL host's) are replaced
// under compare-and-swap with their TTL kept, and never emptied.
func recordsContract(t *testing.T, h harness) {
	ctx := context.Background()
	p, ok := h.make().(acmedns.Records)
	if !ok {
		t.Fatalf("%v does not write the zone's other records", h.make())
	}
	cur, err := p.ReadA(ctx, zone.CRLName)
	if err != nil || fmt.Sprint(cur.Addrs) != fmt.Sprint(zone.CRLInitial) || cur.TTL != 30 {
		t.Fatalf("read %s: %+v %v", zone.CRLName, cur, err)
	}
	// One front withdrawn.
	if err := p.ReplaceA(ctx, cur, zone.CRLInitial[1:]); err != nil {
		t.Fatal(err)
	}
	after, _ := p.ReadA(ctx, zone.CRLName)
	if fmt.Sprint(after.Addrs) != fmt.Sprint(zone.CRLInitial[1:]) || after.TTL != 30 {
		t.Fatalf("after the withdrawal: %+v", after)
	}
	// A writer that read before it is refused and changes nothing.
	stale := h.make().(acmedns.Records)
	if err := stale.ReplaceA(ctx, cur, zone.CRLInitial[:1]); !errors.Is(err, acmedns.ErrConflict) {
		t.Fatalf("stale writer: %v, want ErrConflict", err)
	}
	// Never emptied; bad addresses refused without a conflict.
	if err := p.ReplaceA(ctx, after, nil); err == nil || errors.Is(err, acmedns.ErrConflict) {
		t.Errorf("empty RRset: %v", err)
	}
	if err := p.ReplaceA(ctx, after, []string{"not-an-address"}); err == nil || errors.Is(err, acmedns.ErrConflict) {
		t.Errorf("bad address: %v", err)
	}
	// Put back.
	if err := p.ReplaceA(ctx, after, zone.CRLInitial); err != nil {
		t.Fatal(err)
	}
	if back, _ := p.ReadA(ctx, zone.CRLName); fmt.Sprint(back.Addrs) != fmt.Sprint(zone.CRLInitial) {
		t.Fatalf("after the restore: %+v", back)
	}
	if h.badCredentials != nil {
		back, _ := p.ReadA(ctx, zone.CRLName)
		if err := h.badCredentials().(acmedns.Records).ReplaceA(ctx, back, zone.CRLInitial[:1]); err == nil || errors.Is(err, acmedns.ErrConflict) {
			t.Errorf("wrong credentials: %v", err)
		}
	}
}

func TestParseEpoch(t *testing.T) {
	e := acmedns.Epoch{N: 42, Site: "b", Controller: "c-1", Reason: "site a is down (3 of 1 required vantages see it down) at step=finalize", Time: time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)}
	got := acmedns.ParseEpoch(e.String())
	if got != e {
		t.Fatalf("round trip: %+v != %+v", got, e)
	}
	if s := acmedns.ParseEpoch("epoch=0; site=a; controller=seed; reason=initial"); s.N != 0 || s.Site != "a" || s.Reason != "initial" {
		t.Errorf("seed record: %+v", s)
	}
}

// The same contract against PowerDNS 4.7 (HTTP API), fenced through a
// real etcd (the controllers' embedded one).
func TestPowerDNSAgainstPowerDNSAndEtcd(t *testing.T) {
	srv := dnstest.PowerDNS(t, "127.0.170.5", zone)
	fence := etcdFence(t, "127.0.170.6")
	mk := func(key string, f acmedns.Fence) func() acmedns.Provider {
		return func() acmedns.Provider {
			return &acmedns.PowerDNS{Servers: acmedns.Servers{Names: names(), List: []string{srv.DNS}}, API: srv.API, APIKey: key, Fence: f}
		}
	}
	contract(t, harness{make: mk(srv.APIKey, fence), badCredentials: mk("wrong", fence)})

	ctx := context.Background()
	p := mk(srv.APIKey, fence)()
	// Without a fence the provider only reads.
	cur, _ := p.Read(ctx)
	if err := mk(srv.APIKey, nil)().Move(ctx, cur, []string{"127.0.69.40"}, 30, acmedns.Epoch{N: cur.Epoch.N + 1}); err == nil {
		t.Fatal("a provider without a fence wrote")
	}
	// A writer that won the fence and died before its PATCH: the next
	// read completes its write.
	next := acmedns.Epoch{N: cur.Epoch.N + 1, Site: "b", Controller: "died", Reason: "fenced, never patched"}
	_, version, _ := fence.Get(ctx)
	val, _ := json.Marshal(map[string]any{"addrs": []string{"127.0.69.41"}, "ttl": 30, "epoch": next.String()})
	if ok, err := fence.Put(ctx, val, version); !ok || err != nil {
		t.Fatalf("fence by hand: %v %v", ok, err)
	}
	got, err := p.Read(ctx)
	if err != nil || fmt.Sprint(got.Addrs) != "[127.0.69.41]" || got.Epoch.N != next.N {
		t.Fatalf("roll forward: %+v %v", got, err)
	}
	if served := p.WaitPropagated(ctx, []string{"127.0.69.41"}, next.N, time.Now())[0]; !served.Done {
		t.Fatalf("rolled-forward write not served: %+v", served)
	}
	// An epoch written to PowerDNS behind cairn's back (an operator) is
	// newer than the fence: it is adopted, and the next move builds on it.
	patch := `{"rrsets":[{"name":"` + zone.EpochName + `.","type":"TXT","ttl":30,"changetype":"REPLACE","records":[{"content":"\"epoch=50; site=c; controller=operator\""}]}]}`
	req, _ := http.NewRequest(http.MethodPatch, srv.API+"/api/v1/servers/localhost/zones/"+zone.Zone+".", strings.NewReader(patch))
	req.Header.Set("X-API-Key", srv.APIKey)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("operator PATCH: %v %v", resp, err)
	}
	op, _ := p.Read(ctx)
	if op.Epoch.N != 50 {
		t.Fatalf("operator's epoch not read: %+v", op)
	}
	if err := p.Move(ctx, op, []string{"127.0.69.42"}, 30, acmedns.Epoch{N: 51, Site: "a", Controller: "c1"}); err != nil {
		t.Fatalf("move after the operator: %v", err)
	}
}

// etcdFence starts a one-member etcd (the controller's embedded one) on ip.
func etcdFence(t *testing.T, ip string) acmedns.Fence {
	t.Helper()
	dnstest.Loopback(t, ip)
	spec := cluster.Default([]string{"a"})
	spec.Dir = t.TempDir()
	spec.Failover.Etcd = cluster.Etcd{Listen: ip + ":2379", DataDir: "var/etcd", Prefix: "/cairn/test/", SessionTTL: cluster.Duration{Duration: 5 * time.Second}}
	e, err := failover.OpenEtcd(context.Background(), spec, "test", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return acmedns.EtcdFence{Client: e.Client, Key: failover.FenceKey(spec)}
}
