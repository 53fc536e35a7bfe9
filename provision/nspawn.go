package provision

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cairn-pki/cairn/internal/fsutil"
)

// An nspawn host is a Debian 12 machine with systemd as PID 1, booted
// with systemd-nspawn from one cached root filesystem (an overlay per
// host), for the nspawn infrastructure: the faithful path, where every
// component is the systemd unit a real host gets. Its network is its own
// (host0 on the cluster's bridge, in the switch namespace); its processes
// are in a cgroup of their own; a launcher process (`cairn provision
// nspawn run`) keeps the container, booting it again when it reboots
// (systemd-nspawn exits with 133), and shuts it down on SIGTERM. The
// machine's own PID 1 need not be systemd (docs/provision.md).

// NspawnSuite is the Debian release of the hosts.
const NspawnSuite = "bookworm"

// NspawnPackages are installed once into the cached image: systemd and
// what Ansible needs (python3, python3-apt for its apt module), and every
// package the roles install, so no host downloads anything.
var NspawnPackages = []string{
	"systemd-sysv", "dbus", "iproute2", "procps", "python3", "python3-apt", "ca-certificates", "nftables",
	"mariadb-server", "mariadb-client", "mariadb-backup", "redis-server", "bind9", "bind9-utils", "bind9-dnsutils", "knot", "softhsm2",
}

// nspawnDisabled: the packages' own services and timers, disabled in the
// image (the roles stop and disable them too; a host boots faster without).
var nspawnDisabled = []string{"mariadb.service", "mariadb.socket", "redis-server.service", "named.service", "knot.service",
	"apt-daily.timer", "apt-daily-upgrade.timer", "dpkg-db-backup.timer", "e2scrub_all.timer", "e2scrub_reap.service", "fstrim.timer"}

// NspawnImage is the cached root filesystem the hosts' overlays share.
type NspawnImage struct {
	Cache  string // e.g. ~/.cache/cairn/nspawn
	Mirror string // the Debian mirror (empty: the one apt is configured with)
	Log    io.Writer
}

// key names the image by what makes it: suite, mirror and packages.
func (im NspawnImage) key() string {
	h := sha256.Sum256([]byte(NspawnSuite + "\n" + im.Mirror + "\n" + strings.Join(NspawnPackages, ",") + "\n" + strings.Join(nspawnDisabled, ",")))
	return NspawnSuite + "-" + hex.EncodeToString(h[:6])
}

// Root is the image's root directory once Ensure made it.
func (im NspawnImage) Root() string { return filepath.Join(im.Cache, im.key(), "root") }

