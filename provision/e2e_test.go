package provision

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/internal/acmecli"
	"github.com/cairn-pki/cairn/internal/clienthost"
	"github.com/cairn-pki/cairn/internal/labtest"
	"github.com/cairn-pki/cairn/internal/provisiontest"
	"github.com/cairn-pki/cairn/internal/rfc2136"
	"github.com/cairn-pki/cairn/internal/testenv"
)

const (
	clientNet  = "10.79.80.0/24"
	clientAddr = "10.79.80.50"
)

// clientHosts: cairn provision client up makes a client host of the
// clients' own range (validation.allowedNetworks, not the hosts' 127/8),
// refusing any other address; lego --http and --tls there (run with
// provision client exec, the host's own resolver and trust store) get
// certificates through the ACME name: every site host reaches the
// clients' network on the bridge. The host stays until destroy, which
// removes it.
func clientHosts(t *testing.T, cli func(...string) ([]byte, error), cairn string, spec *cluster.Spec, rootPEM []byte) {
	t.Helper()
	for _, bad := range []struct{ name, addr, want string }{
		{"web", "127.0.79.60", "not 127/8"},
		{"web", "10.79.81.50", "not in validation.allowedNetworks"},
		{"a", clientAddr, "a host of the cluster has it"},
	} {
		out, err := exec.Command(cairn, "-f", spec.File, "provision", "client", "up", bad.name, "--address", bad.addr).CombinedOutput()
		if err == nil || !strings.Contains(string(out), bad.want) {
			t.Errorf("provision client up %s --address %s: %v %q, want a refusal saying %q", bad.name, bad.addr, err, out, bad.want)
		}
	}
	if out, err := cli("provision", "client", "up", "web", "--address", clientAddr); err != nil {
		t.Fatalf("provision client up: %v\n%s", err, out)
	}
	run := func(ctx context.Context, argv ...string) ([]byte, error) {
		return exec.CommandContext(ctx, cairn, append([]string{"-f", spec.File, "provision", "client", "exec", "web", "--"}, argv...)...).CombinedOutput()
	}
	clienthost.OrgDNS(t, run, clientAddr)
	clienthost.LegoHTTPAndTLS(t, run, spec, rootPEM, clientAddr)
}

