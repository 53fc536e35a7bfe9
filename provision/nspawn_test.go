package provision

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/internal/fsutil"
	"github.com/cairn-pki/cairn/internal/testenv"
)

// nspawnSpec is a spec on 10.78.x with extra lines.
func nspawnSpec(t *testing.T, sites, failover string) *cluster.Spec {
	t.Helper()
	dir := t.TempDir()
	text := "name: nsp\ndns:\n  servers:\n    - {name: primary, address: 10.78.80.2:53, role: primary}\n" +
		"    - {name: secondary, address: 10.78.80.3:53, role: secondary}\nsites:\n" + sites + "failover:\n  listen: " + failover + "\n"
	path := filepath.Join(dir, cluster.DefaultFile)
	os.WriteFile(path, []byte(text), 0o644)
	spec, err := cluster.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

// --infra nspawn takes a spec whose hosts are on one private /16 and
// names the field and the fix otherwise.
func TestNspawnNetworkFromTheSpec(t *testing.T) {
	good := "  - {name: a, address: 10.78.81.1, serviceNetwork: 10.78.81.0/24}\n"
	p, err := New(Options{Spec: nspawnSpec(t, good, "10.78.80.1:9180"), Infra: "nspawn", ImageCache: "/x"})
	if err != nil {
		t.Fatal(err)
	}
	if p.o.Gateway != "10.78.255.254" {
		t.Errorf("default gateway %s, want the network's last address but one", p.o.Gateway)
	}
	for _, tc := range []struct{ sites, listen, gateway, want string }{
		{"  - {name: a, address: 10.79.81.1, serviceNetwork: 10.79.81.0/24}\n", "10.78.80.1:9180", "", "sites[0].address 10.79.81.1: not in the hosts' network 10.78.0.0/16"},
		{"  - {name: a, address: 10.78.81.1, serviceNetwork: 127.0.81.0/24}\n", "10.78.80.1:9180", "", "sites[0].serviceNetwork 127.0.81.0/24: its CRL front 127.0.81.5"},
		{good, "127.0.0.1:9180", "", "failover.listen 127.0.0.1:9180"},
		{good, "10.78.80.1:9180", "10.9.0.1", "--gateway \"10.9.0.1\""},
	} {
		_, err := New(Options{Spec: nspawnSpec(t, tc.sites, tc.listen), Infra: "nspawn", Gateway: tc.gateway, ImageCache: "/x"})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("error %v, want %s", err, tc.want)
		}
	}
}

// The hosts' root filesystem comes from the mirror apt uses, in either
// format of its sources.
func TestAptMirror(t *testing.T) {
	for _, tc := range []struct{ file, text, want string }{
		{"sources.list", "# x\ndeb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bookworm main\n", "http://m.example/debian"},
		{"sources.list.d/debian.sources", "Types: deb\nURIs: http://d.example/debian-security\nSuites: bookworm-security\n\nTypes: deb\nURIs: http://d.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n", "http://d.example/debian"},
	} {
		dir := t.TempDir()
		os.MkdirAll(filepath.Join(dir, "sources.list.d"), 0o755)
		os.WriteFile(filepath.Join(dir, tc.file), []byte(tc.text), 0o644)
		if got, err := AptMirror(dir); got != tc.want || err != nil {
			t.Errorf("%s: %q %v, want %q", tc.file, got, err, tc.want)
		}
	}
	if _, err := AptMirror(t.TempDir()); err == nil || !strings.Contains(err.Error(), "--mirror") {
		t.Errorf("no sources: %v, want a hint at --mirror", err)
	}
}

// host0's configuration: the address on the hosts' network, the extra
// ones alone, no IPv6 autoconfiguration (network-online at once), the
// service network local to the host.
func TestNspawnNetworkFile(t *testing.T) {
	h := NspawnHost{Name: "a", Address: netip.MustParseAddr("10.78.81.1"), Network: netip.MustParsePrefix("10.78.0.0/16"),
		Extra: []netip.Addr{netip.MustParseAddr("10.78.81.5")}, Local: []netip.Prefix{netip.MustParsePrefix("10.78.81.0/24")}}
	got := h.networkFile()
	for _, want := range []string{"Name=host0", "Address=10.78.81.1/16\n", "Address=10.78.81.5/32\n", "LinkLocalAddressing=no", "Type=local\nDestination=10.78.81.0/24\nTable=local"} {
		if !strings.Contains(got, want) {
			t.Errorf("network file lacks %q:\n%s", want, got)
		}
	}
}

