package hostrun

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-pki/cairn/site"
)

// shProc is a process of a bundle rooted in a temporary directory that
// runs script with sh; it is stopped when the test ends.
func shProc(t *testing.T, name, script string) Proc {
	t.Helper()
	p := Proc{Process: site.Process{Name: name, Program: "sh", Args: []string{"-c", script}}, Root: t.TempDir()}
	t.Cleanup(func() { p.Stop(time.Second) })
	return p
}

func recordLog(lines *[]string) func(string, ...any) {
	return func(format string, args ...any) { *lines = append(*lines, fmt.Sprintf(format, args...)) }
}

func TestProcStartRunningStop(t *testing.T) {
	p := shProc(t, "sleeper", "echo hello; exec sleep 60")
	if _, up := p.Running(); up {
		t.Fatal("running before start")
	}
	pid, err := p.start(LookProgram)
	if err != nil {
		t.Fatal(err)
	}
	got, up := p.Running()
	if !up || got != pid {
		t.Fatalf("Running() = %d, %v; want %d, true", got, up, pid)
	}
	// The PID file records the PID and its start time.
	b, err := os.ReadFile(filepath.Join(p.Root, "var", "pids", "sleeper.pid"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := startTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("%d %d\n", pid, st); string(b) != want {
		t.Errorf("PID file %q, want %q", b, want)
	}
	// Starting a running process starts nothing.
	if again, err := p.start(LookProgram); err != nil || again != pid {
		t.Errorf("second start = %d, %v; want %d", again, err, pid)
	}
	// Its output goes to its log file, after the line cairn writes.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		log, _ := os.ReadFile(p.LogFile())
		if strings.HasPrefix(string(log), "--- cairn: starting sleeper at ") && strings.HasSuffix(string(log), "\nhello\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("log file:\n%s", log)
		}
	}
	stopped, err := p.Stop(5 * time.Second)
	if err != nil || !stopped {
		t.Fatalf("Stop() = %v, %v", stopped, err)
	}
	if _, up := p.Running(); up {
		t.Error("running after Stop")
	}
	if _, err := os.Stat(filepath.Join(p.Root, "var", "pids", "sleeper.pid")); !os.IsNotExist(err) {
		t.Errorf("PID file left after Stop: %v", err)
	}
	if stopped, err := p.Stop(time.Second); err != nil || stopped {
		t.Errorf("second Stop() = %v, %v; want false, nil", stopped, err)
	}
}

func TestRecycledPIDIsNotOurs(t *testing.T) {
	p := shProc(t, "gone", "true")
	// This test's own PID, with a start time it never had.
	pidFile := filepath.Join(p.Root, "var", "pids", "gone.pid")
	os.MkdirAll(filepath.Dir(pidFile), 0o755)
	if err := os.WriteFile(pidFile, fmt.Appendf(nil, "%d 1\n", os.Getpid()), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, up := p.Running(); up {
		t.Fatal("a PID with another start time is taken for ours")
	}
	if stopped, err := p.Stop(time.Second); err != nil || stopped {
		t.Fatalf("Stop() = %v, %v; want false, nil (never signal a stranger)", stopped, err)
	}
}

func TestStartProcWaitsForReadiness(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	p := shProc(t, "ready", "exec sleep 60")
	p.Ready, p.Listen = "tcp:"+ln.Addr().String(), ln.Addr().String()
	var lines []string
	if err := StartProc(context.Background(), p, LookProgram, recordLog(&lines)); err != nil {
		t.Fatal(err)
	}
	if len(lines) != 1 || !strings.Contains(lines[0], "/ready") || !strings.Contains(lines[0], " ready in ") || !strings.HasSuffix(lines[0], " on "+ln.Addr().String()) {
		t.Errorf("log lines %q", lines)
	}
}

func TestStartProcReportsAnEarlyExit(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there
	p := shProc(t, "crasher", "echo cannot start; exit 3")
	p.Ready = "tcp:" + addr
	err = StartProc(context.Background(), p, LookProgram, func(string, ...any) {})
	if err == nil || !strings.Contains(err.Error(), "crasher exited before listening on "+addr) || !strings.Contains(err.Error(), "cannot start") {
		t.Fatalf("err = %v", err)
	}
}

func TestRestartExited(t *testing.T) {
	p := shProc(t, "flaky", "exec sleep 60")
	pid, err := p.start(LookProgram)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	RestartExited([]Proc{p}, LookProgram, recordLog(&lines))
	if len(lines) != 0 {
		t.Fatalf("restarted a running process: %q", lines)
	}
	syscall.Kill(pid, syscall.SIGKILL)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, up := p.Running(); !up {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("still running after SIGKILL")
		}
	}
	// Held by a restart in progress: left alone; a hold older than
	// holdFor (a restart that died) no longer counts.
	if err := p.hold(); err != nil {
		t.Fatal(err)
	}
	RestartExited([]Proc{p}, LookProgram, recordLog(&lines))
	if _, up := p.Running(); up || len(lines) != 0 {
		t.Fatalf("the supervisor started a process a restart holds: %q", lines)
	}
	old := time.Now().Add(-holdFor - time.Second)
	os.Chtimes(p.holdFile(), old, old)
	RestartExited([]Proc{p}, LookProgram, recordLog(&lines))
	newPID, up := p.Running()
	if !up || newPID == pid {
		// Seen once under a loaded make test: say why (its log, its state).
		log, _ := os.ReadFile(p.LogFile())
		stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", newPID))
		rec, _ := os.ReadFile(p.pidFile())
		t.Fatalf("not restarted: pid %d (old %d), up %v; pid file %q, /proc stat %q, supervisor lines %q, its log:\n%s", newPID, pid, up, rec, stat, lines, log)
	}
	want := fmt.Sprintf("supervisor: restarted %s/flaky (pid %d)", filepath.Base(p.Root), newPID)
	if !slices.Equal(lines, []string{want}) {
		t.Errorf("log lines %q, want %q", lines, want)
	}
}

func TestEnviron(t *testing.T) {
	t.Setenv("HOSTRUN_KEEP", "1")
	t.Setenv("HOSTRUN_DROP", "1")
	t.Setenv("HOSTRUN_SET", "old")
	env := environ([]string{"HOSTRUN_SET=new"}, []string{"HOSTRUN_DROP"})
	has := func(kv string) bool { return slices.Contains(env, kv) }
	if !has("HOSTRUN_KEEP=1") || has("HOSTRUN_DROP=1") || has("HOSTRUN_SET=old") || !has("HOSTRUN_SET=new") {
		t.Errorf("environ: %q", env)
	}
}

func TestBinResolver(t *testing.T) {
	dir := t.TempDir()
	boulder := filepath.Join(dir, "boulder")
	if err := os.WriteFile(boulder, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "notexec"), nil, 0o644)
	resolve := binResolver(dir)
	if got, err := resolve("boulder"); err != nil || got != boulder {
		t.Errorf("resolve(boulder) = %q, %v; want %q", got, err, boulder)
	}
	if got, err := resolve("sh"); err != nil || filepath.Base(got) != "sh" {
		t.Errorf("resolve(sh) = %q, %v; want the system's sh", got, err)
	}
	if _, err := resolve("notexec"); err == nil || err.Error() != "notexec not found: run `make deps` (scripts/deps.sh)" {
		t.Errorf("resolve(notexec): %v", err)
	}
}

