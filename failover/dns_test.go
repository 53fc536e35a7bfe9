package failover

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-pki/cairn/internal/testenv"
)

const (
	testZone  = "ap.home.arpa"
	testName  = "acme.ap.home.arpa"
	testEpoch = "_cairn-epoch.acme.ap.home.arpa"
)

var testKey = TSIG{Name: "ctl", Algorithm: "hmac-sha256", Secret: base64.StdEncoding.EncodeToString([]byte("a 32 byte secret for the tests!!"))}

func seedZone(serial int) string {
	return fmt.Sprintf("$TTL 30\n@ SOA ns1.%[1]s. h.%[1]s. %[2]d 3600 600 86400 30\n@ NS ns1\nns1 A 127.0.69.2\nacme A 127.0.69.10\n_cairn-epoch.acme TXT \"epoch=0; site=a; controller=seed; reason=initial\"\n", testZone, serial)
}

// startServer runs argv until the test ends and waits for addr.
func startServer(t *testing.T, addr string, argv ...string) {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	logf, _ := os.Create(filepath.Join(os.TempDir(), "cairn-test-"+filepath.Base(argv[0])+".log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for range 200 {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	b, _ := os.ReadFile(logf.Name())
	t.Fatalf("%s did not listen on %s:\n%s", argv[0], addr, b)
}

func loopback(t *testing.T, ip string) {
	t.Helper()
	// Already there: left by a test run that was killed; take it over.
	if out, err := exec.Command("ip", "addr", "add", ip+"/32", "dev", "lo").CombinedOutput(); err != nil && !strings.Contains(string(out), "already assigned") {
		t.Fatalf("ip addr add %s: %v %s", ip, err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "addr", "del", ip+"/32", "dev", "lo").Run() })
}

func startBIND(t *testing.T) string {
	testenv.Integration(t, "named", "ip")
	dir := t.TempDir()
	addr := "127.0.69.2"
	loopback(t, addr)
	os.WriteFile(filepath.Join(dir, "zone"), []byte(seedZone(1)), 0o644)
	conf := fmt.Sprintf(`key "%[1]s" { algorithm %[2]s; secret "%[3]s"; };
options { directory "%[4]s"; pid-file "%[4]s/named.pid"; session-keyfile "%[4]s/s.key"; listen-on port 53 { %[5]s; }; listen-on-v6 { none; };
  recursion no; dnssec-validation no; notify no; };
controls { };
zone "%[6]s" { type primary; file "%[4]s/zone"; update-policy { grant "%[1]s" name %[7]s. A; grant "%[1]s" name %[8]s. TXT; }; };
`, testKey.Name, testKey.Algorithm, testKey.Secret, dir, addr, testZone, testName, testEpoch)
	os.WriteFile(filepath.Join(dir, "named.conf"), []byte(conf), 0o644)
	startServer(t, addr+":53", "named", "-c", filepath.Join(dir, "named.conf"), "-g")
	return addr + ":53"
}

func startKnot(t *testing.T) string {
	testenv.Integration(t, "knotd")
	dir := t.TempDir()
	addr := "127.0.69.3"
	loopback(t, addr)
	os.WriteFile(filepath.Join(dir, testZone+".zone"), []byte(seedZone(1)), 0o644)
	os.MkdirAll(filepath.Join(dir, "db"), 0o755)
	conf := fmt.Sprintf(`server:
  rundir: "%[1]s"
  listen: %[2]s@53
database:
  storage: "%[1]s/db"
key:
  - id: %[3]s
    algorithm: %[4]s
    secret: %[5]s
acl:
  - id: upd
    key: %[3]s
    action: update
template:
  - id: default
    storage: "%[1]s"
    zonefile-sync: -1
    journal-content: all
zone:
  - domain: %[6]s
    acl: upd
`, dir, addr, testKey.Name, testKey.Algorithm, testKey.Secret, testZone)
	os.WriteFile(filepath.Join(dir, "knot.conf"), []byte(conf), 0o644)
	startServer(t, addr+":53", "knotd", "-c", filepath.Join(dir, "knot.conf"))
	return addr + ":53"
}

// readWhenLoaded reads the name once the server has loaded the zone: it
// listens before that and answers SERVFAIL meanwhile.
func readWhenLoaded(t *testing.T, a *Applier) Current {
	t.Helper()
	var cur Current
	var err error
	for range 100 {
		if cur, err = a.Read(context.Background()); err == nil {
			return cur
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal(err)
	return cur
}

func applier(server string) *Applier {
	return &Applier{Primary: server, Servers: []string{server}, Zone: testZone, Name: testName, EpochName: testEpoch, Key: testKey}
}

// The same contract against BIND 9.18 and Knot 3.2.
func TestApplierAgainstBINDAndKnot(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Integration(t)
		t.Fatal("needs root (loopback addresses, port 53)")
	}
	for name, start := range map[string]func(*testing.T) string{"bind": startBIND, "knot": startKnot} {
		t.Run(name, func(t *testing.T) {
			a := applier(start(t))
			ctx := context.Background()
			cur := readWhenLoaded(t, a)
			if fmt.Sprint(cur.Addrs) != "[127.0.69.10]" || cur.Epoch.N != 0 || cur.Serial == 0 {
				t.Fatalf("initial read: %+v", cur)
			}
			// A move: addresses and epoch change together; serial +1.
			e := Epoch{N: 1, Site: "b", Controller: "c1", Reason: "site a is down", Time: time.Now()}
			if err := a.Move(ctx, cur, []string{"127.0.69.11"}, 30, e); err != nil {
				t.Fatal(err)
			}
			after, _ := a.Read(ctx)
			if fmt.Sprint(after.Addrs) != "[127.0.69.11]" || after.Epoch.N != 1 || after.Epoch.Site != "b" || after.Epoch.Reason != "site a is down" {
				t.Fatalf("after move: %+v", after)
			}
			if after.Serial != cur.Serial+1 {
				t.Errorf("serial %d -> %d, want +1", cur.Serial, after.Serial)
			}
			// A stale writer (read before the move) is refused and changes nothing.
			err := a.Move(ctx, cur, []string{"127.0.69.12"}, 30, Epoch{N: 1, Site: "c", Controller: "stale"})
			if !errors.Is(err, ErrConflict) {
				t.Fatalf("stale writer: %v, want ErrConflict", err)
			}
			if again, _ := a.Read(ctx); fmt.Sprint(again.Addrs) != "[127.0.69.11]" || again.Serial != after.Serial {
				t.Fatalf("stale writer changed the zone: %+v", again)
			}
			// Three controllers racing on one epoch: exactly one wins.
			var wg sync.WaitGroup
			results := make([]error, 3)
			for i := range 3 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					results[i] = a.Move(ctx, after, []string{fmt.Sprintf("127.0.69.%d", 20+i)}, 30, Epoch{N: 2, Site: fmt.Sprint(i), Controller: fmt.Sprintf("c%d", i)})
				}()
			}
			wg.Wait()
			wins, conflicts := 0, 0
			for _, err := range results {
				switch {
				case err == nil:
					wins++
				case errors.Is(err, ErrConflict):
					conflicts++
				default:
					t.Errorf("racing writer: %v", err)
				}
			}
			if wins != 1 || conflicts != 2 {
				t.Fatalf("race: %d wins, %d conflicts, want 1 and 2", wins, conflicts)
			}
			final, _ := a.Read(ctx)
			if final.Epoch.N != 2 || final.Serial != after.Serial+1 {
				t.Errorf("after the race: %+v", final)
			}
			// Pre-arming the TTL keeps the addresses.
			if err := a.SetTTL(ctx, final, 5); err != nil {
				t.Fatal(err)
			}
			if ttl, _ := a.Read(ctx); ttl.TTL != 5 || fmt.Sprint(ttl.Addrs) != fmt.Sprint(final.Addrs) {
				t.Errorf("after SetTTL: %+v", ttl)
			}
			// A wrong key is an error, not a conflict.
			bad := applier(a.Primary)
			bad.Key.Secret = base64.StdEncoding.EncodeToString([]byte("not the secret, not the secret!!"))
			cur2, _ := a.Read(ctx)
			if err := bad.Move(ctx, cur2, []string{"127.0.69.30"}, 30, Epoch{N: 3}); err == nil || errors.Is(err, ErrConflict) {
				t.Errorf("wrong key: %v", err)
			}
			if p := a.WaitPropagated(ctx, cur2.Addrs, cur2.Serial, time.Now()); len(p) != 1 || !p[0].Done {
				t.Errorf("propagation on the primary itself: %+v", p)
			}
		})
	}
}

func TestParseEpoch(t *testing.T) {
	e := Epoch{N: 42, Site: "b", Controller: "c-1", Reason: "site a is down (3 of 1 required vantages see it down) at step=finalize", Time: time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)}
	got := ParseEpoch(e.String())
	if got != e {
		t.Fatalf("round trip: %+v != %+v", got, e)
	}
	if s := ParseEpoch("epoch=0; site=a; controller=seed; reason=initial"); s.N != 0 || s.Site != "a" || s.Reason != "initial" {
		t.Errorf("seed record: %+v", s)
	}
}