// A PID file names its process while it runs, and not once it exited
// (a zombie not yet reaped has an empty command line, like a process in
// the middle of execve, which pidFileOf waits out).
func TestPIDFileOfAnExitedProcess(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	file := filepath.Join(t.TempDir(), "pid")
	os.WriteFile(file, []byte(strconv.Itoa(pid)+"\n"), 0o644)
	if got, ok := pidFileOf(file, "sleep", "60"); !ok || got != pid || zombie(pid) {
		t.Fatalf("running: pidFileOf %d %v, zombie %v; want %d", got, ok, zombie(pid), pid)
	}
	if _, ok := pidFileOf(file, "sleep", "61"); ok {
		t.Error("a process without the markers is not the one")
	}
	cmd.Process.Kill()
	for deadline := time.Now().Add(10 * time.Second); !zombie(pid); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("killed, not a zombie within 10 s")
		}
	}
	if _, ok := pidFileOf(file, "sleep"); ok {
		t.Error("an exited (zombie) process still counts as running")
	}
	cmd.Wait()
	if _, ok := pidFileOf(file, "sleep"); ok {
		t.Error("a reaped process still counts as running")
	}
}

// A new image replaces the cache's older ones, except one a running
// host's launcher names (its command line in proc), a build in progress
// and anything that is not a finished image.
func TestNspawnImagePrunesUnusedImages(t *testing.T) {
	cache, proc := t.TempDir(), t.TempDir()
	im := NspawnImage{Cache: cache}
	image := func(name string, ready bool) string {
		dir := filepath.Join(cache, name)
		if err := os.MkdirAll(filepath.Join(dir, "root"), 0o755); err != nil {
			t.Fatal(err)
		}
		if ready {
			os.WriteFile(filepath.Join(dir, "ready"), nil, 0o644)
		}
		return dir
	}
	current := image(im.key(), true)
	unused := image(NspawnSuite+"-000000000001", true)
	os.WriteFile(unused+".lock", nil, 0o600)
	used := image(NspawnSuite+"-000000000002", true)
	building := image(NspawnSuite+"-000000000003.tmp", true)
	half := image(NspawnSuite+"-000000000004", false)
	os.MkdirAll(filepath.Join(proc, "4242"), 0o755)
	os.WriteFile(filepath.Join(proc, "4242", "cmdline"), []byte("/opt/cairn\x00provision\x00nspawn\x00run\x00--image\x00"+filepath.Join(used, "root")+"\x00--netns\x00x\x00"), 0o644)
	removed := im.prune(proc)
	if !slices.Equal(removed, []string{unused}) {
		t.Errorf("pruned %v, want only %s", removed, unused)
	}
	for _, keep := range []string{current, used, building, half} {
		if !fsutil.Exists(keep) {
			t.Errorf("%s was removed", keep)
		}
	}
	if fsutil.Exists(unused) || fsutil.Exists(unused+".lock") {
		t.Errorf("%s (or its lock) is still there", unused)
	}
}

// The switch's bridge keeps its own address while hosts' links come and
// go (a host's reboot or power cut removes its veth): a Linux bridge
// whose address was never set takes its lowest port's, and the hosts'
// ARP entries for the operator would go stale.
func TestSwitchBridgeKeepsItsAddress(t *testing.T) {
	testenv.Integration(t, "ip")
	ctx := context.Background()
	sw := NSSwitch{Cluster: "brt" + strconv.Itoa(os.Getpid()%10000), Gateway: netip.MustParseAddr("127.0.254.254")}
	t.Cleanup(func() { sw.Down(context.Background()) })
	if err := sw.Up(ctx); err != nil {
		t.Fatal(err)
	}
	mac := func() string {
		out, err := exec.Command("ip", "-n", sw.Netns(), "-o", "link", "show", "br0").Output()
		if err != nil {
			t.Fatal(err)
		}
		f := strings.Fields(string(out))
		i := slices.Index(f, "link/ether")
		if i < 0 || i+1 >= len(f) {
			t.Fatalf("br0: %s", out)
		}
		return f[i+1]
	}
	before := mac()
	if before != sw.bridgeMAC() {
		t.Errorf("br0's address %s, want %s", before, sw.bridgeMAC())
	}
	for _, args := range [][]string{
		{"link", "add", "cairnbrt0", "address", "00:00:00:00:00:11", "type", "veth", "peer", "name", "cairnbrt1"},
		{"link", "set", "cairnbrt0", "master", "br0"},
	} {
		if out, err := exec.Command("ip", append([]string{"-n", sw.Netns()}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v %s", args, err, out)
		}
	}
	if got := mac(); got != before {
		t.Errorf("br0's address %s with a port of a lower address, want %s still", got, before)
	}
	if out, err := exec.Command("ip", "-n", sw.Netns(), "link", "del", "cairnbrt0").CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if got := mac(); got != before {
		t.Errorf("br0's address %s after its port left, want %s still", got, before)
	}
	if err := sw.Up(ctx); err != nil { // idempotent
		t.Fatal(err)
	}
}