func TestNoBundle(t *testing.T) {
	dir := t.TempDir()
	if err := RunBundle(context.Background(), dir, "", time.Second, nil); err == nil || !strings.Contains(err.Error(), "--bundle "+dir+": no rendered bundle there (bundle.json)") {
		t.Errorf("RunBundle: %v", err)
	}
	if err := StopBundle(dir); err == nil {
		t.Error("StopBundle without a bundle: no error")
	}
	if err := BundleStep(context.Background(), "db-init", dir, ""); err == nil {
		t.Error("BundleStep without a bundle: no error")
	}
}

func TestDBOutputLines(t *testing.T) {
	out := []byte("ERROR 1064 (42000): near 'CREATE USER x IDENTIFIED BY 'secret''\nmore\n")
	if got := firstLine(out); strings.Contains(got, "secret") || !strings.HasPrefix(got, "ERROR 1064") {
		t.Errorf("firstLine = %q", got)
	}
	if got := LastLines([]byte("a\nb\nc\n"), 2); got != "b | c" {
		t.Errorf("lastLines = %q", got)
	}
	logged := []byte("note\n2024 [ERROR] Can't open file\nadvice\n")
	if got := errorLines(logged); got != "2024 [ERROR] Can't open file" {
		t.Errorf("errorLines = %q", got)
	}
}

