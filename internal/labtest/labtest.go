// Package labtest gives integration tests a lab spec on an address block
// of their own (so test packages, and a developer's lab, never collide),
// the cairn binary the lab starts, and a test log writer.
package labtest

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/internal/acmeclient"
	"github.com/cairn-pki/cairn/internal/rfc2136"
	"github.com/cairn-pki/cairn/internal/testenv"
)

// Tools are what a lab needs on PATH.
var Tools = []string{"softhsm2-util", "mariadbd", "mariadb-install-db", "mariadb-backup", "mbstream", "redis-server", "named", "knotd", "pdns_server", "pdnsutil", "nsupdate", "ip", "openssl"}

// Address blocks per test package: DNS at 127.0.B.2-3, site i at 127.0.(B+1+i).0/24.
const (
	BlockLab         = 40
	BlockHealthcheck = 50
	BlockFailover    = 60
	BlockDrill       = 70
	BlockProvision   = 80
	BlockAccounts    = 90
	BlockPowerDNS    = 100 // the failover package's PowerDNS lab
	BlockUpgrade     = 110
	BlockDNSPolicy   = 120 // internal/ssupolicy: the cluster DNS's update policies
	BlockPolicy      = 130 // internal/policytest: private suffixes and validation networks
	BlockProfiles    = 140 // internal/profiletest: certificate profiles
	BlockHosts       = 150 // internal/hosttest: the lab's client hosts
	BlockEAB         = 160 // internal/eabtest: External Account Binding and name scopes
	// 170: acmedns's provider contract (BIND, Knot, PowerDNS on 127.0.170.x).
	// 181, 182: internal/connlimit.
	// 199: drill's toxic fault against a plain server (TestToxicForgetsStaleConntrackEntries).
	BlockSiteLost = 190 // drill: the site-lost drill's own lab, beside BlockDrill's
)

// Spec writes a lab spec with the given sites on block B and loads it.
func Spec(t testing.TB, block int, sites ...string) *cluster.Spec {
	t.Helper()
	return SpecWith(t, block, "", sites...)
}

// SpecWith is Spec with extra top-level YAML (e.g. a failover section).
func SpecWith(t testing.TB, block int, extra string, sites ...string) *cluster.Spec {
	t.Helper()
	return SpecWithDNS(t, block, cluster.DNSProviderRFC2136, extra, sites...)
}

