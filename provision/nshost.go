package provision

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cairn-pki/cairn/internal/fsutil"
)

// A namespace host is a "machine" on this machine, for the local
// infrastructure: its own network namespace with one interface (eth0) on
// the cluster's bridge, and an anchor process in its own mount, UTS, IPC
// and PID namespaces whose root is an overlay of this machine's root
// (writes stay in the host's own upper directory). Ansible reaches it
// with cairn_nsenter (community.docker.nsenter with pipelining) on the
// anchor's PID; stopping the anchor ends every process of the host and
// its mounts.
//
// The bridge lives in a "switch" namespace, which also holds the
// operator's vantage address (Gateway): cairn's own checks run there, so
// nothing of the hosts' traffic touches the machine's own namespace.

// NSHost is one namespace host.
type NSHost struct {
	Cluster string     // short prefix of every name (netns, state)
	Name    string     // host name
	Address netip.Addr // on eth0: what the others reach
	// Extra: further addresses on eth0 the others reach (a site's CRL
	// front, the cluster's secondary DNS and PKI front).
	Extra []netip.Addr
	// Local: prefixes local to the host (a site's service network): its
	// processes may bind any address in them; from the bridge only Address
	// is reachable.
	Local []netip.Prefix
	// OnLink: further networks on the bridge, reached through eth0 from
	// Address: on a site, its clients' networks (validation.
	// allowedNetworks); on a client host of its own range, the hosts'
	// 127/8.
	OnLink   []netip.Prefix
	StateDir string // upper and work directories, anchor PID file
}

// NSSwitch is the cluster's bridge and the operator's vantage.
type NSSwitch struct {
	Cluster string
	Gateway netip.Addr // the operator's address on the bridge
	Bits    int        // the hosts' network's prefix length on the bridge (0: 8, loopback hosts)
}

func nsName(cluster, host string) string { return "cairn-" + cluster + "-" + host }

// Netns is the switch's network namespace name (ip netns exec NAME …).
func (s NSSwitch) Netns() string { return nsName(s.Cluster, "sw") }

// Netns is the host's network namespace name.
func (h NSHost) Netns() string { return nsName(h.Cluster, h.Name) }

func (h NSHost) pidFile() string { return filepath.Join(h.StateDir, "anchor.pid") }

