package lab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/internal/fsutil"
	"github.com/cairn-pki/cairn/internal/rfc2136"
	"github.com/cairn-pki/cairn/site"
)

// Client hosts (cairn lab exec --host NAME): each is a network namespace
// of its own with one interface, eth0, on the lab's bridge in this
// machine's namespace. The bridge has the client network's first address;
// each host the next free one, and NAME.<acme.zone> in the cluster DNS
// (written with the lab's hosts key, which may write nothing else).
//
// The lab's DNS servers and sites listen on 127.x addresses here, which a
// namespace cannot reach by default: its own lo claims all of 127/8, and
// the kernel drops 127/8 on the wire as martian. So a host's lo keeps
// only 127.0.0.1, the rest of 127/8 is routed to the bridge, and
// route_localnet is on at both ends (the host's eth0, the bridge). A
// client host then resolves and connects exactly as a process here does
// (same resolver address, same ACME name answer, the name's moves seen at
// once); and this machine's VAs reach the host's ports at its address.

// ClientHost is one client host of the lab.
type ClientHost struct {
	Name    string `json:"name"`
	Netns   string `json:"netns"`
	Veth    string `json:"veth"` // this machine's end of eth0
	Address string `json:"address"`
	// Record is the host's name in the cluster zone, once written.
	Record string `json:"record,omitempty"`
}

var hostLabelRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// netID names the lab's network objects after its client network, which
// is unique to a lab on one machine (hex of the network address).
func (l *Lab) netID() string {
	a := cluster.LabClientNetwork(l.Spec).Addr().As4()
	return fmt.Sprintf("%02x%02x%02x%02x", a[0], a[1], a[2], a[3])
}

// ClientBridge is the lab's bridge of client hosts (interface names have
// at most 15 bytes).
func (l *Lab) ClientBridge() string { return "cairnc" + l.netID() }

// hostNetns is the network namespace of host name.
func (l *Lab) hostNetns(name string) string {
	return "cairn-" + l.Spec.Name + "-" + l.netID() + "-host-" + name
}

// gateway is the bridge's address: the client network's first.
func (l *Lab) gateway() netip.Addr { return cluster.LabClientNetwork(l.Spec).Addr().Next() }

func (l *Lab) checkHostName(name string) error {
	if !hostLabelRE.MatchString(name) {
		return fmt.Errorf("--host %.70q: not a DNS label (lower-case letters, digits and '-', at most 63), e.g. web1", name)
	}
	fqdn := name + "." + l.Spec.ACME.Zone
	if slices.Contains(site.ClusterNames(l.Spec), fqdn) {
		return fmt.Errorf("--host %s: %s is one of the cluster's own names; pick another, e.g. web1", name, fqdn)
	}
	return nil
}

// Host returns client host name, creating it on first use: its network
// namespace, its address, its name in the cluster DNS. It stays until
// Down. Needs root and the lab's cluster DNS up.
func (l *Lab) Host(ctx context.Context, name string) (ClientHost, error) {
	if err := l.checkHostName(name); err != nil {
		return ClientHost{}, err
	}
	if os.Geteuid() != 0 {
		return ClientHost{}, errors.New("lab exec --host: needs root (it makes a network namespace); run it with sudo")
	}
	unlock, err := l.lockState()
	if err != nil {
		return ClientHost{}, err
	}
	defer unlock()
	st := l.readState()
	i := slices.IndexFunc(st.Hosts, func(h ClientHost) bool { return h.Name == name })
	if i >= 0 && st.Hosts[i].Record != "" && netnsExists(st.Hosts[i].Netns) {
		return st.Hosts[i], nil
	}
	if i < 0 {
		addr, err := l.freeAddress(st)
		if err != nil {
			return ClientHost{}, err
		}
		a := addr.As4()
		st.Hosts = append(st.Hosts, ClientHost{Name: name, Netns: l.hostNetns(name), Address: addr.String(),
			Veth: fmt.Sprintf("cairnv%02x%02x%02x%02x", a[0], a[1], a[2], a[3])})
		i = len(st.Hosts) - 1
		// Recorded before anything is made, so Down undoes a half-made host.
		if err := l.writeState(st); err != nil {
			return ClientHost{}, err
		}
	}
	if err := l.ensureBridge(ctx, &st); err != nil {
		return ClientHost{}, err
	}
	h := &st.Hosts[i]
	if err := l.makeHost(ctx, *h); err != nil {
		return ClientHost{}, err
	}
	fqdn := name + "." + l.Spec.ACME.Zone
	if err := l.setHostRecord(ctx, fqdn, h.Address); err != nil {
		return ClientHost{}, err
	}
	h.Record = fqdn
	if err := l.writeState(st); err != nil {
		return ClientHost{}, err
	}
	l.logf("client host %s: %s in network namespace %s, %s A %s", name, h.Address, h.Netns, fqdn, h.Address)
	return *h, nil
}