// Ensure builds the image unless it is cached, and returns its root.
// Concurrent callers (Terraform makes hosts in parallel) wait for one build.
func (im *NspawnImage) Ensure(ctx context.Context) (string, error) {
	if im.Log == nil {
		im.Log = io.Discard
	}
	if im.Mirror == "" {
		m, err := AptMirror("/etc/apt")
		if err != nil {
			return "", err
		}
		im.Mirror = m
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		return "", fmt.Errorf("debootstrap not found on PATH: install it (scripts/deps.sh does: apt-get install debootstrap systemd-container)")
	}
	dir := filepath.Join(im.Cache, im.key())
	if err := os.MkdirAll(im.Cache, 0o755); err != nil {
		return "", err
	}
	unlock, err := fsutil.Lock(dir+".lock", 0o600)
	if err != nil {
		return "", err
	}
	defer unlock()
	if fsutil.Exists(filepath.Join(dir, "ready")) {
		im.pruneAndSay()
		return im.Root(), nil
	}
	start := time.Now()
	tmp := dir + ".tmp"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return "", err
	}
	root := filepath.Join(tmp, "root")
	fmt.Fprintf(im.Log, "nspawn image: debootstrap %s from %s into %s (once; cached)\n", NspawnSuite, im.Mirror, dir)
	steps := [][]string{
		{"debootstrap", "--variant=minbase", "--include=" + strings.Join(NspawnPackages, ","), NspawnSuite, root, im.Mirror},
		{"systemctl", "--root=" + root, "enable", "systemd-networkd.service"},
		append([]string{"systemctl", "--root=" + root, "disable"}, nspawnDisabled...),
		{"chroot", root, "apt-get", "clean"},
	}
	for _, s := range steps {
		cmd := exec.CommandContext(ctx, s[0], s[1:]...)
		if out, err := cmd.CombinedOutput(); err != nil {
			tail := strings.TrimSpace(string(out))
			if len(tail) > 2000 {
				tail = tail[len(tail)-2000:]
			}
			return "", fmt.Errorf("nspawn image: %s: %v: %s", strings.Join(s[:min(len(s), 3)], " "), err, tail)
		}
	}
	// Each host gets its own machine ID and name.
	for _, f := range []string{"etc/machine-id", "etc/hostname"} {
		if err := os.WriteFile(filepath.Join(root, f), nil, 0o444); err != nil {
			return "", err
		}
	}
	if err := os.WriteFile(filepath.Join(tmp, "ready"), []byte(strings.Join(NspawnPackages, "\n")+"\n"), 0o644); err != nil {
		return "", err
	}
	os.RemoveAll(dir)
	if err := os.Rename(tmp, dir); err != nil {
		return "", err
	}
	fmt.Fprintf(im.Log, "nspawn image ready in %.0fs\n", time.Since(start).Seconds())
	im.pruneAndSay()
	return im.Root(), nil
}

func (im NspawnImage) pruneAndSay() {
	for _, old := range im.prune("/proc") {
		fmt.Fprintf(im.Log, "nspawn image: removed %s (made for another cairn release or mirror; no host runs on it)\n", old)
	}
}

// prune removes the cache's other images (another suite, mirror or
// package list made them) that no running host uses: a host's launcher
// (cairn provision nspawn run, in a mount namespace of its own) names
// its image on its command line, read from proc (/proc). It returns what
// it removed.
func (im NspawnImage) prune(proc string) []string {
	var olds []string
	all, _ := filepath.Glob(filepath.Join(im.Cache, NspawnSuite+"-*"))
	for _, old := range all {
		fi, err := os.Stat(old)
		base := filepath.Base(old)
		if err == nil && fi.IsDir() && base != im.key() && !strings.HasSuffix(base, ".tmp") && fsutil.Exists(filepath.Join(old, "ready")) {
			olds = append(olds, old) // not the current image, a lock file or a build in progress
		}
	}
	if len(olds) == 0 {
		return nil // the usual case: nothing to read /proc for
	}
	var inUse []byte
	cmdlines, _ := filepath.Glob(filepath.Join(proc, "[0-9]*", "cmdline"))
	for _, c := range cmdlines {
		if b, err := os.ReadFile(c); err == nil {
			inUse = append(append(inUse, b...), 0)
		}
	}
	var removed []string
	for _, old := range olds {
		if bytes.Contains(inUse, []byte("\x00"+filepath.Join(old, "root")+"\x00")) {
			continue // a host runs on it
		}
		if os.RemoveAll(old) == nil {
			os.Remove(old + ".lock")
			removed = append(removed, old)
		}
	}
	return removed
}

// AptMirror is the first Debian mirror in apt's configuration under dir
// (sources.list, sources.list.d/*.list and *.sources) that serves the
// hosts' suite.
func AptMirror(dir string) (string, error) {
	files := []string{filepath.Join(dir, "sources.list")}
	for _, pat := range []string{"*.list", "*.sources"} {
		m, _ := filepath.Glob(filepath.Join(dir, "sources.list.d", pat))
		files = append(files, m...)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if m := mirrorIn(string(b)); m != "" {
			return m, nil
		}
	}
	return "", fmt.Errorf("no Debian mirror serving %s in %s: give one with --mirror (e.g. the one your apt uses)", NspawnSuite, dir)
}

