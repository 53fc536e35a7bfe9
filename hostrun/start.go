package hostrun

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cairn-pki/cairn/internal/fsutil"
	"github.com/cairn-pki/cairn/site"
)

// In the functions below, resolve maps a bundle's program name (boulder,
// mariadbd, cairn, …) to an executable, and logf takes one progress line.

// StartProc starts one process, unless it already runs, and waits until it
// is ready (its Ready address accepts connections).
func StartProc(ctx context.Context, p Proc, resolve func(string) (string, error), logf func(string, ...any)) error {
	t := time.Now()
	pid, err := p.start(resolve)
	if err != nil {
		return err
	}
	if p.Ready == "" {
		logf("  %-22s pid %-7d started", filepath.Base(p.Root)+"/"+p.Name, pid)
		return nil
	}
	if err := p.waitReady(ctx, 60*time.Second); err != nil {
		return err
	}
	logf("  %-22s pid %-7d ready in %4.0fms on %s", filepath.Base(p.Root)+"/"+p.Name, pid, float64(time.Since(t).Microseconds())/1000, p.Listen)
	return nil
}

// StartSite starts a site bundle in dependency order (the database loaded
// once MariaDB answers) and publishes its CRLs.
func StartSite(ctx context.Context, b *site.Bundle, resolve func(string) (string, error), logf func(string, ...any)) error {
	if err := InitDBDir(ctx, b.Database, DBOSUser()); err != nil {
		return fmt.Errorf("site %s: %w", b.Site, err)
	}
	publish := false
	for _, p := range b.Processes {
		proc := NewProc(p, b.Root)
		// A process that runs an older configuration (the spec changed
		// and the site was rendered again) restarts to read the new one.
		if proc.StartedWithOther() {
			if _, err := proc.stopToRestart(); err != nil {
				return fmt.Errorf("site %s: %w", b.Site, err)
			}
			logf("  %-22s configuration changed: restarting", filepath.Base(b.Root)+"/"+p.Name)
		} else if _, up := proc.Running(); !up && p.Name == "crl-updater" {
			publish = true
		}
		if err := StartProc(ctx, proc, resolve, logf); err != nil {
			return fmt.Errorf("site %s: %w", b.Site, err)
		}
		if p.Program == "mariadbd" {
			if err := LoadDB(ctx, b.Database); err != nil {
				return fmt.Errorf("site %s: %w", b.Site, err)
			}
		}
	}
	// crl-updater first publishes after a random part of its period; publish
	// every shard now so CRL URLs answer from the start. A crl-updater that
	// was running already publishes on its own (and holds shard leases a
	// second run would collide with).
	if !publish {
		return nil
	}
	return PublishCRLsAtStart(ctx, b, resolve)
}

// ErrCRLShardsLeased: the one-shot run found only shards another updater
// kept leased past a whole lease (the daemon next to it, generating them).
var ErrCRLShardsLeased = errors.New("every shard it failed is held by a running crl-updater")

// PublishCRLsAtStart publishes every shard as a site starts. A shard the
// running daemon keeps leased is being published by it: that is no
// failure here (under load its run took longer than a lease, and the
// site failed to start although its CRLs were on their way).
func PublishCRLsAtStart(ctx context.Context, b *site.Bundle, resolve func(string) (string, error)) error {
	if err := UpdateCRLs(ctx, b, resolve); err != nil && !errors.Is(err, ErrCRLShardsLeased) {
		return err
	}
	return nil
}

// onlyLeased says whether every shard a one-shot run failed was leased
// by another updater (and at least one was).
func onlyLeased(out []byte) bool {
	failed := 0
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, " 3 crl-updater ") && strings.Contains(l, "Generating CRL failed") {
			if !strings.Contains(l, "already leased") {
				return false
			}
			failed++
		}
	}
	return failed > 0
}

// RestartExited starts again every process of procs that has exited.
func RestartExited(procs []Proc, resolve func(string) (string, error), logf func(string, ...any)) {
	for _, p := range procs {
		if _, up := p.Running(); !up && !p.held() {
			if pid, err := p.start(resolve); err != nil {
				logf("supervisor: restart %s: %v", p.Name, err)
			} else {
				logf("supervisor: restarted %s/%s (pid %d)", filepath.Base(p.Root), p.Name, pid)
			}
		}
	}
}

