// Package hostrun runs rendered bundles on one host: supervised processes
// with PID files, readiness, dependency order, database init and load,
// restarts. It runs a bundle for `cairn site run|supervisor|step` on
// provisioned hosts, and runs the lab's processes for package lab. It
// renders nothing itself: bundles come from package site.
package hostrun

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cairn-pki/cairn/internal/fsutil"
	"github.com/cairn-pki/cairn/site"
)

// Proc is one supervised process of a bundle: its PID file records the PID
// and the process start time, so a recycled PID is never mistaken for ours.
type Proc struct {
	site.Process
	// Root is the bundle's root: logs in var/logs, PID files in var/pids.
	Root string
}

// NewProc prepares a site bundle's process to run here: MariaDB is told
// which user to run as (see DBOSUser).
func NewProc(p site.Process, root string) Proc {
	if p.Program == "mariadbd" && DBOSUser() != "" {
		p.Args = append(append([]string(nil), p.Args...), "--user="+DBOSUser())
	}
	return Proc{Process: p, Root: root}
}

func (p Proc) pidFile() string { return filepath.Join(p.Root, "var", "pids", p.Name+".pid") }

// fingerprintFile holds the Fingerprint of what the running process read
// when it started.
func (p Proc) fingerprintFile() string {
	return filepath.Join(p.Root, "var", "pids", p.Name+".fingerprint")
}

// Fingerprint is a digest of what the process reads at start: its
// program, arguments and environment, and every file its arguments name
// (an absolute path, alone or after "="). Every component reads its
// configuration only at start, so a running process whose fingerprint
// changed runs an old configuration.
func (p Proc) Fingerprint() string {
	h := sha256.New()
	fmt.Fprintf(h, "%q %q %q %q\n", p.Program, p.Args, p.Env, p.UnsetEnv)
	for _, a := range p.Args {
		if _, v, ok := strings.Cut(a, "="); ok {
			a = v
		}
		if !filepath.IsAbs(a) {
			continue
		}
		if b, err := os.ReadFile(a); err == nil { // a directory or a missing file adds nothing
			fmt.Fprintf(h, "%s %d\n", a, len(b))
			h.Write(b)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// StartedWithOther reports whether p runs with a configuration other than
// the one it would read now (false if it does not run, or started before
// fingerprints were recorded).
func (p Proc) StartedWithOther() bool {
	if _, up := p.Running(); !up {
		return false
	}
	b, err := os.ReadFile(p.fingerprintFile())
	return err == nil && strings.TrimSpace(string(b)) != p.Fingerprint()
}

// holdFile marks a process a restart stopped and will start again in
// its turn: the supervisor leaves it alone meanwhile.
func (p Proc) holdFile() string { return filepath.Join(p.Root, "var", "pids", p.Name+".hold") }

// holdFor bounds a hold: one left by a restart that died does not keep
// the supervisor away for long.
const holdFor = 2 * time.Minute

func (p Proc) hold() error {
	if err := os.MkdirAll(filepath.Dir(p.holdFile()), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p.holdFile(), nil, 0o644)
}

func (p Proc) release() { os.Remove(p.holdFile()) }

// Hold keeps the supervisor from starting p (for at most 2 minutes, or
// until Release): what a rebuild stops stays stopped until it is done.
func (p Proc) Hold() error { return p.hold() }

// Release ends Hold.
func (p Proc) Release() { p.release() }

// held reports whether a restart holds p (for at most holdFor).
func (p Proc) held() bool {
	fi, err := os.Stat(p.holdFile())
	return err == nil && time.Since(fi.ModTime()) < holdFor
}

// LogFile is where the process's stdout and stderr go.
func (p Proc) LogFile() string { return filepath.Join(p.Root, "var", "logs", p.Name+".log") }

// startTime reads field 22 of /proc/PID/stat (clock ticks since boot).
func startTime(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("malformed stat")
	}
	fields := strings.Fields(s[i+2:])
	if len(fields) < 20 {
		return 0, errors.New("malformed stat")
	}
	return strconv.ParseUint(fields[19], 10, 64)
}

// Running returns the PID recorded in the process's PID file, and whether
// the process we started with it is alive (a recycled PID or a zombie is
// not).
func (p Proc) Running() (int, bool) {
	b, err := os.ReadFile(p.pidFile())
	if err != nil {
		return 0, false
	}
	var pid int
	var st uint64
	if _, err := fmt.Sscanf(string(b), "%d %d", &pid, &st); err != nil || pid <= 0 {
		return 0, false
	}
	cur, err := startTime(pid)
	if err != nil || cur != st {
		return pid, false
	}
	// A zombie is not running.
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		if i := strings.LastIndexByte(string(b), ')'); i > 0 && len(b) > i+2 && b[i+2] == 'Z' {
			return pid, false
		}
	}
	return pid, true
}

// lock takes the process's lock file (exclusive), which starting and
// stopping it hold; the returned func releases it.
func (p Proc) lock() (func(), error) {
	return fsutil.Lock(strings.TrimSuffix(p.pidFile(), ".pid")+".lock", 0o644)
}

// start launches the process detached (own session, so it outlives this
// command), logging to its log file, unless it already runs.
// Two starters (a supervisor and `cairn site restart` or `lab up`) take
// turns on the process's lock file, so it is never started twice.
func (p Proc) start(bin func(string) (string, error)) (int, error) {
	if pid, ok := p.Running(); ok {
		return pid, nil
	}
	for _, d := range []string{filepath.Dir(p.pidFile()), filepath.Dir(p.LogFile())} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return 0, err
		}
	}
	unlock, err := p.lock()
	if err != nil {
		return 0, err
	}
	defer unlock()
	if pid, ok := p.Running(); ok {
		return pid, nil // the other starter was first
	}
	exe, err := bin(p.Program)
	if err != nil {
		return 0, err
	}
	fp := p.Fingerprint()
	logf, err := os.OpenFile(p.LogFile(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "--- cairn: starting %s at %s\n", p.Name, time.Now().UTC().Format(time.RFC3339))
	cmd := exec.Command(exe, p.Args...)
	cmd.Env = environ(p.Env, p.UnsetEnv)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Dir = p.Root
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start %s: %w", p.Name, err)
	}
	pid := cmd.Process.Pid
	st, err := startTime(pid)
	if err != nil {
		return 0, err
	}
	if err := fsutil.WriteFileAtomic(p.pidFile(), fmt.Appendf(nil, "%d %d\n", pid, st), 0o644); err != nil {
		return 0, err
	}
	if err := fsutil.WriteFileAtomic(p.fingerprintFile(), []byte(fp+"\n"), 0o600); err != nil {
		return 0, err
	}
	// Reap it if it exits while we run; after we exit, init does.
	go cmd.Wait()
	return pid, nil
}

