package drill

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cairn-pki/cairn/site"
)

// Fault is one injected fault: Inject and Restore are idempotent, and
// Restore works from any state Inject may have left.
type Fault interface {
	Describe() string
	Inject(ctx context.Context) error
	Restore(ctx context.Context) error
}

// crash: SIGKILL (or SIGSTOP for hang); restore starts it again (or SIGCONT).
type procFault struct {
	l               Components
	site, component string
	hang            bool // SIGSTOP/SIGCONT instead of SIGKILL/start
	graceful        bool // stop: a clean shutdown (database down, Redis down)
}

func (f *procFault) Describe() string {
	switch {
	case f.hang:
		return "hang " + f.site + "/" + f.component + " (SIGSTOP)"
	case f.graceful:
		return "stop " + f.site + "/" + f.component
	}
	return "crash " + f.site + "/" + f.component + " (SIGKILL)"
}

func (f *procFault) Inject(ctx context.Context) error {
	switch {
	case f.hang:
		_, err := f.l.SignalComponent(f.site, f.component, syscall.SIGSTOP)
		return err
	case f.graceful:
		return f.l.StopComponent(f.site, f.component)
	}
	return kill(f.l, f.site, f.component)
}

// kill sends SIGKILL and waits until the process is gone, so "injected"
// means "down".
func kill(l Components, siteName, component string) error {
	if _, err := l.SignalComponent(siteName, component, syscall.SIGKILL); err != nil {
		return err
	}
	for i := 0; i < 100 && l.ComponentRunning(siteName, component); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

func (f *procFault) Restore(ctx context.Context) error {
	if f.hang {
		if !f.l.ComponentRunning(f.site, f.component) {
			return nil
		}
		_, err := f.l.SignalComponent(f.site, f.component, syscall.SIGCONT)
		return err
	}
	if f.l.ComponentRunning(f.site, f.component) {
		return nil
	}
	return f.l.StartComponent(ctx, f.site, f.component)
}

// hsmFault: the CA's PKCS#11 token disappears (its SoftHSM token directory
// is hidden) and the CA is restarted, so it cannot open its signing keys.
type hsmFault struct {
	l    Components
	host HostFaults // nil: the token is a directory here (the lab)
	site string
	dir  string // the site bundle
}

func (f *hsmFault) Describe() string {
	return "HSM unavailable at " + f.site + " (token hidden, CA restarted)"
}

func (f *hsmFault) tokenDir() (string, error) {
	file, err := os.Open(filepath.Join(f.dir, "etc", "softhsm2.conf"))
	if err != nil {
		return "", fmt.Errorf("site %s has no SoftHSM configuration (the hsm fault needs the softhsm backend): %w", f.site, err)
	}
	defer file.Close()
	sc := bufio.NewScanner(file)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok && strings.TrimSpace(k) == "directories.tokendir" {
			return strings.TrimSpace(v), nil
		}
	}
	return "", fmt.Errorf("site %s: no directories.tokendir in softhsm2.conf", f.site)
}

// hide moves the token directory away (hidden) or back.
func (f *hsmFault) hide(ctx context.Context, hidden bool) error {
	if f.host != nil {
		return f.host.HideToken(ctx, f.site, hidden)
	}
	dir, err := f.tokenDir()
	if err != nil {
		return err
	}
	from, to := dir, dir+".cairn-drill-hidden"
	if !hidden {
		from, to = to, from
	}
	if _, err := os.Stat(from); err == nil {
		return os.Rename(from, to)
	}
	return nil
}

func (f *hsmFault) Inject(ctx context.Context) error {
	if err := f.hide(ctx, true); err != nil {
		return err
	}
	if err := kill(f.l, f.site, "ca"); err != nil {
		return err
	}
	// Start it without its token: it fails (that is the fault). Injected
	// means the CA is down: wait until it has given up.
	sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	f.l.StartComponent(sctx, f.site, "ca")
	for i := 0; i < 200 && f.l.ComponentRunning(f.site, "ca"); i++ {
		time.Sleep(50 * time.Millisecond)
	}
	if f.l.ComponentRunning(f.site, "ca") {
		return fmt.Errorf("site %s's CA still runs 10 s after losing its token", f.site)
	}
	return nil
}

func (f *hsmFault) Restore(ctx context.Context) error {
	if err := f.hide(ctx, false); err != nil {
		return err
	}
	kill(f.l, f.site, "ca") // the CA started without its token, if it still runs
	return f.l.StartComponent(ctx, f.site, "ca")
}

// powerFault: the site's host loses its power (every process gone at
// once, nothing shut down cleanly; its disk stays) and is switched on
// again when restored: it boots and its units start by themselves.
type powerFault struct {
	host HostPower
	site string
}

func (f *powerFault) Describe() string {
	return "power cut at " + f.site + "'s host (every process killed at once, no shutdown)"
}

func (f *powerFault) Inject(ctx context.Context) error { return f.host.PowerOff(ctx, f.site) }

func (f *powerFault) Restore(ctx context.Context) error { return f.host.PowerOn(ctx, f.site) }

