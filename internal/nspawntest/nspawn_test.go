// Package nspawntest provisions a cluster on Debian 12 hosts with
// systemd as PID 1 (cairn provision --infra nspawn) and checks what a
// real host runs: every component a hardened unit under its own user.
// Its hosts are on 10.78.80.0/24-10.78.82.0/24 in a switch namespace of
// their own (cairn-nsp-sw); no other test uses them.
package nspawntest

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/failover"
	"github.com/cairn-pki/cairn/internal/acmecli"
	"github.com/cairn-pki/cairn/internal/clienthost"
	"github.com/cairn-pki/cairn/internal/labtest"
	"github.com/cairn-pki/cairn/internal/provisiontest"
	"github.com/cairn-pki/cairn/internal/rfc2136"
	"github.com/cairn-pki/cairn/internal/testenv"
	"github.com/cairn-pki/cairn/provision"
	"github.com/cairn-pki/cairn/site"
)

var specText = `name: nsp
dns:
  provider: rfc2136
  servers:
    - {name: primary, address: 10.78.80.2:53, role: primary}
    - {name: secondary, address: 10.78.80.3:53, role: secondary}
sites:
  - {name: a, address: 10.78.81.1, serviceNetwork: 10.78.81.0/24}
  - {name: b, address: 10.78.82.1, serviceNetwork: 10.78.82.0/24}
failover:
  listen: 10.78.80.1:9180
  # Quick verdicts (as the lab's tests use): the reboots re-admit a site
  # after 3 deep successes over 3 s, not 20 over a minute.
  upAfter: 3
  stablePeriod: 3s
  holdDown: 15s
  # Issuance probed every 10 s, not 5 (every issuance costs CPU the other
  # tests share), nor 30: a site restarted by the upgrade is healthy again
  # only once an issuance probe passes, so the upgrade's gate waits for one.
  probes:
    issuance: 10s
# The upgrade waits the ACME name's TTL out on the active site: 5 s, not
# the default 30.
acme:
  ttl: 5
` + specClients