// mirrorIn finds a mirror serving NspawnSuite in one apt sources file,
// one-line (deb URI SUITE …) or deb822 (URIs:, Suites:) format.
func mirrorIn(text string) string {
	var uris, suites []string
	flush := func() string {
		defer func() { uris, suites = nil, nil }()
		if slices.Contains(suites, NspawnSuite) && len(uris) > 0 {
			return uris[0]
		}
		return ""
	}
	for _, line := range strings.Split(text+"\n\n", "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "#") {
			continue
		}
		if line == "" {
			if m := flush(); m != "" {
				return m
			}
			continue
		}
		f := strings.Fields(line)
		switch {
		case f[0] == "deb" && len(f) >= 3:
			i := 1
			if strings.HasPrefix(f[1], "[") { // options
				for i < len(f) && !strings.HasSuffix(f[i], "]") {
					i++
				}
				i++
			}
			if i+1 < len(f) && f[i+1] == NspawnSuite {
				return f[i]
			}
		case strings.EqualFold(f[0], "URIs:"):
			uris = f[1:]
		case strings.EqualFold(f[0], "Suites:"):
			suites = f[1:]
		}
	}
	return ""
}

// NspawnHost is one systemd host.
type NspawnHost struct {
	Cluster string
	Name    string
	Address netip.Addr   // on host0, with Network's prefix length
	Network netip.Prefix // the cluster's hosts' network (on-link on the bridge)
	// Extra: further addresses on host0 the others reach (a site's CRL
	// front, the cluster's secondary DNS and PKI front).
	Extra []netip.Addr
	// Local: prefixes local to the host (a site's service network): its
	// processes may bind any address in them; the others reach only
	// Address and Extra (arp_ignore), like a security group.
	Local    []netip.Prefix
	StateDir string // overlay upper and work, launcher PID, console log
	Image    string // the cached root (NspawnImage.Root)
}

// Machine is the container's machine name (nspawn -M, the cgroup's name).
func (h NspawnHost) Machine() string { return h.Cluster + "-" + h.Name }

func (h NspawnHost) launcherPIDFile() string { return filepath.Join(h.StateDir, "launcher.pid") }

// networkFile is host0's systemd-networkd configuration.
func (h NspawnHost) networkFile() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# cairn nspawn host %s\n[Match]\nName=host0\n\n[Network]\nAddress=%s/%d\n", h.Name, h.Address, h.Network.Bits())
	for _, a := range h.Extra {
		fmt.Fprintf(&b, "Address=%s/32\n", a)
	}
	// No IPv6 autoconfiguration: the link is "configured" at once, so
	// network-online.target (which the units want) comes without a wait.
	b.WriteString("LinkLocalAddressing=no\nIPv6AcceptRA=no\n")
	for _, p := range h.Local {
		fmt.Fprintf(&b, "\n[Route]\nType=local\nDestination=%s\nTable=local\n", p.Masked())
	}
	return b.String()
}

