package provision

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/terraform-exec/tfexec"

	"github.com/cairn-pki/cairn/internal/labtest"
	"github.com/cairn-pki/cairn/internal/testenv"
)

// copyModule copies one module's .tf files into a fresh working directory.
func copyModule(t *testing.T, dir string) string {
	t.Helper()
	wd := t.TempDir()
	files, _ := filepath.Glob(filepath.Join(terraformDir(), dir, "*.tf"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(wd, filepath.Base(f)), b, 0o644)
	}
	return wd
}

// terraform/local through terraform-exec: hosts come up as namespace
// hosts that reach each other only at their public address, the outputs
// keep the contract, and destroy leaves no namespace, process or state.
func TestLocalHostsThroughTerraform(t *testing.T) {
	testenv.Integration(t, "terraform", "nsenter", "unshare", "ip")
	if os.Geteuid() != 0 {
		t.Fatal("namespace hosts need root")
	}
	cairn := labtest.CairnBinary(t)
	state := filepath.Join(t.TempDir(), "hosts")
	wd := copyModule(t, "local")
	tf, err := tfexec.NewTerraform(wd, "terraform")
	if err != nil {
		t.Fatal(err)
	}
	tf.SetEnv(map[string]string{"TF_CLI_CONFIG_FILE": "/dev/null", "TF_IN_AUTOMATION": "1"})
	ctx := context.Background()
	if err := tf.Init(ctx); err != nil {
		t.Fatal(err)
	}
	vars := []string{"cairn=" + cairn, "cluster=pt", "state_dir=" + state, "gateway=127.0.95.254",
		`hosts={a={role="site",address="127.0.96.1",local=["127.0.96.0/24"]},b={role="site",address="127.0.97.1",local=["127.0.97.0/24"]},dns={role="dns-primary",address="127.0.95.2"},cl={role="client",address="127.0.95.50"}}`}
	var applyOpts []tfexec.ApplyOption
	var destroyOpts []tfexec.DestroyOption
	for _, v := range vars {
		applyOpts = append(applyOpts, tfexec.Var(v))
		destroyOpts = append(destroyOpts, tfexec.Var(v))
	}
	destroyed := false
	t.Cleanup(func() {
		if !destroyed {
			tf.Destroy(context.Background(), destroyOpts...)
		}
	})
	start := time.Now()
	if err := tf.Apply(ctx, applyOpts...); err != nil {
		t.Fatal(err)
	}
	t.Logf("terraform apply (4 namespace hosts): %.2f s", time.Since(start).Seconds())

	raw, err := exec.Command("terraform", "-chdir="+wd, "output", "-json").Output()
	if err != nil {
		t.Fatal(err)
	}
	out, err := ParseOutputs(raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Sites) != 2 || len(out.DNSServers) != 1 || out.DNSServers[0].Address != "127.0.95.2:53" {
		t.Fatalf("outputs %+v", out)
	}
	host := func(name string) NSHost {
		return NSHost{Cluster: "pt", Name: name, StateDir: filepath.Join(state, name)}
	}
	a, cl := host("a"), host("cl")
	if out.Sites["a"].Connection.State != a.StateDir {
		t.Errorf("site a's connection %+v, want state %s", out.Sites["a"].Connection, a.StateDir)
	}
	// Each host has its own name, processes and /etc.
	if b, err := a.Exec(ctx, "sh", "-c", "hostname; echo a > /etc/cairn-provision-test; ps -e -o pid= | wc -l"); err != nil || !strings.HasPrefix(string(b), "a\n") {
		t.Errorf("inside host a: %s %v", b, err)
	}
	if _, err := os.Stat("/etc/cairn-provision-test"); err == nil {
		t.Errorf("a file written in host a's /etc appeared on the machine")
	}
	// A listener on a's public address is reachable from the client host;
	// one on an internal address of a is not.
	if b, err := a.Exec(ctx, "sh", "-c", "(python3 -m http.server 8080 --bind 127.0.96.1 & python3 -m http.server 8081 --bind 127.0.96.5 &) >/dev/null 2>&1"); err != nil {
		t.Fatalf("listeners in a: %s %v", b, err)
	}
	// Both listen (asked inside a) before the client tries either: the
	// refusal below must be the network's, not a listener still starting.
	testenv.WaitFor(t, "both listeners of host a accepting inside a", 30*time.Second, func() bool {
		_, err := a.Exec(ctx, "bash", "-c", "echo > /dev/tcp/127.0.96.1/8080 && echo > /dev/tcp/127.0.96.5/8081")
		return err == nil
	})
	if b, err := cl.Exec(ctx, "bash", "-c", "timeout 3 bash -c 'echo > /dev/tcp/127.0.96.1/8080'"); err != nil {
		t.Errorf("client → a's public address: %s %v", b, err)
	}
	if _, err := cl.Exec(ctx, "bash", "-c", "timeout 3 bash -c 'echo > /dev/tcp/127.0.96.5/8081'"); err == nil {
		t.Errorf("client reached a's internal address 127.0.96.5")
	}

	start = time.Now()
	if err := tf.Destroy(ctx, destroyOpts...); err != nil {
		t.Fatal(err)
	}
	destroyed = true
	t.Logf("terraform destroy: %.2f s", time.Since(start).Seconds())
	nets, _ := exec.Command("ip", "netns", "list").Output()
	if strings.Contains(string(nets), "cairn-pt-") {
		t.Errorf("namespaces left: %s", nets)
	}
	if ps, _ := exec.Command("pgrep", "-f", "host-init --state "+state).Output(); len(ps) > 0 {
		t.Errorf("anchor processes left: %s", ps)
	}
	if ps, _ := exec.Command("pgrep", "-f", "http.server 808[01] --bind 127.0.96").Output(); len(ps) > 0 {
		t.Errorf("the hosts' processes outlived them: %s", ps)
	}
	if entries, _ := os.ReadDir(state); len(entries) > 0 {
		t.Errorf("state left in %s: %v", state, entries)
	}
}