// freeAddress is the client network's first address after the gateway
// that no host has (the broadcast address excluded).
func (l *Lab) freeAddress(st labState) (netip.Addr, error) {
	n := cluster.LabClientNetwork(l.Spec)
	for a := l.gateway().Next(); n.Contains(a) && n.Contains(a.Next()); a = a.Next() {
		if !slices.ContainsFunc(st.Hosts, func(h ClientHost) bool { return h.Address == a.String() }) {
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("lab.clientNetwork %s: every address has a client host (%d); use a larger block", n, len(st.Hosts))
}

// ensureBridge makes the lab's bridge with the gateway address, recorded
// in the state. A bridge of that name the lab did not make belongs to
// another lab with the same client network.
func (l *Lab) ensureBridge(ctx context.Context, st *labState) error {
	br, n := l.ClientBridge(), cluster.LabClientNetwork(l.Spec)
	if st.Bridge == "" {
		if linkExists(br) {
			return fmt.Errorf("lab.clientNetwork %s: interface %s exists and is not this lab's (another lab on this machine uses the block?); give this lab another lab.clientNetwork", n, br)
		}
		st.Bridge = br
		if err := l.writeState(*st); err != nil {
			return err
		}
	}
	if !linkExists(br) {
		if err := runCmd(ctx, "ip", "link", "add", br, "type", "bridge"); err != nil {
			return err
		}
	}
	gw := netip.PrefixFrom(l.gateway(), n.Bits()).String()
	// A fixed MAC address (locally administered, from the gateway's
	// address): a bridge whose address was never set takes its lowest
	// port's and changes it as client hosts come and go, and the hosts'
	// ARP entries for the gateway go stale (their answers to this
	// machine's VAs are lost for a while).
	g := l.gateway().As4()
	mac := fmt.Sprintf("02:ca:%02x:%02x:%02x:%02x", g[0], g[1], g[2], g[3])
	for _, args := range [][]string{
		{"ip", "link", "set", br, "address", mac},
		{"ip", "addr", "replace", gw, "dev", br},
		// Packets from the hosts to this machine's 127.x listeners, and
		// their answers, cross the bridge.
		{"sysctl", "-qw", "net.ipv4.conf." + br + ".route_localnet=1"},
		{"ip", "link", "set", br, "up"},
	} {
		if err := runCmd(ctx, args...); err != nil {
			return err
		}
	}
	return nil
}

// makeHost makes (idempotently) the host's namespace, its eth0 on the
// bridge, its address and routes.
func (l *Lab) makeHost(ctx context.Context, h ClientHost) error {
	ns, gw := h.Netns, l.gateway().String()
	if !netnsExists(ns) {
		if err := runCmd(ctx, "ip", "netns", "add", ns); err != nil {
			return err
		}
	}
	if !linkExists(h.Veth) {
		if err := runCmd(ctx, "ip", "link", "add", h.Veth, "type", "veth", "peer", "name", "eth0", "netns", ns); err != nil {
			return err
		}
	}
	steps := [][]string{
		{"ip", "link", "set", h.Veth, "master", l.ClientBridge(), "up"},
		{"ip", "-n", ns, "link", "set", "lo", "up"},
		// lo keeps 127.0.0.1 only; the rest of 127/8 is this machine's.
		{"ip", "-n", ns, "addr", "replace", "127.0.0.1/32", "dev", "lo"},
		{"ip", "-n", ns, "addr", "replace", netip.PrefixFrom(netip.MustParseAddr(h.Address), cluster.LabClientNetwork(l.Spec).Bits()).String(), "dev", "eth0"},
		{"ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.conf.all.route_localnet=1", "net.ipv4.conf.eth0.route_localnet=1"},
		{"ip", "-n", ns, "link", "set", "eth0", "up"},
		{"ip", "-n", ns, "route", "replace", "default", "via", gw, "dev", "eth0"},
		{"ip", "-n", ns, "route", "replace", "127.0.0.0/8", "via", gw, "dev", "eth0"},
	}
	for i, args := range steps {
		if err := runCmd(ctx, args...); err != nil {
			return err
		}
		if i == 2 { // the /8 lo got when it came up; gone on a second run
			exec.CommandContext(ctx, "ip", "-n", ns, "addr", "del", "127.0.0.1/8", "dev", "lo").Run()
		}
	}
	return nil
}

// hostsClient writes host records with the lab's hosts key.
func (l *Lab) hostsClient() (rfc2136.Client, error) {
	cb, err := site.ReadClusterBundle(l.clusterDir())
	if err != nil {
		return rfc2136.Client{}, fmt.Errorf("client hosts: the cluster bundle: %w (run cairn lab up first)", err)
	}
	if cb.HostsKey == "" {
		return rfc2136.Client{}, errors.New("client hosts: the cluster bundle has no hosts key (rendered by an older cairn): run cairn lab up again")
	}
	key, err := rfc2136.ReadKey(cb.HostsKey)
	if err != nil {
		return rfc2136.Client{}, fmt.Errorf("client hosts: %w", err)
	}
	return rfc2136.Client{Server: l.Spec.PrimaryDNS().String(), Key: key, TCP: true}, nil
}

// setHostRecord replaces the A records of fqdn with addr ("" removes them).
func (l *Lab) setHostRecord(ctx context.Context, fqdn, addr string) error {
	c, err := l.hostsClient()
	if err != nil {
		return err
	}
	var a netip.Addr
	if addr != "" {
		a = netip.MustParseAddr(addr)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := c.SetA(ctx, l.Spec.ACME.Zone, fqdn, a, uint32(l.Spec.ACME.TTL)); err != nil {
		return fmt.Errorf("client host record %s: %w (is the lab up?)", fqdn, err)
	}
	return nil
}

// ClientNetwork is where the lab's client hosts get their addresses
// (lab.clientNetwork).
func (l *Lab) ClientNetwork() netip.Prefix { return cluster.LabClientNetwork(l.Spec) }

// ExecHost is Exec run as client host name (made on first use): in its
// network namespace, with CAIRN_LAB_HOST (its name in the zone) and
// CAIRN_LAB_HOST_ADDRESS set.
func (l *Lab) ExecHost(ctx context.Context, name string, argv []string) (*exec.Cmd, error) {
	if err := l.checkHostName(name); err != nil {
		return nil, err
	}
	cmd, err := l.Exec(argv)
	if err != nil {
		return nil, err
	}
	h, err := l.Host(ctx, name)
	if err != nil {
		return nil, err
	}
	full := append([]string{"ip", "netns", "exec", h.Netns}, cmd.Args...)
	c := exec.Command(full[0], full[1:]...)
	c.Env = append(cmd.Env, "CAIRN_LAB_HOST="+h.Record, "CAIRN_LAB_HOST_ADDRESS="+h.Address)
	return c, nil
}

// Hosts lists the lab's client hosts.
func (l *Lab) Hosts() []ClientHost { return l.readState().Hosts }

// downHosts removes every client host (its record while the cluster DNS
// still runs, the processes in its namespace, its interfaces, the
// namespace) and the bridge. What it cannot remove stays in the state.
func (l *Lab) downHosts(ctx context.Context) error {
	unlock, err := l.lockState()
	if err != nil {
		return err
	}
	defer unlock()
	st := l.readState()
	if len(st.Hosts) == 0 && st.Bridge == "" {
		return nil
	}
	var left []ClientHost
	for _, h := range st.Hosts {
		if h.Record != "" {
			if err := l.setHostRecord(ctx, h.Record, ""); err != nil {
				// The record stays in the zone; the next `lab exec --host`
				// of that name replaces it.
				l.logf("  client host %s: %v", h.Name, err)
			}
		}
		if err := removeHost(ctx, h); err != nil {
			l.logf("  client host %s: %v", h.Name, err)
			left = append(left, h)
			continue
		}
		l.logf("  removed client host %s (%s)", h.Name, h.Address)
	}
	st.Hosts = left
	if len(left) == 0 && st.Bridge != "" {
		if linkExists(st.Bridge) {
			if err := runCmd(ctx, "ip", "link", "del", st.Bridge); err != nil {
				l.logf("  %v", err)
				return l.writeState(st)
			}
		}
		st.Bridge = ""
	}
	return l.writeState(st)
}

// removeHost ends the processes left in the host's namespace (TERM, then
// KILL after 5 s), deletes its interface pair and the namespace.
func removeHost(ctx context.Context, h ClientHost) error {
	if netnsExists(h.Netns) {
		if err := endProcesses(ctx, h.Netns, 5*time.Second); err != nil {
			return err
		}
	}
	if linkExists(h.Veth) {
		if err := runCmd(ctx, "ip", "link", "del", h.Veth); err != nil {
			return err
		}
	}
	if netnsExists(h.Netns) {
		return runCmd(ctx, "ip", "netns", "del", h.Netns)
	}
	return nil
}

// endProcesses signals every process in network namespace ns until none
// is left or grace passes (then KILL).
func endProcesses(ctx context.Context, ns string, grace time.Duration) error {
	deadline := time.Now().Add(grace)
	sig := syscall.SIGTERM
	for {
		out, err := exec.CommandContext(ctx, "ip", "netns", "pids", ns).Output()
		if err != nil {
			return fmt.Errorf("ip netns pids %s: %v", ns, err)
		}
		pids := strings.Fields(string(out))
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			sig = syscall.SIGKILL
		}
		for _, p := range pids {
			if pid, err := strconv.Atoi(p); err == nil {
				syscall.Kill(pid, sig)
			}
		}
		if sig == syscall.SIGKILL && time.Now().After(deadline.Add(5*time.Second)) {
			return fmt.Errorf("network namespace %s: processes %s do not end", ns, strings.Join(pids, " "))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func netnsExists(name string) bool {
	_, err := os.Stat("/run/netns/" + name)
	return err == nil
}

func linkExists(name string) bool {
	_, err := os.Stat("/sys/class/net/" + name)
	return err == nil
}

// runCmd runs a command and returns a one-line error with its output.
func runCmd(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// lockState serialises changes to the lab state between processes (two
// `lab exec --host` at once, `lab down`).
func (l *Lab) lockState() (func(), error) {
	return fsutil.Lock(l.Spec.Path("lab-state.lock"), 0o600)
}

// ClientHostName makes the client host name (or finds it) and returns
// its name in the cluster's DNS.
func (l *Lab) ClientHostName(ctx context.Context, name string) (string, error) {
	h, err := l.Host(ctx, name)
	return h.Record, err
}