// ipCmd runs ip (or another tool) and returns a one-line error with its output.
func ipCmd(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func netnsExists(name string) bool {
	_, err := os.Stat("/run/netns/" + name)
	return err == nil
}

// trimLoopback keeps a namespace's lo from claiming all of 127/8, so
// 127.x addresses on other interfaces are reachable (with route_localnet).
func trimLoopback(ctx context.Context, ns string) error {
	for _, a := range [][]string{
		{"ip", "-n", ns, "link", "set", "lo", "up"},
		{"ip", "-n", ns, "addr", "replace", "127.0.0.1/32", "dev", "lo"},
	} {
		if err := ipCmd(ctx, a...); err != nil {
			return err
		}
	}
	// The /8 that lo had at creation; gone already on a second run.
	exec.CommandContext(ctx, "ip", "-n", ns, "addr", "del", "127.0.0.1/8", "dev", "lo").Run()
	return nil
}

func routeLocalnet(ctx context.Context, ns string, ifaces ...string) error {
	args := []string{"ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.conf.all.route_localnet=1"}
	for _, i := range ifaces {
		args = append(args, "net.ipv4.conf."+i+".route_localnet=1", "net.ipv4.conf."+i+".arp_ignore=1")
	}
	return ipCmd(ctx, args...)
}

// ifName is an interface name (at most 15 bytes).
func ifName(prefix, host string) string {
	n := prefix + host
	if len(n) > 15 {
		n = n[:15]
	}
	return n
}

// lock serialises the changes to one cluster's namespaces (Terraform
// creates hosts in parallel).
func lock(cluster string) (func(), error) {
	return fsutil.Lock("/run/cairn-provision-"+cluster+".lock", 0o600)
}

// Up creates the switch namespace with its bridge (idempotent).
func (s NSSwitch) Up(ctx context.Context) error {
	unlock, err := lock(s.Cluster)
	if err != nil {
		return err
	}
	defer unlock()
	ns := s.Netns()
	if !netnsExists(ns) {
		if err := ipCmd(ctx, "ip", "netns", "add", ns); err != nil {
			return err
		}
	}
	if err := trimLoopback(ctx, ns); err != nil {
		return err
	}
	if exec.CommandContext(ctx, "ip", "-n", ns, "link", "show", "br0").Run() != nil {
		if err := ipCmd(ctx, "ip", "-n", ns, "link", "add", "br0", "type", "bridge"); err != nil {
			return err
		}
	}
	// A bridge whose address was never set takes its lowest port's, and
	// changes it as hosts come and go (a host's reboot or power cut
	// removes its veth): the hosts' ARP entries for the operator's
	// address would go stale and its connections time out for a while.
	// A fixed, locally administered address of the cluster's own.
	if err := ipCmd(ctx, "ip", "-n", ns, "link", "set", "br0", "address", s.bridgeMAC()); err != nil {
		return err
	}
	if err := routeLocalnet(ctx, ns, "br0"); err != nil {
		return err
	}
	bits := s.Bits
	if bits == 0 {
		bits = 8
	}
	if err := ipCmd(ctx, "ip", "-n", ns, "addr", "replace", s.Gateway.String()+"/"+strconv.Itoa(bits), "dev", "br0"); err != nil {
		return err
	}
	return ipCmd(ctx, "ip", "-n", ns, "link", "set", "br0", "up")
}

// bridgeMAC is the bridge's address: locally administered, unicast,
// from the cluster's name.
func (s NSSwitch) bridgeMAC() string {
	h := sha256.Sum256([]byte("cairn-switch/" + s.Cluster))
	return fmt.Sprintf("02:%02x:%02x:%02x:%02x:%02x", h[0], h[1], h[2], h[3], h[4])
}

// Down removes the switch namespace (and with it the bridge and every
// host's switch-side interface).
func (s NSSwitch) Down(ctx context.Context) error {
	if netnsExists(s.Netns()) {
		if err := ipCmd(ctx, "ip", "netns", "del", s.Netns()); err != nil {
			return err
		}
	}
	os.Remove("/run/cairn-provision-" + s.Cluster + ".lock")
	return nil
}

// AnchorPID is the PID of the host's anchor process, if it runs.
func (h NSHost) AnchorPID() (int, bool) {
	// The PID must still be our anchor (not a reused PID).
	return pidFileOf(h.pidFile(), "host-init", h.StateDir)
}

// Up creates the host (idempotent): network namespace and eth0 on the
// switch's bridge, its addresses, and the anchor process. self is the
// cairn binary (it runs `cairn provision host-init` as the anchor).
func (h NSHost) Up(ctx context.Context, sw NSSwitch, self string) error {
	unlock, err := lock(h.Cluster)
	if err != nil {
		return err
	}
	defer unlock()
	ns := h.Netns()
	if !netnsExists(ns) {
		if err := ipCmd(ctx, "ip", "netns", "add", ns); err != nil {
			return err
		}
	}
	if err := trimLoopback(ctx, ns); err != nil {
		return err
	}
	if exec.CommandContext(ctx, "ip", "-n", ns, "link", "show", "eth0").Run() != nil {
		// Both ends are made in the switch namespace (short-lived names
		// there), then one moves into the host and becomes eth0.
		peer, tmp := ifName("h-", h.Name), ifName("t-", h.Name)
		exec.CommandContext(ctx, "ip", "-n", sw.Netns(), "link", "del", peer).Run()
		for _, a := range [][]string{
			{"ip", "-n", sw.Netns(), "link", "add", peer, "type", "veth", "peer", "name", tmp},
			{"ip", "-n", sw.Netns(), "link", "set", tmp, "netns", ns},
			{"ip", "-n", ns, "link", "set", tmp, "name", "eth0"},
			{"ip", "-n", sw.Netns(), "link", "set", peer, "master", "br0"},
			{"ip", "-n", sw.Netns(), "link", "set", peer, "up"},
		} {
			if err := ipCmd(ctx, a...); err != nil {
				return err
			}
		}
	}
	if err := routeLocalnet(ctx, ns, "eth0"); err != nil {
		return err
	}
	if err := ipCmd(ctx, "ip", "-n", ns, "addr", "replace", h.Address.String()+"/8", "dev", "eth0"); err != nil {
		return err
	}
	for _, a := range h.Extra {
		if err := ipCmd(ctx, "ip", "-n", ns, "addr", "replace", a.String()+"/32", "dev", "eth0"); err != nil {
			return err
		}
	}
	if err := ipCmd(ctx, "ip", "-n", ns, "link", "set", "eth0", "up"); err != nil {
		return err
	}
	for _, p := range h.Local {
		if err := ipCmd(ctx, "ip", "-n", ns, "route", "replace", "local", p.String(), "dev", "lo", "table", "local"); err != nil {
			return err
		}
	}
	// The source is Address: a 127.x address has host scope, which the
	// kernel never picks for a route off the host by itself.
	for _, p := range h.OnLink {
		if err := ipCmd(ctx, "ip", "-n", ns, "route", "replace", p.Masked().String(), "dev", "eth0", "src", h.Address.String()); err != nil {
			return err
		}
	}
	if _, ok := h.AnchorPID(); ok {
		return nil
	}
	return h.startAnchor(ctx, self)
}

func (h NSHost) startAnchor(ctx context.Context, self string) error {
	for _, d := range []string{"upper", "work", "root"} {
		if err := os.MkdirAll(filepath.Join(h.StateDir, d), 0o755); err != nil {
			return err
		}
	}
	logf, err := os.OpenFile(filepath.Join(h.StateDir, "anchor.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	os.Remove(h.pidFile()) // host-init writes it once the host is ready
	cmd := exec.Command("nsenter", "--net=/run/netns/"+h.Netns(), "--",
		"unshare", "--mount", "--uts", "--ipc", "--pid", "--fork", "--kill-child", "--",
		self, "provision", "host-init", "--state", h.StateDir, "--hostname", h.Name)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("host %s: start anchor: %w", h.Name, err)
	}
	go cmd.Wait() // reap it if it ends while we run
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, ok := h.AnchorPID(); ok {
			return nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	cmd.Process.Kill()
	b, _ := os.ReadFile(filepath.Join(h.StateDir, "anchor.log"))
	return fmt.Errorf("host %s: anchor not ready after 15s: %s", h.Name, strings.TrimSpace(string(b)))
}

// Down stops the anchor (every process of the host ends with it, and its
// mounts with its mount namespace), deletes the network namespace and the
// state directory. Idempotent.
func (h NSHost) Down(ctx context.Context) error {
	if pid, ok := h.AnchorPID(); ok {
		syscall.Kill(pid, syscall.SIGTERM)
		for i := 0; i < 100; i++ {
			if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err != nil {
				break
			}
			if i == 50 {
				syscall.Kill(pid, syscall.SIGKILL)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if netnsExists(h.Netns()) {
		if err := ipCmd(ctx, "ip", "netns", "del", h.Netns()); err != nil {
			return err
		}
	}
	return os.RemoveAll(h.StateDir)
}

// Exec runs argv inside the host (all its namespaces), as Ansible's
// nsenter connection does.
func (h NSHost) Exec(ctx context.Context, argv ...string) ([]byte, error) {
	cmd, err := h.Command(ctx, "", argv...)
	if err != nil {
		return nil, err
	}
	return cmd.CombinedOutput()
}

// Command is argv to run inside the host (all its namespaces), in
// directory wd of the host ("": nsenter's default).
func (h NSHost) Command(ctx context.Context, wd string, argv ...string) (*exec.Cmd, error) {
	pid, ok := h.AnchorPID()
	if !ok {
		return nil, fmt.Errorf("host %s is not up", h.Name)
	}
	args := []string{"--target", strconv.Itoa(pid), "--mount", "--uts", "--ipc", "--net", "--pid"}
	if wd != "" {
		args = append(args, "--wd="+wd)
	}
	return exec.CommandContext(ctx, "nsenter", append(append(args, "--"), argv...)...), nil
}