// cairn provision apply --infra local brings up a site (and the cluster
// host) on namespace hosts through Terraform and Ansible, the roles'
// supervised path (no systemd: cairn's supervisor runs the bundle); lego
// in a second namespace gets a certificate from the site with DNS-01, a
// client host with HTTP-01 and TLS-ALPN-01; the controller on the DNS host
// revokes through the site's agent, whose port refuses the operator;
// destroy --infra existing, then destroy, leave nothing behind. One site:
// what needs two (replication, moves, the upgrade of the active site,
// drained by a move) runs on the systemd hosts of internal/nspawntest, the same roles
// on their systemd path, and the upgrade's restarts through cairn's
// supervisor in the upgrade package's lab (hostrun.RestartComponents,
// which `cairn site restart` runs here).
func TestProvisionLocalEndToEnd(t *testing.T) {
	// Issuance probed every 30 s: nothing here waits for the controller's
	// verdicts. A client host of its own range (clientNet): HTTP-01 and
	// TLS-ALPN-01.
	spec := labtest.SpecWith(t, labtest.BlockProvision, "failover:\n  probes:\n    issuance: 30s\n"+clienthost.SpecPart(clientNet, clientAddr), "a")
	testenv.Integration(t, "terraform", "ansible-playbook", "lego", "nsenter", "unshare")
	cairn := labtest.CairnBinary(t)
	cli := func(args ...string) ([]byte, error) {
		cmd := exec.Command(cairn, append([]string{"-f", spec.File}, args...)...)
		cmd.Stderr = labtest.Log{T: t}
		return cmd.Output()
	}
	destroyed := false
	t.Cleanup(func() {
		if !destroyed {
			cli("provision", "destroy", "--infra", "local")
		}
	})
	// plan shows the hosts and makes none.
	if out, err := cli("provision", "plan", "--infra", "local"); err != nil {
		t.Fatalf("provision plan: %v\n%s", err, out)
	}
	if left := infraNamespaces(t); len(left) > 0 {
		t.Fatalf("plan made namespaces: %v", left)
	}
	start := time.Now()
	out, err := cli("-o", "json", "provision", "apply", "--infra", "local")
	if err != nil {
		t.Fatalf("provision apply: %v\n%s", err, out)
	}
	var res Result
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("apply result: %v\n%s", err, out)
	}
	t.Logf("apply %.1fs: terraform %.2fs, render %.1fs, ansible %v, checks %v", time.Since(start).Seconds(), res.Terraform.Seconds(), res.Render.Seconds(), res.Ansible, res.Checks)
	for _, s := range spec.Sites {
		if res.Checks[s.Name] != "ok" {
			t.Errorf("site %s check: %s", s.Name, res.Checks[s.Name])
		}
	}

	// The failover controller runs on the DNS host and answers the
	// operator (from the switch namespace, the operator's vantage).
	st, err := exec.Command("ip", "netns", "exec", "cairn-t-sw", cairn, "-f", spec.File, "-o", "json", "failover", "status").CombinedOutput()
	if err != nil {
		t.Errorf("failover status from the operator's vantage: %v\n%s", err, st)
	} else {
		var status struct {
			Leading bool
			Sites   []struct{ Name string }
		}
		if err := json.Unmarshal(st, &status); err != nil || !status.Leading || len(status.Sites) != len(spec.Sites) {
			t.Errorf("controller status %s (%v)", st, err)
		}
	}

	// The client host first: it runs the organisation's DNS
	// (validation.resolvers), which answers the sites' CAA lookups above
	// the ACME zone; until it does, each of those times out at every VA
	// and every validation takes seconds more.
	rootPEM, _ := os.ReadFile(spec.Path(filepath.Join(spec.PKI.Dir, "public", "root.cert.pem")))
	clientHosts(t, cli, cairn, spec, rootPEM)

	// A client in a namespace of its own: lego through DNS-01 at the site.
	client := NSHost{Cluster: "t", Name: "client", Address: netip.MustParseAddr("127.0.79.50"), StateDir: filepath.Join(t.TempDir(), "client")}
	ctx := context.Background()
	if err := client.Up(ctx, NSSwitch{Cluster: "t", Gateway: netip.MustParseAddr("127.0.254.254")}, cairn); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Down(context.Background()) })
	key, err := rfc2136.ReadKey(spec.Path(spec.DNS.TSIG.ClientKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	primary := spec.PrimaryDNS().String()
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(rootPEM)
	// The client host has its own /tmp and /etc: give it the root there.
	root := "/etc/cairn-root.pem"
	if b, err := client.Exec(ctx, "env", "PEM="+string(rootPEM), "sh", "-c", `printf '%s' "$PEM" > `+root); err != nil {
		t.Fatalf("root certificate into the client host: %v %s", err, b)
	}
	var certA string
	for _, s := range spec.Sites {
		path := filepath.Join(t.TempDir(), "lego")
		name := "lego-" + s.Name + "." + spec.ACME.Zone
		env := acmecli.LegoEnv(nil, root, primary, spec.ACME.Zone, key)
		lego := acmecli.Lego{Server: "https://" + s.Address + "/directory", Email: "ops@" + spec.ACME.Zone, Path: path, Resolver: primary, Domain: name}
		legoStart := time.Now()
		b, err := client.Exec(ctx, append(append([]string{"env"}, env...), lego.Args("run")...)...)
		if err != nil {
			t.Errorf("lego at site %s from the client namespace: %v\n%s", s.Name, err, b)
			continue
		}
		t.Logf("lego dns-01 at site %s from the client namespace: certificate in %.1fs", s.Name, time.Since(legoStart).Seconds())
		// The client's /tmp is its own: read the certificate inside it.
		pemb, err := client.Exec(ctx, "cat", filepath.Join(path, "certificates", name+".crt"))
		if err != nil {
			t.Errorf("site %s: certificate: %v", s.Name, err)
			continue
		}
		leaf, rest := pem.Decode(pemb)
		cert, err := x509.ParseCertificate(leaf.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		inter := x509.NewCertPool()
		inter.AppendCertsFromPEM(rest)
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter}); err != nil {
			t.Errorf("site %s: certificate does not chain to the root: %v", s.Name, err)
		}
		if got := cert.SerialNumber.Bytes()[0]; got != s.SerialPrefix.Value() {
			t.Errorf("site %s: serial prefix %x, want %s (the certificate must come from that site)", s.Name, got, s.SerialPrefix)
		}
		if s.Name == "a" {
			certA = filepath.Join(t.TempDir(), "a.pem")
			os.WriteFile(certA, pemb, 0o644)
		}
	}
	client.Down(ctx)

	// Revocation from the operator's vantage goes through the controller
	// on the DNS host, which revokes at site a and blocks the key through
	// its agent, not from a site host; the agent's port drops the
	// operator's connection.
	if certA != "" {
		provisiontest.RevokeThroughTheController(t, cairn, spec, "cairn-t-sw", certA)
	}
	provisiontest.AgentRefusesTheOperator(t, spec, "cairn-t-sw")

	// The same hosts as existing hosts: destroy --infra existing removes
	// what Ansible installed (from another working directory, so the
	// Terraform state of the local infrastructure stays).
	other := t.TempDir()
	specText, _ := os.ReadFile(spec.File)
	os.WriteFile(filepath.Join(other, "cairn.yaml"), specText, 0o644)
	inv, _ := json.Marshal(res.Outputs)
	os.WriteFile(filepath.Join(other, "hosts.json"), inv, 0o644)
	cmd := exec.Command(cairn, "-f", filepath.Join(other, "cairn.yaml"), "provision", "destroy", "--infra", "existing", "--inventory", filepath.Join(other, "hosts.json"))
	cmd.Stderr = labtest.Log{T: t}
	if err := cmd.Run(); err != nil {
		t.Fatalf("provision destroy --infra existing: %v", err)
	}
	a := NSHost{Cluster: "t", Name: "a", StateDir: res.Outputs.Sites["a"].Connection.State}
	if b, err := a.Exec(ctx, "sh", "-c", "ls /opt/cairn 2>&1; ps -eo pid,args | grep ' /opt/cairn/' | grep -v grep; echo left: $(ps -eo args | grep -c '^/opt/cairn/')"); err != nil || !strings.Contains(string(b), "No such file") || !strings.HasSuffix(strings.TrimSpace(string(b)), "left: 0") {
		t.Errorf("site a after destroy --infra existing: %s %v", b, err)
	}

	start = time.Now()
	if out, err := cli("provision", "destroy", "--infra", "local"); err != nil {
		t.Fatalf("provision destroy: %v\n%s", err, out)
	}
	destroyed = true
	t.Logf("destroy %.2fs", time.Since(start).Seconds())
	if left := infraNamespaces(t); len(left) > 0 {
		t.Errorf("namespaces left: %v", left)
	}
	if left := processesLeft("/opt/cairn/|host-init --state "+spec.Path(Dir), spec.Path(Dir)); len(left) > 0 {
		t.Errorf("processes left: %s", left)
	}
	mounts, _ := os.ReadFile("/proc/mounts")
	if strings.Contains(string(mounts), spec.Path(Dir)) {
		t.Errorf("mounts left under %s", spec.Path(Dir))
	}
	addrs, _ := exec.Command("ip", "-o", "addr", "show").Output()
	for _, a := range []string{"127.0.80.", "127.0.81.", "127.0.82.", "127.0.79.50"} {
		if strings.Contains(string(addrs), " "+a) {
			t.Errorf("address %s… left in the machine's namespace", a)
		}
	}
	if _, err := os.Stat(spec.Path(Dir)); err == nil {
		t.Errorf("%s left", spec.Path(Dir))
	}
}