// writeConfig writes the host's own files into its overlay's upper
// directory (before it boots): name, machine ID, network.
func (h NspawnHost) writeConfig() error {
	upper := filepath.Join(h.StateDir, "upper")
	id := fsutil.RandomHex(16)
	if b, err := os.ReadFile(filepath.Join(upper, "etc/machine-id")); err == nil && len(strings.TrimSpace(string(b))) == 32 {
		id = strings.TrimSpace(string(b)) // the same machine across reboots and re-applies
	}
	for path, text := range map[string]string{
		"etc/hostname":                         h.Name + "\n",
		"etc/machine-id":                       id + "\n",
		"etc/hosts":                            "127.0.0.1 localhost\n" + h.Address.String() + " " + h.Name + "\n",
		"etc/systemd/network/10-host0.network": h.networkFile(),
		// Answer ARP only for addresses on host0: the service network
		// stays the host's own.
		"etc/sysctl.d/90-cairn-host.conf": "net.ipv4.conf.all.arp_ignore = 1\n",
	} {
		if err := fsutil.WriteFileAtomic(filepath.Join(upper, path), []byte(text), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// LauncherPID is the PID of the host's launcher, if it runs.
func (h NspawnHost) LauncherPID() (int, bool) {
	return pidFileOf(h.launcherPIDFile(), "nspawn", h.StateDir)
}

// pidFileOf reads a PID file and checks the process is still the one
// (its command line holds every marker), not a reused PID.
func pidFileOf(file string, markers ...string) (int, bool) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	cmd, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	// A process in the middle of execve (the launcher, unshare becoming
	// cairn) shows an empty command line for a moment; a zombie always.
	for i := 0; err == nil && len(cmd) == 0 && i < 50 && !zombie(pid); i++ {
		time.Sleep(2 * time.Millisecond)
		cmd, err = os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	}
	if err != nil {
		return 0, false
	}
	for _, m := range markers {
		if !strings.Contains(string(cmd), m) {
			return 0, false
		}
	}
	return pid, true
}

// zombie: pid has exited and waits to be reaped (or is gone).
func zombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	// pid (comm) STATE …: comm may hold spaces and parentheses.
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || i+2 >= len(b) || b[i+2] == 'Z'
}

// LeaderPID is the PID (as this machine sees it) of the container's
// PID 1, systemd: what nsenter and Ansible enter. It changes on reboot.
func (h NspawnHost) LeaderPID() (int, bool) { return nspawnLeader(h.StateDir, h.Machine()) }

// nspawnLeader finds the container's PID 1 from its state directory.
func nspawnLeader(state, machine string) (int, bool) {
	nspawn, ok := pidFileOf(filepath.Join(state, "nspawn.pid"), "systemd-nspawn", machine)
	if !ok {
		return 0, false
	}
	for _, c := range childrenOf(nspawn) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) > 2 && f[0] == "NSpid:" && f[len(f)-1] == "1" {
				return c, true
			}
		}
	}
	return 0, false
}