// cairn provision apply --infra nspawn: 2 site hosts and the DNS host
// boot with systemd, every bundle process is an active unit under a user
// of its own, lego from the operator's vantage (resolving the ACME name
// at the cluster DNS host) gets a certificate; the hosts reboot and
// their units crash and come back by themselves (reboot_test.go), and
// lego gets a certificate again, which the operator revokes through the
// controller (the key blocked at both sites; no site agent takes the
// operator's connection); destroy leaves no container, cgroup, bridge,
// process, mount or state.
func TestProvisionNspawnEndToEnd(t *testing.T) {
	testenv.Integration(t, "terraform", "ansible-playbook", "lego", "systemd-nspawn", "debootstrap", "nsenter", "unshare", "ip", "dig", "nsupdate")
	if os.Geteuid() != 0 {
		t.Fatal("nspawn hosts need root")
	}
	dir := t.TempDir()
	specFile := filepath.Join(dir, cluster.DefaultFile)
	if err := os.WriteFile(specFile, []byte(specText), 0o644); err != nil {
		t.Fatal(err)
	}
	spec, err := cluster.Load(specFile)
	if err != nil {
		t.Fatal(err)
	}
	cairn := labtest.CairnBinary(t)
	cli := func(args ...string) ([]byte, error) {
		cmd := exec.Command(cairn, append([]string{"-f", specFile}, args...)...)
		cmd.Stderr = labtest.Log{T: t}
		return cmd.Output()
	}
	destroyed := false
	t.Cleanup(func() {
		if !destroyed {
			cli("provision", "destroy", "--infra", "nspawn")
		}
	})
	start := time.Now()
	out, err := cli("-o", "json", "provision", "apply", "--infra", "nspawn")
	var res provision.Result
	if jerr := json.Unmarshal(out, &res); jerr != nil || err != nil {
		t.Fatalf("provision apply --infra nspawn: %v %v\n%s", err, jerr, out)
	}
	t.Logf("apply %.1fs: terraform (image, boots) %.1fs, render %.1fs, ansible %v, checks %v", time.Since(start).Seconds(),
		res.Terraform.Seconds(), res.Render.Seconds(), res.Ansible, res.Checks)

	hosts := map[string]provision.NspawnHost{}
	for name, h := range res.Outputs.Sites {
		hosts[name] = nspawnHost(t, h.Connection)
	}
	hosts["dns"] = nspawnHost(t, res.Outputs.DNSServers[0].Connection)
	ctx := context.Background()
	c := &clusterUnderTest{spec: spec, cairn: cairn, hosts: hosts, units: map[string][]string{}}
	for name, h := range hosts {
		b, _ := h.Exec(ctx, "systemd-analyze", "time")
		t.Logf("host %s: %s", name, strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
		bundle := filepath.Join(spec.Path(provision.Dir), "bundles", name, "bundle.json")
		if name == "dns" {
			bundle = filepath.Join(spec.Path(provision.Dir), "bundles", "cluster", "bundle.json")
		}
		c.units[name] = bundleUnits(t, bundle)
		unitsRunAsTheirOwnUsers(t, h, name, c.units[name])
	}
	// The organisation's DNS first: the sites' validations need it.
	client := clientHost(t, spec, cairn, res.Outputs.DNSServers[0].Address)
	start = time.Now()
	c.bringUpMovedNothing(t, start)
	pkiFrontServesThePublicDirectory(t, spec, hosts["dns"])
	backupsOnSystemdHosts(t, c)
	provisiontest.AgentRefusesTheOperator(t, spec, operatorNetns(spec))

	issueThroughTheACMEName(t, spec, res.Outputs.DNSServers[0].Address)
	// HTTP-01 and TLS-ALPN-01 from the client host (client_test.go).
	clientHTTP01(t, client, spec)

	// The active site's upgrade to another Boulder release
	// (upgrade_test.go); the reboots below then bring back units of both
	// releases.
	upgradeOnSystemdHosts(t, c, cli)

	// Reboots and crashes (reboot_test.go), then issuance through the
	// ACME name again, wherever it points now.
	rebootsAndCrashes(t, c)
	cert := issueThroughTheACMEName(t, spec, res.Outputs.DNSServers[0].Address)
	// Revocation from the operator's vantage: the controller on the DNS
	// host revokes at the issuing site and blocks the key at both through
	// their agents.
	provisiontest.RevokeThroughTheController(t, cairn, spec, operatorNetns(spec), cert)

	client.Down(ctx)
	start = time.Now()
	if out, err := cli("provision", "destroy", "--infra", "nspawn"); err != nil {
		t.Fatalf("provision destroy: %v\n%s", err, out)
	}
	destroyed = true
	t.Logf("destroy %.1fs", time.Since(start).Seconds())
	nothingLeft(t, spec, hosts)
}

// bringUpMovedNothing: the controller sees every site healthy, and by
// then it has not moved the ACME name from the first site: provision
// starts the controller after the sites, so its first probes find them
// running. (Started before them, it saw the active site refuse while it
// came up, called it down and moved the name to whichever site it judged
// healthy first.)
func (c *clusterUnderTest) bringUpMovedNothing(t *testing.T, since time.Time) {
	t.Helper()
	// The status in which every site is first seen healthy.
	var st failover.Status
	var seen string
	if !waitUntil(t, "every site healthy after apply", hostLimit, func() (bool, string) {
		st, seen = c.failoverStatus()
		return c.allHealthyIn(st), seen
	}) {
		return
	}
	if first := c.spec.Sites[0].Name; len(st.Moves) > 0 || st.Active != first {
		t.Errorf("after apply: moves %+v, active %s (want none, %s): %s", st.Moves, st.Active, first, seen)
		return
	}
	t.Logf("every site healthy (the controller's verdict) %.1fs after the organisation's DNS came up; the name still at %s, no move",
		time.Since(since).Seconds(), st.Active)
}

// operatorNetns is the switch namespace: the operator's vantage.
func operatorNetns(spec *cluster.Spec) string {
	return provision.NSSwitch{Cluster: spec.Name}.Netns()
}

// nspawnHost names the host of a connection in the output contract.
func nspawnHost(t *testing.T, c provision.Connection) provision.NspawnHost {
	t.Helper()
	cl, name, ok := strings.Cut(c.Machine, "-")
	if c.Type != "nsenter" || !ok || c.State == "" {
		t.Fatalf("connection %+v: want nsenter into machine CLUSTER-NAME with a state directory", c)
	}
	return provision.NspawnHost{Cluster: cl, Name: name, StateDir: c.State}
}

// bundleUnits are the units of a bundle's processes (and its
// controller's) in the bundle's order.
func bundleUnits(t *testing.T, bundleJSON string) []string {
	t.Helper()
	var bundle struct {
		Processes  []struct{ Name string } `json:"processes"`
		Controller *struct{ Name string }  `json:"controller"`
	}
	b, err := os.ReadFile(bundleJSON)
	if err == nil {
		err = json.Unmarshal(b, &bundle)
	}
	if err != nil || len(bundle.Processes) == 0 {
		t.Fatalf("%s: %v", bundleJSON, err)
	}
	var units []string
	for _, p := range bundle.Processes {
		units = append(units, "cairn-"+p.Name+".service")
	}
	if bundle.Controller != nil {
		units = append(units, "cairn-"+bundle.Controller.Name+".service")
	}
	return units
}

// unitsRunAsTheirOwnUsers: systemd is PID 1 of the host, and every
// process of its bundle is an active unit whose main process runs under
// the unit's user, not root, and no two units share a user.
func unitsRunAsTheirOwnUsers(t *testing.T, h provision.NspawnHost, name string, units []string) {
	t.Helper()
	ctx := context.Background()
	if b, err := h.Exec(ctx, "cat", "/proc/1/comm"); err != nil || strings.TrimSpace(string(b)) != "systemd" {
		t.Errorf("host %s: PID 1 is %q (%v), want systemd", name, b, err)
	}
	users := map[string]string{}
	for _, unit := range units {
		b, err := h.Exec(ctx, "systemctl", "show", "-p", "ActiveState,User,MainPID", unit)
		props := map[string]string{}
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, "="); ok {
				props[k] = v
			}
		}
		if err != nil || props["ActiveState"] != "active" {
			t.Errorf("host %s: %s is %q (%v)", name, unit, props["ActiveState"], err)
			continue
		}
		user, pid := props["User"], props["MainPID"]
		if user == "" || user == "root" {
			t.Errorf("host %s: %s runs as %q, want a user of its own", name, unit, user)
		}
		if other, dup := users[user]; dup {
			t.Errorf("host %s: %s and %s share the user %s", name, unit, other, user)
		}
		users[user] = unit
		// The unit's main process, as the host's kernel sees it.
		status, err := h.Exec(ctx, "cat", "/proc/"+pid+"/status")
		uid := ""
		for _, line := range strings.Split(string(status), "\n") {
			if f := strings.Fields(line); len(f) >= 3 && f[0] == "Uid:" {
				uid = f[1] + "/" + f[2] // real/effective
			}
		}
		want, _ := h.Exec(ctx, "id", "-u", user)
		w := strings.TrimSpace(string(want))
		if err != nil || uid != w+"/"+w || w == "0" || w == "" {
			t.Errorf("host %s: %s main process %s has uid %q (%v), want %s's (%s)", name, unit, pid, uid, err, user, w)
		}
	}
	t.Logf("host %s: %d units active, each under its own user (%d users)", name, len(units), len(users))
}