// SpecWithDNS is SpecWith with the cluster DNS of dns.provider (powerdns:
// a PowerDNS primary whose API the controller writes).
func SpecWithDNS(t testing.TB, block int, provider, extra string, sites ...string) *cluster.Spec {
	t.Helper()
	testenv.Integration(t, Tools...)
	if os.Geteuid() != 0 {
		t.Fatal("lab tests need root (loopback addresses, ports 53 and 443)")
	}
	// A 0700 directory, as a home directory is: every lab test runs where
	// a user who cloned into ~ would (issue 15, item 0).
	dir := t.TempDir()
	if fi, err := os.Stat(filepath.Dir(dir)); err != nil || fi.Mode().Perm()&0o077 != 0 {
		t.Fatalf("test directory %s: want mode 0700 like a home directory, have %v (%v)", filepath.Dir(dir), fi.Mode().Perm(), err)
	}
	text := fmt.Sprintf("name: t\ndns:\n  provider: "+provider+"\n  servers:\n    - {name: primary, address: 127.0.%d.2:53, role: primary}\n"+
		"    - {name: secondary, address: 127.0.%d.3:53, role: secondary}\nsites:\n", block, block)
	for i, s := range sites {
		text += fmt.Sprintf("  - {name: %s, address: 127.0.%d.1, serviceNetwork: 127.0.%d.0/24}\n", s, block+1+i, block+1+i)
	}
	text += extra
	path := filepath.Join(dir, cluster.DefaultFile)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	spec, err := cluster.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

var (
	buildOnce sync.Once
	built     string
	buildErr  error
)

// CairnBinary builds the CLI once per test binary (the lab starts it for
// its HTTP fronts and supervisor).
func CairnBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		// One directory per test process (cairn and cairn-front, which
		// cairn finds next to itself); those of ended processes go.
		base := filepath.Join(os.TempDir(), "cairn-test-bin")
		if old, _ := filepath.Glob(filepath.Join(base, "*")); len(old) > 0 {
			for _, o := range old {
				var pid int
				if _, err := fmt.Sscanf(strings.TrimPrefix(filepath.Base(o), "cairn-"), "%d", &pid); err == nil {
					if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
						os.RemoveAll(o)
					}
				}
			}
		}
		dir := filepath.Join(base, fmt.Sprint(os.Getpid()))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			buildErr = err
			return
		}
		built = filepath.Join(dir, "cairn")
		// make test builds them once (CAIRN_TEST_PREBUILT=bin) rather
		// than every test process linking its own: each is copied here,
		// where every user the lab runs processes as can execute it.
		prebuilt := os.Getenv("CAIRN_TEST_PREBUILT")
		for _, b := range []string{"cairn", "cairn-front"} {
			if prebuilt != "" {
				exe, err := os.ReadFile(filepath.Join(prebuilt, b))
				if err == nil {
					err = os.WriteFile(filepath.Join(dir, b), exe, 0o755)
				}
				if err != nil {
					buildErr = fmt.Errorf("CAIRN_TEST_PREBUILT: %w (make build makes them; unset it to build here)", err)
					return
				}
				continue
			}
			if out, err := exec.Command("go", "build", "-o", filepath.Join(dir, b), "github.com/cairn-pki/cairn/cmd/"+b).CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("build %s: %v\n%s", b, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return built
}

// Log writes progress lines into the test log, except a teardown's
// per-process "stopped" and per-host "removed" lines, a start's
// per-process "ready" lines (a lab's start is ninety of them) and
// Terraform's plan and init chatter (an apply's plan is 150 lines): CI
// shows the first and the last lines of a failed run, and a failure's
// message must stay among them.
type Log struct{ T testing.TB }

var quietLine = regexp.MustCompile(`^  (stopped |removed client host |\S+/\S+ +pid \d+ +ready in )|` +
	// Terraform: the plan's body (indented resources and outputs, their
	// braces), its preamble and init's lines, its version JSON.
	`^\s*$|^\s{4,}|^\s*([-+~] |# \S+ (will|must) be |[}\]{]|"(terraform_version|platform|provider_selections|terraform_outdated)")|` +
	`^(Terraform (used|will perform|has been successfully)|plan\. Resource actions|Initializing |- terraform\.io|Changes to Outputs:)`)

func (w Log) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		if !quietLine.MatchString(line) {
			w.T.Log(line)
		}
	}
	return len(p), nil
}

// ReadCert reads a PEM certificate file.
func ReadCert(t testing.TB, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("%s: no PEM", path)
	}
	return ParseCert(t, block.Bytes)
}

// ParseCert parses a DER certificate.
func ParseCert(t testing.TB, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// ACMEClient is a Go ACME client of site i of a lab, addressed directly
// (its address, the ACME name as TLS name), trusting the lab's root and
// proving DNS-01 with the clients' shared key at the cluster DNS primary.
func ACMEClient(t testing.TB, spec *cluster.Spec, i int, rootCertFile, clientKeyFile, primary string) *acmeclient.Client {
	t.Helper()
	key, err := rfc2136.ReadKey(clientKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ReadCert(t, rootCertFile))
	s := spec.Sites[i]
	c, err := acmeclient.New(acmeclient.Options{
		DirectoryURL: "https://" + spec.ACME.Name + "/directory", Roots: pool, ServerName: spec.ACME.Name,
		DialAddr: net.JoinHostPort(s.Address, strconv.Itoa(spec.ACME.HTTPSPort)),
		DNS:      acmeclient.DNSUpdater{Server: primary, Zone: spec.ACME.Zone, Key: key},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// Run runs a client (certbot, lego, …) with env for at most 3 minutes and
// returns its combined output.
func Run(env []string, argv []string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// FrontMetrics is the /metrics text of the ACME front whose site bundle
// is siteDir (lab.Lab.SiteDir): its config names the listener.
func FrontMetrics(t testing.TB, siteDir string) string {
	t.Helper()
	var c struct {
		MetricsListen string `json:"metricsListen"`
	}
	b, err := os.ReadFile(filepath.Join(siteDir, "etc", "acme-front.json"))
	if err == nil {
		err = json.Unmarshal(b, &c)
	}
	if err != nil || c.MetricsListen == "" {
		t.Fatalf("%s: the front's metrics listener: %v", siteDir, err)
	}
	resp, err := http.Get("http://" + c.MetricsListen + "/metrics")
	if err != nil {
		t.Fatalf("%s: front metrics: %v", siteDir, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

// Sample is the value of the first series in a /metrics text whose line
// starts with prefix (0 if none).
func Sample(text, prefix string) float64 {
	for _, line := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(line, prefix); ok {
			v, _ := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return v
		}
	}
	return 0
}