// A supervisor that starts the process again as soon as it is gone, and
// a stop (`cairn site restart`) at the same time: whatever runs in the
// end is the process the PID file names; none is left running without it
// (the provisioned test once found a WFE nothing could stop any more).
func TestStopAndASupervisorLeaveNoOrphan(t *testing.T) {
	dir := t.TempDir()
	started := filepath.Join(dir, "started")
	p := shProc(t, "raced", "echo $$ >> "+started+"; exec sleep 60")
	done := make(chan struct{})
	go func() {
		defer close(done)
		for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			p.start(LookProgram)
		}
	}()
	for range 20 {
		p.Stop(5 * time.Second)
		time.Sleep(50 * time.Millisecond)
	}
	<-done
	p.Stop(5 * time.Second)
	b, _ := os.ReadFile(started)
	for _, f := range strings.Fields(string(b)) {
		var pid int
		fmt.Sscan(f, &pid)
		if syscall.Kill(pid, 0) == nil {
			if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && !strings.Contains(string(st), ") Z") {
				syscall.Kill(pid, syscall.SIGKILL)
				t.Errorf("process %d runs with no PID file naming it (of %d started)", pid, len(strings.Fields(string(b))))
			}
		}
	}
}

// A running process knows whether it runs the configuration it would read
// now: a change to a file its arguments name (alone or after "="), or to
// its arguments or environment, is seen; an unchanged render is not.
func TestStartedWithOtherConfiguration(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "etc", "x.json")
	os.MkdirAll(filepath.Dir(conf), 0o755)
	os.WriteFile(conf, []byte(`{"eabRequired": false}`), 0o644)
	p := shProc(t, "front", "exec sleep 60")
	p.Args = append(p.Args, "sh", "--config="+conf)
	if p.StartedWithOther() {
		t.Fatal("not running, yet started with another configuration")
	}
	if _, err := p.start(LookProgram); err != nil {
		t.Fatal(err)
	}
	if p.StartedWithOther() {
		t.Error("just started: the same configuration")
	}
	os.WriteFile(conf, []byte(`{"eabRequired": false}`), 0o644) // rendered again, the same
	if p.StartedWithOther() {
		t.Error("an identical file counts as a change")
	}
	os.WriteFile(conf, []byte(`{"eabRequired": true}`), 0o644)
	if !p.StartedWithOther() {
		t.Error("a changed config file is not seen")
	}
	os.WriteFile(conf, []byte(`{"eabRequired": false}`), 0o644)
	q := p
	q.Env = []string{"GOGC=50"}
	if !q.StartedWithOther() {
		t.Error("a changed environment is not seen")
	}
	// A process started before fingerprints were recorded is left alone.
	os.Remove(p.fingerprintFile())
	os.WriteFile(conf, []byte(`{"eabRequired": true}`), 0o644)
	if p.StartedWithOther() {
		t.Error("no recorded fingerprint, yet a change")
	}
}