func environ(add, unset []string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		drop := false
		for _, u := range unset {
			drop = drop || k == u
		}
		for _, a := range add {
			ak, _, _ := strings.Cut(a, "=")
			drop = drop || k == ak
		}
		if !drop {
			env = append(env, kv)
		}
	}
	return append(env, add...)
}

// waitReady waits until the readiness address accepts, the process dies,
// or the timeout passes.
func (p Proc) waitReady(ctx context.Context, timeout time.Duration) error {
	return waitListening(ctx, p.Name, p.Ready, p.LogFile(), timeout, func() bool {
		_, ok := p.Running()
		return ok
	})
}

// readyAddr is the network and address of a readiness address
// ("tcp:IP:port" or "unix:PATH").
func readyAddr(ready string) (network, addr string) {
	if path, ok := strings.CutPrefix(ready, "unix:"); ok {
		return "unix", path
	}
	return "tcp", strings.TrimPrefix(ready, "tcp:")
}

// waitListening waits until addr accepts connections, or fails as soon as
// alive says the process is gone (nil: a service manager runs it, only
// the timeout ends the wait).
// ready is "tcp:IP:port" or "unix:PATH" (a Unix socket).
func waitListening(ctx context.Context, name, ready, logFile string, timeout time.Duration, alive func() bool) error {
	network, addr := readyAddr(ready)
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout(network, addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if alive != nil && !alive() {
			return fmt.Errorf("%s exited before listening on %s; last log lines:\n%s", name, addr, tailFile(logFile, 8))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not listening on %s after %s; last log lines:\n%s", name, addr, timeout, tailFile(logFile, 8))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// Stop ends the process we started: SIGTERM, then SIGKILL after grace, and
// removes its PID file; it reports false when the process was not running.
// It never signals a PID whose start time differs from the recorded one.
func (p Proc) Stop(grace time.Duration) (bool, error) {
	// Under the start lock: a supervisor that sees the process gone
	// starts it again only after its PID file is removed here, never
	// between (removing the new process's PID file would orphan it).
	if !fsutil.Exists(p.pidFile()) {
		return false, nil
	}
	unlock, err := p.lock()
	if err != nil {
		return false, err
	}
	defer unlock()
	pid, ok := p.Running()
	if !ok {
		os.Remove(p.pidFile())
		return false, nil
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return false, err
	}
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if _, alive := p.Running(); !alive {
			os.Remove(p.pidFile())
			return true, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, alive := p.Running(); alive {
		syscall.Kill(pid, syscall.SIGKILL)
		for range 100 {
			if _, alive := p.Running(); !alive {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	os.Remove(p.pidFile())
	return true, nil
}

// RSSKB is the resident set size (VmRSS) of process pid in KiB, 0 when
// unknown.
func RSSKB(pid int) int { return procKB(fmt.Sprintf("/proc/%d/status", pid), "VmRSS:") }

// PSSKB is the proportional set size of process pid in KiB (0 when
// unknown): its resident pages, each shared page divided by the number of
// processes sharing it. Summed over processes it is the memory they use
// together; summed RSS counts a binary's pages once per process running it
// (36 Boulder processes share one binary in a 3-site lab).
func PSSKB(pid int) int { return procKB(fmt.Sprintf("/proc/%d/smaps_rollup", pid), "Pss:") }

// procKB reads one "Key:  N kB" line of a /proc file.
func procKB(path, key string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, key); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			return n
		}
	}
	return 0
}

func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log)"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + strings.Join(lines, "\n  ")
}