// pkiFrontServesThePublicDirectory: the cluster's PKI front (pki-http,
// its own user) reads the public directory from its view and serves the
// root certificate, byte for byte the operator's.
func pkiFrontServesThePublicDirectory(t *testing.T, spec *cluster.Spec, dns provision.NspawnHost) {
	t.Helper()
	want := rootPEM(t, spec)
	url := "http://" + site.PKIFrontAddr(spec) + "/root.cert.pem"
	got, err := dns.Exec(context.Background(), "python3", "-c",
		"import sys, urllib.request; sys.stdout.buffer.write(urllib.request.urlopen(sys.argv[1], timeout=10).read())", url)
	if err != nil || string(got) != string(want) {
		t.Errorf("GET %s on the DNS host: %v\n%s", url, err, got)
		return
	}
	t.Logf("the PKI front serves %s (%d bytes, the operator's root certificate)", url, len(got))
}

// issueThroughTheACMEName runs lego from the operator's vantage (the
// switch namespace), resolving the ACME name at the cluster DNS primary
// and proving DNS-01 there: the certificate chains to the root and comes
// from one of the sites.
func issueThroughTheACMEName(t *testing.T, spec *cluster.Spec, primary string) (certFile string) {
	t.Helper()
	dir := t.TempDir()
	resolv := filepath.Join(dir, "resolv.conf")
	host, _, _ := strings.Cut(primary, ":")
	os.WriteFile(resolv, acmecli.ResolvConf(host), 0o644)
	key, err := rfc2136.ReadKey(spec.Path(spec.DNS.TSIG.ClientKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	root := spec.Path(filepath.Join(spec.PKI.Dir, "public", "root.cert.pem"))
	name := "lego." + spec.ACME.Zone
	lego := acmecli.Lego{Server: "https://" + spec.ACME.Name + "/directory", Email: "ops@" + spec.ACME.Zone, Path: filepath.Join(dir, "lego"), Resolver: primary, Domain: name}
	argv := append([]string{"ip", "netns", "exec", operatorNetns(spec)}, acmecli.WithResolver(resolv, lego.Args("run"))...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = acmecli.LegoEnv(os.Environ(), root, primary, spec.ACME.Zone, key)
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("lego through %s from the operator's vantage: %v\n%s", spec.ACME.Name, err, out)
	}
	pemb, err := os.ReadFile(filepath.Join(dir, "lego", "certificates", name+".crt"))
	if err != nil {
		t.Fatal(err)
	}
	cert := clienthost.ChainsToRoot(t, pemb, rootPEM(t, spec), name)
	from := ""
	for _, s := range spec.Sites {
		if cert.SerialNumber.Bytes()[0] == s.SerialPrefix.Value() {
			from = s.Name
		}
	}
	if from == "" {
		t.Errorf("serial %x has no site's prefix", cert.SerialNumber)
	}
	t.Logf("lego through %s: certificate for %s from site %s in %.1fs", spec.ACME.Name, name, from, time.Since(start).Seconds())
	return filepath.Join(dir, "lego", "certificates", name+".crt")
}

// nothingLeft: after destroy no container process, cgroup, switch
// namespace (bridge), mount, nspawn runtime entry or state remains.
func nothingLeft(t *testing.T, spec *cluster.Spec, hosts map[string]provision.NspawnHost) {
	t.Helper()
	for _, h := range hosts {
		if pids := provision.CgroupProcs(h.Machine()); len(pids) > 0 {
			t.Errorf("host %s: processes left in its cgroup: %v", h.Name, pids)
		}
		for _, cg := range []string{"/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified", "/sys/fs/cgroup"} {
			if _, err := os.Stat(filepath.Join(cg, "cairn-nspawn-"+h.Machine())); err == nil {
				t.Errorf("host %s: cgroup left under %s", h.Name, cg)
			}
		}
		if _, err := os.Stat(filepath.Join("/run/systemd/nspawn/propagate", h.Machine())); err == nil {
			t.Errorf("host %s: /run/systemd/nspawn/propagate/%s left", h.Name, h.Machine())
		}
	}
	if nets, _ := exec.Command("ip", "netns", "list").Output(); slices.ContainsFunc(strings.Split(string(nets), "\n"), func(l string) bool {
		return strings.HasPrefix(l, operatorNetns(spec))
	}) {
		t.Errorf("switch namespace (and its bridge) left: %s", nets)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, _ := os.ReadFile(p)
		if cmd := strings.ReplaceAll(string(b), "\x00", " "); strings.Contains(cmd, spec.Path(provision.Dir)) {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
			t.Errorf("process left: %d %s", pid, cmd)
		}
	}
	mounts, _ := os.ReadFile("/proc/mounts")
	if strings.Contains(string(mounts), spec.Path(provision.Dir)) {
		t.Errorf("mounts left under %s", spec.Path(provision.Dir))
	}
	if _, err := os.Stat(spec.Path(provision.Dir)); err == nil {
		t.Errorf("%s left", spec.Path(provision.Dir))
	}
}