// childrenOf lists the children of every thread of pid.
func childrenOf(pid int) []int {
	var out []int
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, t := range tasks {
		b, _ := os.ReadFile(t)
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(f); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}

// Exec runs argv inside the host (all its namespaces), as Ansible's
// nsenter connection does.
func (h NspawnHost) Exec(ctx context.Context, argv ...string) ([]byte, error) {
	cmd, err := h.Command(ctx, argv...)
	if err != nil {
		return nil, err
	}
	return cmd.CombinedOutput()
}

// Command is argv to run inside the host (all its namespaces).
func (h NspawnHost) Command(ctx context.Context, argv ...string) (*exec.Cmd, error) {
	pid, ok := h.LeaderPID()
	if !ok {
		return nil, fmt.Errorf("host %s is not up", h.Name)
	}
	args := append([]string{"--target", strconv.Itoa(pid), "--mount", "--uts", "--ipc", "--net", "--pid", "--"}, argv...)
	return exec.CommandContext(ctx, "nsenter", args...), nil
}

// Up boots the host (idempotent) on the switch's bridge and waits until
// systemd has finished booting it. self is the cairn binary (its
// `provision nspawn run` is the launcher).
func (h NspawnHost) Up(ctx context.Context, sw NSSwitch, self string) error {
	if _, err := exec.LookPath("systemd-nspawn"); err != nil {
		return fmt.Errorf("systemd-nspawn not found on PATH: install systemd-container (scripts/deps.sh does)")
	}
	if !h.Network.Contains(h.Address) {
		return fmt.Errorf("host %s: address %s is outside the hosts' network %s", h.Name, h.Address, h.Network)
	}
	if _, ok := h.LauncherPID(); !ok {
		if err := h.launch(self, sw); err != nil {
			return err
		}
	}
	return h.waitBooted(ctx)
}

func (h NspawnHost) launch(self string, sw NSSwitch) error {
	for _, d := range []string{"upper", "work", "root"} {
		if err := os.MkdirAll(filepath.Join(h.StateDir, d), 0o755); err != nil {
			return err
		}
	}
	if err := h.writeConfig(); err != nil {
		return err
	}
	// Its own mount namespace: the overlay goes when the launcher ends.
	return h.startLauncher([]string{"unshare", "--mount", "--propagation", "private", "--",
		self, "provision", "nspawn", "run", "--state", h.StateDir, "--machine", h.Machine(), "--image", h.Image, "--netns", sw.Netns()})
}

// startLauncher starts the launcher's command line, in a session of its
// own, its output appended to the console log, and records its PID.
func (h NspawnHost) startLauncher(argv []string) error {
	logf, err := os.OpenFile(filepath.Join(h.StateDir, "console.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("host %s: start its launcher: %w", h.Name, err)
	}
	go cmd.Wait() // reap it if it ends while we run
	if err := fsutil.WriteFileAtomic(h.launcherPIDFile(), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		return err
	}
	// The command line switching the host on again after a power cut
	// (PowerOff, PowerOn).
	b, err := json.Marshal(argv)
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(h.launcherArgvFile(), b, 0o644)
}

func (h NspawnHost) launcherArgvFile() string { return filepath.Join(h.StateDir, "launcher.json") }

// PowerOff cuts the host's power: every process in the container's
// cgroup (its systemd and units, systemd-nspawn, the launcher) is
// SIGKILLed at once; nothing is shut down, no unit stopped, and the
// overlay's upper directory (the host's disk) stays. The page cache is
// this machine's, so no write is lost as it would be on real hardware.
// PowerOn boots it again. Idempotent.
func (h NspawnHost) PowerOff() error {
	if !fsutil.Exists(h.launcherArgvFile()) {
		return fmt.Errorf("host %s has no launcher recorded in %s: cairn provision apply starts it", h.Name, h.StateDir)
	}
	killCgroupProcs(h.Machine())
	os.RemoveAll(filepath.Join("/run/systemd/nspawn/propagate", h.Machine()))
	return nil
}

// identityFiles are what a host keeps when its disk is replaced: its
// name and network (a replacement host takes the lost one's addresses).
var identityFiles = []string{"etc/hostname", "etc/hosts", "etc/systemd/network/10-host0.network", "etc/sysctl.d/90-cairn-host.conf"}

// LoseDisk replaces the host's disk with a blank one: the host switched
// off (PowerOff), its overlay's upper directory (everything it wrote:
// packages' state, cairn's bundle, units and state, the database) emptied
// but for its name and network, a new machine ID, and switched on again:
// it boots the pristine image, as a reinstalled host would.
func (h NspawnHost) LoseDisk(ctx context.Context) error {
	upper := filepath.Join(h.StateDir, "upper")
	keep := map[string][]byte{}
	for _, f := range identityFiles {
		if b, err := os.ReadFile(filepath.Join(upper, f)); err == nil {
			keep[f] = b
		}
	}
	if len(keep) != len(identityFiles) {
		return fmt.Errorf("host %s: its overlay lacks its name or network files (%d of %d): not replacing its disk", h.Name, len(keep), len(identityFiles))
	}
	if err := h.PowerOff(); err != nil {
		return err
	}
	for _, d := range []string{"upper", "work"} {
		if err := os.RemoveAll(filepath.Join(h.StateDir, d)); err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Join(h.StateDir, d), 0o755); err != nil {
			return err
		}
	}
	keep["etc/machine-id"] = []byte(fsutil.RandomHex(16) + "\n")
	for f, b := range keep {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(upper, f)), 0o755); err != nil {
			return err
		}
		if err := fsutil.WriteFileAtomic(filepath.Join(upper, f), b, 0o644); err != nil {
			return err
		}
	}
	return h.PowerOn(ctx)
}

