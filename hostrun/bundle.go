package hostrun

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/cairn-pki/cairn/internal/fsutil"
	"github.com/cairn-pki/cairn/site"
)

// On a host without systemd (the namespace hosts of the local
// infrastructure), one rendered bundle — a site's or the cluster's — runs
// under cairn's own supervisor: `cairn site run --bundle DIR`.

// bundleProcs reads the bundle in dir and returns its processes in start
// order, the addresses BIND needs on an interface, and the site bundle
// (nil for the cluster's).
func bundleProcs(dir string) ([]Proc, []string, *site.Bundle, error) {
	if b, err := site.ReadBundle(dir); err == nil && b.Site != "" {
		var ps []Proc
		for _, p := range b.Processes {
			ps = append(ps, NewProc(p, b.Root))
		}
		return ps, b.BindAddresses, b, nil
	}
	cb, err := site.ReadClusterBundle(dir)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("--bundle %s: no rendered bundle there (bundle.json): %w", dir, err)
	}
	var ps []Proc
	for _, p := range cb.Processes {
		ps = append(ps, Proc{Process: p, Root: cb.Root})
	}
	if cb.Controller != nil {
		ps = append(ps, Proc{Process: *cb.Controller, Root: cb.Root})
	}
	return ps, cb.BindAddresses, nil, nil
}

// binResolver finds programs in binDir (Boulder, ct-test-srv,
// s3-test-srv, cairn as installed by Ansible), then on the system.
func binResolver(binDir string) func(string) (string, error) {
	return func(name string) (string, error) {
		if p := filepath.Join(binDir, name); binDir != "" && isExecutable(p) {
			return p, nil
		}
		return LookProgram(name)
	}
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// RunBundle starts the bundle in dir in dependency order (a site's
// database loaded once MariaDB answers, its CRLs published), then
// supervises it: a process that has exited is started again every
// interval, until ctx ends; then every process stops, newest first.
func RunBundle(ctx context.Context, dir, binDir string, interval time.Duration, log io.Writer) error {
	logf := func(format string, args ...any) { fmt.Fprintf(log, format+"\n", args...) }
	procs, addrs, b, err := bundleProcs(dir)
	if err != nil {
		return err
	}
	for _, ip := range addrs {
		if _, err := AddLoopback(ip); err != nil {
			return err
		}
	}
	resolve := binResolver(binDir)
	defer func() {
		for i := len(procs) - 1; i >= 0; i-- {
			if stopped, _ := procs[i].Stop(10 * time.Second); stopped {
				logf("  stopped %s", procs[i].Name)
			}
		}
	}()
	if b != nil {
		err = StartSite(ctx, b, resolve, logf)
	} else {
		for _, p := range procs {
			if err = StartProc(ctx, p, resolve, logf); err != nil {
				break
			}
		}
	}
	if err != nil {
		return err
	}
	logf("bundle %s: %d processes %s", dir, len(procs), runningMark)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
		RestartExited(procs, resolve, logf)
	}
}

// siteBundle reads a site bundle (not the cluster's).
func siteBundle(dir string) (*site.Bundle, error) {
	b, err := site.ReadBundle(dir)
	if err != nil {
		return nil, err
	}
	if b.Site == "" {
		return nil, fmt.Errorf("--bundle %s is not a site bundle", dir)
	}
	return b, nil
}

// SystemdDBUser is the user MariaDB's systemd unit runs it as
// (ansible/roles/cairn_common/templates/component.service.j2).
const SystemdDBUser = "mysql"

// BundleStep is one of the steps a service manager runs around a site's
// processes (one systemd unit per component): "db-init" before MariaDB
// starts (its data directory), "db-load" once it runs (schema and users),
// "publish-crls" once the CRL updater runs.
func BundleStep(ctx context.Context, step, dir, binDir string) error {
	b, err := siteBundle(dir)
	if err != nil {
		return err
	}
	switch step {
	case "db-init":
		// The systemd units run MariaDB as mysql (cairn_common's template).
		return InitDBDir(ctx, b.Database, SystemdDBUser)
	case "db-load":
		// systemd started MariaDB (no PID file of ours): wait for its port.
		for _, p := range b.Processes {
			if p.Program == "mariadbd" {
				if err := waitListening(ctx, p.Name, p.Ready, NewProc(p, b.Root).LogFile(), 60*time.Second, nil); err != nil {
					return err
				}
			}
		}
		return LoadDB(ctx, b.Database)
	case "publish-crls":
		// systemd started the processes before crl-updater, not
		// necessarily listening yet: a one-shot run that failed half-way
		// would keep the shards it leased from every updater for the
		// lease's time. Those with a TCP address (the others are out of
		// the unit's sandbox) are waited for, as the supervisor does.
		for _, p := range b.Processes {
			if p.Name == "crl-updater" {
				break
			}
			if strings.HasPrefix(p.Ready, "tcp:") {
				if err := waitListening(ctx, p.Name, p.Ready, NewProc(p, b.Root).LogFile(), 60*time.Second, nil); err != nil {
					return err
				}
			}
		}
		return PublishCRLsAtStart(ctx, b, binResolver(binDir))
	}
	return fmt.Errorf("unknown step %q: db-init, db-load or publish-crls", step)
}