// infraNamespaces lists this infrastructure's namespaces that exist: other
// tests' labs (their client hosts, cairn-t-<hex>-host-…) may hold
// namespaces of their own meanwhile.
func infraNamespaces(t *testing.T) []string {
	t.Helper()
	nets, _ := exec.Command("ip", "netns", "list").Output()
	var out []string
	for _, line := range strings.Split(string(nets), "\n") {
		name, _, _ := strings.Cut(line, " ")
		for _, h := range []string{"a", "b", "dns", "sw"} {
			if name == nsName("t", h) {
				out = append(out, name)
			}
		}
	}
	return out
}

// processesLeft lists the processes whose command line matches pattern
// (pgrep -f) and that are this test's: inside a host (a PID namespace of
// its own) or naming ours (its working directory); not those of nspawn
// hosts (cgroup cairn-nspawn-…) nor of this machine that name another
// directory: the nspawn end-to-end test runs its own /opt/cairn units and
// Ansible commands meanwhile.
func processesLeft(pattern, ours string) []string {
	ps, _ := exec.Command("pgrep", "-af", pattern).Output()
	self, _ := os.Readlink("/proc/self/ns/pid")
	// The PID namespaces of nspawn hosts (their processes' cgroup is
	// cairn-nspawn-…): a command the nspawn test runs in a host through
	// nsenter (cairn site close-connections during its upgrade) keeps the
	// caller's cgroup but has the host's PID namespace.
	nspawnNS := map[string]bool{}
	procs, _ := os.ReadDir("/proc")
	for _, d := range procs {
		if cg, err := os.ReadFile("/proc/" + d.Name() + "/cgroup"); err == nil && strings.Contains(string(cg), "/cairn-nspawn-") {
			if ns, err := os.Readlink("/proc/" + d.Name() + "/ns/pid"); err == nil {
				nspawnNS[ns] = true
			}
		}
	}
	var left []string
	for _, line := range strings.Split(strings.TrimSpace(string(ps)), "\n") {
		pid, _, _ := strings.Cut(line, " ")
		if line == "" {
			continue
		}
		// Gone since pgrep listed it (another test's process that ended,
		// e.g. an nspawn host's while that host reboots): not left.
		cg, err := os.ReadFile("/proc/" + pid + "/cgroup")
		if err != nil {
			continue
		}
		ns, err := os.Readlink("/proc/" + pid + "/ns/pid")
		if err != nil || strings.Contains(string(cg), "/cairn-nspawn-") || nspawnNS[ns] {
			continue
		}
		// A process of this machine's own PID namespace that does not name
		// this test's directory is another test's (the nspawn test runs
		// ansible with /opt/cairn/ commands at the same time): what a host
		// leaves behind runs in the host's PID namespace.
		if ns == self && !strings.Contains(line, ours) {
			continue
		}
		left = append(left, line)
	}
	return left
}