// partition: nftables drops every packet to the site's network that does
// not come from it. On loopback the site's own processes connect from
// 127.0.0.1 too, so their connections to each other are cut as well (on
// separate hosts only the outside is cut: the table is on the site's
// host).
type partitionFault struct {
	host          HostFaults // nil: this machine's nftables (the lab)
	site, network string     // e.g. 127.0.32.0/24
	table         string
}

func (f *partitionFault) Describe() string {
	return "partition " + f.site + " (" + f.network + " unreachable from outside, nftables)"
}

func (f *partitionFault) Inject(ctx context.Context) error {
	if f.host != nil {
		return f.host.Partition(ctx, f.site, f.network, f.table, true)
	}
	return nftApply(ctx, "inet", f.table, fmt.Sprintf(" chain out {\n  type filter hook output priority 0; policy accept;\n  ip daddr %[1]s ip saddr != %[1]s drop\n }\n", f.network))
}

func (f *partitionFault) Restore(ctx context.Context) error {
	if f.host != nil {
		return f.host.Partition(ctx, f.site, f.network, f.table, false)
	}
	return nftDelete(ctx, "inet", f.table)
}

// nftApply replaces table (family) with the given chains.
func nftApply(ctx context.Context, family, table, chains string) error {
	if err := nftDelete(ctx, family, table); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader("table " + family + " " + table + " {\n" + chains + "}\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// nftDelete removes table if it is there.
func nftDelete(ctx context.Context, family, table string) error {
	if exec.CommandContext(ctx, "nft", "list", "table", family, table).Run() != nil {
		return nil // not there
	}
	if out, err := exec.CommandContext(ctx, "nft", "delete", "table", family, table).CombinedOutput(); err != nil {
		return fmt.Errorf("nft delete table %s %s: %v: %s", family, table, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// flap: the inner fault on for Down, off for Up, for a while.
type flapFault struct {
	inner    Fault
	down, up time.Duration
	mu       sync.Mutex
	cancel   context.CancelFunc
	done     chan struct{}
	onChange func(injected bool)
}

func (f *flapFault) Describe() string {
	return fmt.Sprintf("flap: %s for %s, then up %s, repeatedly", f.inner.Describe(), f.down, f.up)
}

func (f *flapFault) Inject(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cancel != nil {
		return nil
	}
	fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	f.cancel, f.done = cancel, make(chan struct{})
	if err := f.inner.Inject(ctx); err != nil {
		cancel()
		close(f.done)
		return err
	}
	go func() {
		defer close(f.done)
		for {
			for _, phase := range []struct {
				d      time.Duration
				inject bool
			}{{f.down, false}, {f.up, true}} {
				select {
				case <-fctx.Done():
					return
				case <-time.After(phase.d):
				}
				var err error
				if phase.inject {
					err = f.inner.Inject(fctx)
				} else {
					err = f.inner.Restore(fctx)
				}
				if err == nil && f.onChange != nil {
					f.onChange(phase.inject)
				}
			}
		}
	}()
	return nil
}

func (f *flapFault) Restore(ctx context.Context) error {
	f.mu.Lock()
	cancel, done := f.cancel, f.done
	f.cancel = nil
	f.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	return f.inner.Restore(ctx)
}

// replicationFault cuts account replication between a site and every
// peer, both ways, as a WAN partition between the sites' databases would,
// while every site keeps serving its own clients: the site's connections
// stop, and so do the peers' connections from it. Restore starts them;
// they resume from their GTID positions.
type replicationFault struct {
	l    Infra
	site string
}

func (f *replicationFault) Describe() string { return "replication cut " + f.site + " ⟷ peers" }

func (f *replicationFault) each(ctx context.Context, own, peers string) error {
	if err := f.l.DBExec(ctx, f.site, own); err != nil {
		return err
	}
	for _, s := range f.l.ClusterSpec().Sites {
		if s.Name != f.site {
			if err := f.l.DBExec(ctx, s.Name, fmt.Sprintf(peers, site.ConnectionName(f.site))); err != nil {
				return err
			}
		}
	}
	return nil
}

func (f *replicationFault) Inject(ctx context.Context) error {
	return f.each(ctx, "STOP ALL SLAVES", "STOP SLAVE '%s'")
}

func (f *replicationFault) Restore(ctx context.Context) error {
	return f.each(ctx, "START ALL SLAVES", "START SLAVE '%s'")
}

// newFault builds the fault of one step for one concrete site (or
// "cluster") from its row of the fault table; table names the nftables
// table it may create.
func newFault(in Infra, st Step, siteName, table string) (Fault, error) {
	k, ok := faultKindOf(st.Fault)
	if !ok {
		return nil, fmt.Errorf("unknown fault %q", st.Fault)
	}
	f, err := k.Build(in, st, siteName, table)
	if err != nil || !k.Network {
		return f, err
	}
	return networkFault{f}, nil
}

// networkFault marks a fault whose row says it cuts the network.
type networkFault struct{ Fault }