// Supervisor makes sure `cairn site run` supervises the bundle in dir on
// this host (started detached, its PID file in the bundle), restarting it
// first when restart is set, and waits until every process of the bundle
// is ready. It returns "started", "restarted" or "running".
func Supervisor(ctx context.Context, dir, binDir string, interval time.Duration, restart bool, self string) (string, error) {
	sup, _, err := supervisorOf(dir)
	if err != nil {
		return "", err
	}
	sup.Program, sup.Args = "cairn", []string{"site", "run", "--bundle", dir, "--bin", binDir, "--interval", interval.String()}
	state := "running"
	if _, up := sup.Running(); up && !restart {
		return state, nil
	}
	if _, up := sup.Running(); up {
		// It stops every process of the bundle before it exits.
		if _, err := sup.Stop(2 * time.Minute); err != nil {
			return "", err
		}
		state = "restarted"
	} else {
		state = "started"
	}
	var offset int64
	if fi, err := os.Stat(sup.LogFile()); err == nil {
		offset = fi.Size()
	}
	if _, err := sup.start(func(string) (string, error) { return self, nil }); err != nil {
		return "", err
	}
	// Ready once it says so; it exits when a process cannot start.
	for deadline := time.Now().Add(5 * time.Minute); ; {
		if b, err := os.ReadFile(sup.LogFile()); err == nil && int64(len(b)) > offset && strings.Contains(string(b[offset:]), runningMark) {
			return state, nil
		}
		if _, up := sup.Running(); !up {
			return "", fmt.Errorf("cairn site run exited; last log lines (%s):\n%s", sup.LogFile(), tailFile(sup.LogFile(), 12))
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("the bundle is not running after 5m; last log lines (%s):\n%s", sup.LogFile(), tailFile(sup.LogFile(), 12))
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// supervisorOf is the supervisor of the bundle in dir (its PID file and
// log live with the bundle's), and the bundle's processes.
func supervisorOf(dir string) (Proc, []Proc, error) {
	procs, _, _, err := bundleProcs(dir)
	if err != nil {
		return Proc{}, nil, err
	}
	root := dir
	if len(procs) > 0 {
		root = procs[0].Root
	}
	return Proc{Process: site.Process{Name: "supervisor"}, Root: root}, procs, nil
}

// runningMark is what RunBundle logs once every process is up.
const runningMark = "running; supervising"

// StopBundle stops the supervisor of the bundle in dir (it stops every
// process of the bundle as it exits) and any process it left running.
func StopBundle(dir string) error {
	sup, procs, err := supervisorOf(dir)
	if err != nil {
		return err
	}
	if _, err := sup.Stop(2 * time.Minute); err != nil {
		return err
	}
	for i := len(procs) - 1; i >= 0; i-- {
		if _, err := procs[i].Stop(10 * time.Second); err != nil {
			return err
		}
	}
	return nil
}

// RestartBundleComponents restarts the named processes of the site bundle
// in dir with the binaries in binDir (what `cairn upgrade apply` asks of a
// provisioned host after installing a re-rendered bundle).
func RestartBundleComponents(ctx context.Context, dir, binDir string, names []string, log io.Writer) error {
	b, err := siteBundle(dir)
	if err != nil {
		return err
	}
	return RestartComponents(ctx, b, names, binResolver(binDir), func(format string, args ...any) { fmt.Fprintf(log, format+"\n", args...) })
}

// BundleSQL runs statements as the site's local database administrator
// (over the socket, kept out of the binary log) and returns the rows
// tab-separated without headers.
func BundleSQL(ctx context.Context, dir, statements string) ([]byte, error) {
	b, err := siteBundle(dir)
	if err != nil {
		return nil, err
	}
	return AdminScript(ctx, b.Database, statements)
}

// CloseConnections has the site's ACME front (in the bundle in dir) end
// every keep-alive connection after its next answer: SIGUSR1 to the
// process of its PID file (nothing when that process is gone: no
// connection to close), or to its systemd unit when cairn did not start it.
func CloseConnections(ctx context.Context, dir string) error {
	b, err := siteBundle(dir)
	if err != nil {
		return err
	}
	for _, p := range b.Processes {
		if p.Name != site.ACMEFront {
			continue
		}
		proc := NewProc(p, b.Root)
		if pid, ok := proc.Running(); ok {
			return syscall.Kill(pid, syscall.SIGUSR1)
		}
		if fsutil.Exists(proc.pidFile()) {
			return nil
		}
		out, err := exec.CommandContext(ctx, "systemctl", "kill", "--signal=SIGUSR1", "cairn-"+p.Name+".service").CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s runs neither under cairn's supervisor nor as a systemd unit: %v %s", p.Name, err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	return nil // a bundle without a front (older render)
}
