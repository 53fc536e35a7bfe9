package lab

import (
	"context"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/internal/abusetest"
	"github.com/cairn-pki/cairn/internal/acmeclient"
	"github.com/cairn-pki/cairn/internal/acmefront"
	"github.com/cairn-pki/cairn/internal/connlimit"
	"github.com/cairn-pki/cairn/internal/rfc2136"
	"github.com/cairn-pki/cairn/site"
)

// Attackers of the abuse test, and the client's own address.
const (
	attackerA  = "127.0.77.1" // half-open handshakes for the ACME name
	attackerB  = "127.0.77.2" // half-open handshakes for ra.boulder
	attackerC  = "127.0.77.4" // slow request bodies
	goodClient = "127.0.77.3"
)

// checkFrontUnderAbuse: the measured attack on site a's ACME front
// (half-open handshakes by the ten thousand from two addresses, slow
// bodies from a third) while a client from a fourth issues certificates:
// every issuance succeeds, the front keeps its PID, the attackers are
// capped and cut at the deadlines. Figures in the log (docs/security.md).
func checkFrontUnderAbuse(t *testing.T, l *Lab, spec *cluster.Spec, sum *Summary) {
	t.Helper()
	ctx := context.Background()
	s := spec.Sites[0]
	front := net.JoinHostPort(s.Address, strconv.Itoa(spec.ACME.HTTPSPort))
	plan, err := site.NewPlan(spec, 0)
	if err != nil {
		t.Fatal(err)
	}
	metricsAddr := plan.MetricsAddrs()[site.ACMEFront]
	pid := frontPID(t, l, s.Name)
	fdsBefore := fdCount(pid)

	client := abuseClient(t, spec, sum, front)
	issue := func(i int) (time.Duration, error) {
		start := time.Now()
		ictx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		_, _, _, err := client.Issue(ictx, []string{fmt.Sprintf("abuse%d.%s", i, spec.ACME.Zone)})
		return time.Since(start), err
	}
	var base []time.Duration
	for i := range 5 {
		d, err := issue(i)
		if err != nil {
			t.Fatalf("issuance before the attack: %v", err)
		}
		base = append(base, d)
	}

	helloACME, err := abusetest.ClientHello(spec.ACME.Name)
	if err != nil {
		t.Fatal(err)
	}
	helloRA, _ := abusetest.ClientHello("ra.boulder")
	const window = 40 * time.Second
	workers := connlimit.DefaultPerSource + 100 // more than a source may hold
	results := make([]abusetest.Result, 3)
	var wg sync.WaitGroup
	for i, a := range []struct {
		src  string
		send func(net.Conn) error
		n    int64
		w    int
	}{
		{attackerA, abusetest.HalfOpen(helloACME), 15000, workers},
		{attackerB, abusetest.HalfOpen(helloRA), 15000, workers},
		{attackerC, abusetest.SlowBody(spec.ACME.Name, "/acme/new-order"), 2000, 100},
	} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = abusetest.Attack(ctx, a.src, front, a.send, a.w, a.n, window)
		}()
	}
	attackDone := make(chan struct{})
	go func() { wg.Wait(); close(attackDone) }()

	var under []time.Duration
	var failures []string
	var maxOpen float64
	var maxFDs int
	sample := func() {
		maxOpen = max(maxOpen, frontMetric(t, metricsAddr, "cairn_front_connections_open"))
		maxFDs = max(maxFDs, fdCount(pid))
	}
	for i := 100; ; i++ {
		select {
		case <-attackDone:
		default:
			sample()
			d, err := issue(i)
			if err != nil {
				failures = append(failures, err.Error())
			} else {
				under = append(under, d)
			}
			continue
		}
		break
	}
	for _, r := range results {
		t.Logf("attacker %s", r)
	}
	if got := frontPID(t, l, s.Name); got != pid {
		t.Fatalf("site a's ACME front was restarted during the attack: pid %d, then %d", pid, got)
	}
	if len(failures) > 0 {
		t.Errorf("%d of %d issuances failed during the attack: %s", len(failures), len(failures)+len(under), failures[0])
	}
	if len(under) < 3 {
		t.Errorf("only %d issuances during the %v attack", len(under), window)
	}
	if v := frontMetric(t, metricsAddr, `cairn_front_connections_refused_total{cap="per_source"}`); v == 0 {
		t.Error("the front refused no connection for its source's cap")
	}
	// ra.boulder is a name like any other: no splice, the same deadline.
	// The attacker's own clock runs late when make test saturates the
	// cores (7.2 s measured for the 5-s deadline): the bound checked is
	// the deadline's, not a held connection's minutes. A slow body's is
	// counted from its headers sent, as the front's read deadline starts
	// after the TLS handshake (33.3 s was measured from connect once).
	for _, r := range results[:2] {
		if got, limit := r.Longest(), acmefront.HandshakeTimeout+4*time.Second; got > limit {
			t.Errorf("%s: a half-open handshake was held %v (deadline %v)", r.Source, got, acmefront.HandshakeTimeout)
		}
	}
	if got, limit := results[2].Longest(), acmefront.ReadTimeout+4*time.Second; got > limit {
		t.Errorf("a slow body was held %v (deadline %v)", got, acmefront.ReadTimeout)
	}
	total := results[0].Attempts + results[1].Attempts + results[2].Attempts
	t.Logf("abuse figures: %d attacking connections in %v; issuance p50/p95 %v/%v before (n=%d), %v/%v during (n=%d); "+
		"the front held at most %.0f connections and %d descriptors (%d before): %.2f descriptors per held connection",
		total, window, pct(base, 50), pct(base, 95), len(base), pct(under, 50), pct(under, 95), len(under),
		maxOpen, maxFDs, fdsBefore, float64(maxFDs-fdsBefore)/max(maxOpen, 1))
	// The controller probes a through this front too: when the attack
	// slows a's issuance past the probes' deadlines (a loaded machine), it
	// may move the name, as it should for a site its clients cannot use.
	// Said, not judged; the checks through the name ran before.
	if moved := nameMoves(t, spec, s.Name); moved != "" {
		t.Logf("during the attack on a's front, %s", moved)
	}
}

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, len(s)*p/100)].Round(time.Millisecond)
}

func frontPID(t *testing.T, l *Lab, siteName string) int {
	t.Helper()
	st, err := l.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st.Sites {
		for _, p := range s.Processes {
			if s.Name == siteName && p.Name == site.ACMEFront && p.Up {
				return p.PID
			}
		}
	}
	t.Fatalf("site %s: no %s running", siteName, site.ACMEFront)
	return 0
}

func fdCount(pid int) int {
	es, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(es)
}

func frontMetric(t *testing.T, addr, name string) float64 {
	t.Helper()
	v, err := abusetest.Metric(addr, name)
	if err != nil {
		t.Fatalf("the front's metrics: %v", err)
	}
	return v
}

// abuseClient is a Go ACME client of site a from goodClient's address.
func abuseClient(t *testing.T, spec *cluster.Spec, sum *Summary, front string) *acmeclient.Client {
	t.Helper()
	key, err := rfc2136.ReadKey(sum.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	pool, _ := rootPool(t, sum)
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(goodClient)}, Timeout: 5 * time.Second}
	c, err := acmeclient.New(acmeclient.Options{
		DirectoryURL: "https://" + spec.ACME.Name + "/directory", Roots: pool, ServerName: spec.ACME.Name,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, front)
		},
		DNS: acmeclient.DNSUpdater{Server: sum.DNS, Zone: spec.ACME.Zone, Key: key},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	if _, err := c.Register(context.Background()); err != nil {
		t.Fatal(err)
	}
	return c
}