// LookProgram finds a system program (mariadbd, redis-server, named).
func LookProgram(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		if p := filepath.Join(dir, name); fsutil.Exists(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found: run `make deps` (scripts/deps.sh)", name)
}

// UpdateCRLs has the site's crl-updater build and publish every CRL shard
// now, instead of at its next period: it runs a one-shot crl-updater next
// to the daemon.
func UpdateCRLs(ctx context.Context, b *site.Bundle, resolve func(string) (string, error)) error {
	boulder, err := resolve("boulder")
	if err != nil {
		return err
	}
	for _, p := range b.Processes {
		if p.Name != "crl-updater" {
			continue
		}
		// Its own debug port: the daemon holds the configured one.
		host, _, _ := net.SplitHostPort(p.Listen)
		args := append(append([]string{}, p.Args...), "-runOnce", "--debug-addr", net.JoinHostPort(host, "0"))
		// Right after start the storer may still refuse an upload: a few
		// tries, then the error lines Boulder logged (level 3). A shard
		// another updater holds (the daemon next to this run, or one that
		// ended holding it: killed, its host rebooted) is free again
		// within the lease: tried again until then.
		var out []byte
		var tries int
		leaseEnds := time.Now().Add(site.CRLUpdateTimeout + 10*time.Second)
		for tries = 1; ; tries++ {
			cmd := exec.CommandContext(ctx, boulder, args...)
			cmd.Env = environ(p.Env, p.UnsetEnv)
			if out, err = cmd.CombinedOutput(); err == nil {
				return nil
			}
			leased := strings.Contains(string(out), "already leased")
			if ctx.Err() != nil || (tries >= 3 && !(leased && time.Now().Before(leaseEnds))) {
				break
			}
			time.Sleep(2 * time.Second)
		}
		var errLines []string
		for _, l := range strings.Split(string(out), "\n") {
			if strings.Contains(l, " 3 crl-updater ") {
				errLines = append(errLines, l)
			}
		}
		if onlyLeased(out) {
			err = fmt.Errorf("%w (%v)", ErrCRLShardsLeased, err)
		}
		return fmt.Errorf("site %s: crl-updater -runOnce (%d tries): %w: %s", b.Site, tries, err, LastLines([]byte(strings.Join(errLines, "\n")), 3))
	}
	return fmt.Errorf("site %s has no crl-updater", b.Site)
}

// RestartComponents restarts the named processes of a site bundle with
// what the bundle says now: stopped in reverse dependency order, started
// in dependency order, each ready before the next; a restarted MariaDB
// gets its users and replication connections again. A supervisor that
// starts one of them first does no harm: a running process is left as
// it is and waited for.
func RestartComponents(ctx context.Context, b *site.Bundle, names []string, resolve func(string) (string, error), logf func(string, ...any)) error {
	for _, n := range names {
		if !slices.ContainsFunc(b.Processes, func(p site.Process) bool { return p.Name == n }) {
			return fmt.Errorf("site %s has no component %q", b.Site, n)
		}
	}
	// Held while they restart: a supervisor would otherwise start a
	// process whose dependency is still stopping (a WFE before its nonce
	// service, which takes seconds to stop while other sites' WFEs hold
	// connections to it), and the WFE's connection would back off.
	for _, p := range b.Processes {
		if slices.Contains(names, p.Name) {
			proc := NewProc(p, b.Root)
			if err := proc.hold(); err != nil {
				return err
			}
			defer proc.release()
		}
	}
	for _, p := range slices.Backward(b.Processes) {
		if slices.Contains(names, p.Name) {
			if _, err := NewProc(p, b.Root).Stop(10 * time.Second); err != nil {
				return fmt.Errorf("site %s: stop %s: %w", b.Site, p.Name, err)
			}
		}
	}
	for _, p := range b.Processes {
		if !slices.Contains(names, p.Name) {
			continue
		}
		proc := NewProc(p, b.Root)
		if err := StartProc(ctx, proc, resolve, logf); err != nil {
			return fmt.Errorf("site %s: %w", b.Site, err)
		}
		proc.release()
		if p.Program == "mariadbd" {
			if err := LoadDB(ctx, b.Database); err != nil {
				return fmt.Errorf("site %s: %w", b.Site, err)
			}
		}
	}
	return nil
}

// StopChanged stops every running process of the cluster bundle whose
// configuration its render changed (ClusterBundle.Changed), so the next
// start reads the new one.
func StopChanged(cb *site.ClusterBundle, logf func(string, ...any)) error {
	for _, p := range cb.Processes {
		if !slices.Contains(cb.Changed, p.Name) {
			continue
		}
		stopped, err := (Proc{Process: p, Root: cb.Root}).stopToRestart()
		if err != nil {
			return err
		}
		if stopped {
			logf("  %-22s configuration changed: stopped to restart", filepath.Base(cb.Root)+"/"+p.Name)
		}
	}
	return nil
}

// stopToRestart stops p for a start with a new configuration, and waits
// until its readiness address stops answering: a new PowerDNS that still
// reaches the old one's control socket exits ("is in use"), while the
// old listener made the new one look ready.
func (p Proc) stopToRestart() (bool, error) {
	stopped, err := p.Stop(10 * time.Second)
	if stopped {
		waitClosed(p.Ready, 10*time.Second)
	}
	return stopped, err
}

// waitClosed waits (at most within) until ready ("tcp:IP:port" or
// "unix:PATH") refuses connections.
func waitClosed(ready string, within time.Duration) {
	network, addr := readyAddr(ready)
	if addr == "" {
		return
	}
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(25 * time.Millisecond) {
		c, err := net.DialTimeout(network, addr, 200*time.Millisecond)
		if err != nil {
			return
		}
		c.Close()
	}
}
