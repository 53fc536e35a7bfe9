package drill

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"sync"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/cairn-pki/cairn/cluster"
)

// toxicFault puts toxiproxy in front of a site's WFE: new connections to
// the WFE's address are redirected (nftables DNAT in the output hook) to a
// proxy on loopback whose upstream is an alias address redirected to the
// WFE, so the proxy's own connections are not caught by the first rule.
// Connections opened before the fault go on directly (only a SYN is
// redirected: conntrack may first see them in mid-stream); the probes
// open one per request.
type toxicFault struct {
	site, wfe string // wfe: ip:port
	kind      string // latency, timeout, reset
	latency   int64  // ms (latency: delay; timeout: close after, 0 = never)
	jitter    int64
	table     string

	mu      sync.Mutex
	proxy   *toxiproxy.Proxy
	reserve net.Listener // holds the alias port while the rule points at it
}

func (f *toxicFault) Describe() string {
	switch f.kind {
	case "latency":
		return fmt.Sprintf("latency %dms±%dms in front of %s's WFE (toxiproxy)", f.latency, f.jitter, f.site)
	case "timeout":
		return fmt.Sprintf("%s's WFE stops answering (toxiproxy timeout %dms)", f.site, f.latency)
	}
	return f.site + "'s WFE resets connections (toxiproxy reset_peer)"
}

// toxic is the toxiproxy toxic as its JSON API takes it.
func (f *toxicFault) toxic() string {
	t := map[string]any{"name": "drill", "stream": "downstream", "toxicity": 1.0}
	switch f.kind {
	case "latency":
		t["type"], t["attributes"] = "latency", map[string]int64{"latency": f.latency, "jitter": f.jitter}
	case "timeout":
		t["type"], t["attributes"] = "timeout", map[string]int64{"timeout": f.latency}
	default:
		t["type"], t["attributes"] = "reset_peer", map[string]int64{"timeout": 0}
	}
	b, _ := json.Marshal(t)
	return string(b)
}

func (f *toxicFault) Inject(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.proxy != nil {
		return nil
	}
	wfeIP, wfePort, err := net.SplitHostPort(f.wfe)
	if err != nil {
		return err
	}
	reserve, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	p := toxiproxy.NewProxy(srv, f.table, "127.0.0.1:0", reserve.Addr().String())
	if err := p.Start(); err != nil {
		reserve.Close()
		return fmt.Errorf("toxiproxy: %w", err)
	}
	if _, err := p.Toxics.AddToxicJson(strings.NewReader(f.toxic())); err != nil {
		p.Stop()
		reserve.Close()
		return fmt.Errorf("toxiproxy toxic: %w", err)
	}
	_, proxyPort, _ := net.SplitHostPort(p.Listen)
	_, aliasPort, _ := net.SplitHostPort(reserve.Addr().String())
	rules := fmt.Sprintf(" chain out {\n  type nat hook output priority -100; policy accept;\n"+
		"  ip daddr %s tcp dport %s tcp flags & (syn | ack) == syn dnat to 127.0.0.1:%s\n"+
		"  ip daddr 127.0.0.1 tcp dport %s tcp flags & (syn | ack) == syn dnat to %s\n }\n", wfeIP, wfePort, proxyPort, aliasPort, f.wfe)
	if err := nftApply(ctx, "ip", f.table, rules); err != nil {
		p.Stop()
		reserve.Close()
		return err
	}
	// NAT is decided once per conntrack entry, and a SYN that matches an
	// entry left from an earlier connection with the same ports follows
	// that entry: to an earlier fault's proxy, gone (connection refused),
	// or straight to the WFE. Such entries outlive their connections by
	// days (ESTABLISHED, 5 days) when the connections end while no table
	// needs conntrack (after a Restore): forget them. Seen once in make
	// test: "connect: connection refused" right after an injection.
	if err := conntrackForget(ctx, wfeIP, wfePort); err != nil {
		nftDelete(ctx, "ip", f.table)
		p.Stop()
		reserve.Close()
		return err
	}
	f.proxy, f.reserve = p, reserve
	return nil
}

// Restore removes the redirection first (new connections go straight to
// the WFE again), then stops the proxy. After a crash of the drill only
// the table is left, and the journal removes it.
func (f *toxicFault) Restore(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := nftDelete(ctx, "ip", f.table); err != nil {
		return err
	}
	if f.proxy != nil {
		f.proxy.Stop()
		f.reserve.Close()
		f.proxy, f.reserve = nil, nil
	}
	return nil
}

// conntrackForget deletes the conntrack entries of TCP connections to
// ip:port (conntrack exits 1 when there is none).
func conntrackForget(ctx context.Context, ip, port string) error {
	out, err := exec.CommandContext(ctx, "conntrack", "-D", "-p", "tcp", "--orig-dst", ip, "--orig-port-dst", port).CombinedOutput()
	if err != nil && !strings.Contains(string(out), " 0 flow entries have been deleted") {
		return fmt.Errorf("conntrack -D (Debian package conntrack): %v: %s", err, cluster.FirstLine(strings.TrimSpace(string(out))))
	}
	return nil
}