// PowerOn switches a host PowerOff switched off on again (its launcher's
// recorded command line) and waits until it has booted; a host that runs
// is only waited for.
func (h NspawnHost) PowerOn(ctx context.Context) error {
	if _, ok := h.LauncherPID(); !ok {
		b, err := os.ReadFile(h.launcherArgvFile())
		var argv []string
		if err == nil {
			err = json.Unmarshal(b, &argv)
		}
		if err != nil || len(argv) == 0 {
			return fmt.Errorf("host %s: no launcher command line recorded (%v): cairn provision apply starts it", h.Name, err)
		}
		if err := h.startLauncher(argv); err != nil {
			return err
		}
	}
	return h.waitBooted(ctx)
}

// waitBooted waits until the container's systemd reports the boot
// finished (running; degraded names the failed units).
func (h NspawnHost) waitBooted(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	for ctx.Err() == nil {
		if _, ok := h.LauncherPID(); !ok {
			break
		}
		if _, ok := h.LeaderPID(); !ok {
			time.Sleep(20 * time.Millisecond) // nspawn starting
			continue
		}
		out, _ := h.Exec(ctx, "systemctl", "is-system-running", "--wait")
		switch state := strings.TrimSpace(string(out)); state {
		case "running":
			return nil
		case "degraded":
			failed, _ := h.Exec(ctx, "systemctl", "--failed", "--no-legend", "--plain")
			return fmt.Errorf("host %s booted degraded: %s", h.Name, strings.TrimSpace(string(failed)))
		default:
			// The bus is not up yet ("Failed to connect"), or the
			// container rebooted under us: ask again.
			time.Sleep(50 * time.Millisecond)
		}
	}
	b, _ := os.ReadFile(filepath.Join(h.StateDir, "console.log"))
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return fmt.Errorf("host %s did not boot (launcher gone or 3 minutes passed): %s", h.Name, strings.TrimSpace(string(b)))
}

// Down shuts the host down (systemd stops every unit), waits for its
// launcher to end, removes its cgroups and state. Idempotent.
func (h NspawnHost) Down(ctx context.Context) error {
	if pid, ok := h.LauncherPID(); ok {
		syscall.Kill(pid, syscall.SIGTERM)
		if !waitExit(pid, time.Minute) {
			syscall.Kill(pid, syscall.SIGKILL)
			waitExit(pid, 10*time.Second)
		}
	}
	if err := killCgroup(h.Machine()); err != nil {
		return err
	}
	os.RemoveAll(filepath.Join("/run/systemd/nspawn/propagate", h.Machine()))
	// The overlay lived in the launcher's mount namespace; a launcher
	// killed before its namespace was made cannot have left one here.
	if err := os.RemoveAll(h.StateDir); err != nil {
		return fmt.Errorf("host %s: remove its state: %w", h.Name, err)
	}
	return nil
}

// waitExit waits until pid has exited (pidfd: no polling), at most d.
func waitExit(pid int, d time.Duration) bool {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return true // gone already
	}
	defer unix.Close(fd)
	deadline := time.Now().Add(d)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, int(left.Milliseconds())+1)
		if err == nil && n > 0 {
			return true
		}
		if err != nil && !errors.Is(err, unix.EINTR) {
			return false
		}
	}
}

// cgroupRoots are the hierarchies a container's cgroup is made in: on a
// hybrid layout the named systemd v1 hierarchy and the unified one, on a
// unified layout the one.
func cgroupRoots() []string {
	if fsutil.Exists("/sys/fs/cgroup/cgroup.controllers") {
		return []string{"/sys/fs/cgroup"}
	}
	var roots []string
	for _, r := range []string{"/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified"} {
		if fsutil.Exists(r) {
			roots = append(roots, r)
		}
	}
	return roots
}

// cgroupName is the cgroup (in every hierarchy) of a container.
func cgroupName(machine string) string { return "cairn-nspawn-" + machine }

// joinCgroup moves this process into the container's own cgroup in every
// hierarchy: nspawn (--keep-unit) makes its payload and supervisor
// cgroups under it, apart from any other container's.
func joinCgroup(machine string) error {
	for _, r := range cgroupRoots() {
		dir := filepath.Join(r, cgroupName(machine))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("cgroup %s: %w", dir, err)
		}
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
			return fmt.Errorf("join cgroup %s: %w", dir, err)
		}
	}
	return nil
}

// CgroupProcs lists the processes left in a container's cgroups.
func CgroupProcs(machine string) []int {
	var pids []int
	for _, r := range cgroupRoots() {
		filepath.WalkDir(filepath.Join(r, cgroupName(machine)), func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && d.Name() == "cgroup.procs" {
				b, _ := os.ReadFile(p)
				for _, f := range strings.Fields(string(b)) {
					if pid, err := strconv.Atoi(f); err == nil && !slices.Contains(pids, pid) {
						pids = append(pids, pid)
					}
				}
			}
			return nil
		})
	}
	return pids
}

// killCgroupProcs SIGKILLs every process in a container's cgroups at
// once (a power cut), then waits (at most 10 s each) until they are gone.
func killCgroupProcs(machine string) {
	procs := CgroupProcs(machine)
	for _, pid := range procs {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	for _, pid := range procs {
		waitExit(pid, 10*time.Second)
	}
}

// killCgroup ends whatever is left in a container's cgroups and removes
// them, deepest first.
func killCgroup(machine string) error {
	killCgroupProcs(machine)
	for _, r := range cgroupRoots() {
		top := filepath.Join(r, cgroupName(machine))
		var dirs []string
		filepath.WalkDir(top, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		slices.Reverse(dirs) // children after their parent in a walk
		for _, d := range dirs {
			if err := syscall.Rmdir(d); err != nil && !errors.Is(err, syscall.ENOENT) {
				return fmt.Errorf("remove cgroup %s: %w", d, err)
			}
		}
	}
	return nil
}

// NspawnRun is the launcher of a host (`cairn provision nspawn run`, in a
// mount namespace of its own): it joins the container's cgroups, mounts
// the overlay root, and runs systemd-nspawn in the switch namespace,
// again each time the container reboots (exit status 133), until
// SIGTERM, which it passes on (nspawn then shuts the container down).
func NspawnRun(state, machine, image, netns string) error {
	if err := joinCgroup(machine); err != nil {
		return err
	}
	root := filepath.Join(state, "root")
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", image, filepath.Join(state, "upper"), filepath.Join(state, "work"))
	if err := syscall.Mount("overlay", root, "overlay", 0, opts); err != nil {
		return fmt.Errorf("overlay root of %s: %w", machine, err)
	}
	defer syscall.Unmount(root, syscall.MNT_DETACH)
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	stopping := false
	for boot := 1; ; boot++ {
		cmd := exec.Command("nsenter", "--net=/run/netns/"+netns, "--",
			"systemd-nspawn", "--boot", "--directory", root, "--machine", machine, "--register=no", "--keep-unit",
			"--network-bridge=br0", "--console=passive", "--link-journal=no")
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Start(); err != nil {
			return err
		}
		// nsenter (without --fork) becomes systemd-nspawn: same PID.
		if err := fsutil.WriteFileAtomic(filepath.Join(state, "nspawn.pid"), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
			cmd.Process.Kill()
			return err
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		var err error
	wait:
		for {
			select {
			case s := <-sigs:
				stopping = true
				cmd.Process.Signal(s)
			case err = <-done:
				break wait
			}
		}
		code := cmd.ProcessState.ExitCode()
		fmt.Printf("cairn: boot %d of %s ended: %v (status %d)\n", boot, machine, err, code)
		if stopping || code != 133 {
			if stopping || code == 0 {
				return nil
			}
			return fmt.Errorf("systemd-nspawn exited with status %d", code)
		}
	}
}
