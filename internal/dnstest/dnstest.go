// Package dnstest starts real authoritative DNS servers (BIND, Knot,
// PowerDNS) for integration tests: one zone holding an ACME name and its
// epoch record, updatable with one TSIG key, on a loopback address the
// test owns.
package dnstest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-pki/cairn/internal/powerdns"
	"github.com/cairn-pki/cairn/internal/rfc2136"
	"github.com/cairn-pki/cairn/internal/testenv"
)

// Zone is what every server serves.
type Zone struct {
	Zone, Name, EpochName string
	Initial               string // the name's first address
	// CRLName is another A RRset the controller's key may write (a CRL
	// host), served first with CRLInitial.
	CRLName    string
	CRLInitial []string
	Key        rfc2136.Key
}

// Default is the zone the tests use.
var Default = Zone{Zone: "ap.home.arpa", Name: "acme.ap.home.arpa", EpochName: "_cairn-epoch.acme.ap.home.arpa", Initial: "127.0.69.10",
	CRLName: "crl.ap.home.arpa", CRLInitial: []string{"127.0.69.40", "127.0.69.41"},
	Key: rfc2136.Key{Name: "ctl", Algorithm: "hmac-sha256", Secret: base64.StdEncoding.EncodeToString([]byte("a 32 byte secret for the tests!!"))}}

// InitialEpoch is the seed's epoch record.
const InitialEpoch = "epoch=0; site=a; controller=seed; reason=initial"

func (z Zone) file(ns string, serial int) string {
	s := fmt.Sprintf("$TTL 30\n$ORIGIN %[1]s.\n@ SOA ns1 h %[2]d 3600 600 86400 30\n@ NS ns1\nns1 A %[3]s\n%[4]s. A %[5]s\n%[6]s. TXT \"%[7]s\"\n",
		z.Zone, serial, ns, z.Name, z.Initial, z.EpochName, InitialEpoch)
	for _, a := range z.CRLInitial {
		s += fmt.Sprintf("%s. A %s\n", z.CRLName, a)
	}
	return s
}

// Loopback adds ip to lo for the test (taking over one a killed run left).
func Loopback(t *testing.T, ip string) {
	t.Helper()
	if out, err := exec.Command("ip", "addr", "add", ip+"/32", "dev", "lo").CombinedOutput(); err != nil && !strings.Contains(string(out), "already assigned") {
		t.Fatalf("ip addr add %s: %v %s", ip, err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "addr", "del", ip+"/32", "dev", "lo").Run() })
}

// Root fails the test unless it runs as root (loopback addresses, port 53).
func Root(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Integration(t)
		t.Fatal("needs root (loopback addresses, port 53)")
	}
}

// start runs argv until the test ends and waits until addr takes TCP.
func start(t *testing.T, addr, logName string, argv ...string) {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	logPath := filepath.Join(t.TempDir(), logName+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); logf.Close() })
	for range 400 {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	b, _ := os.ReadFile(logPath)
	t.Fatalf("%s did not listen on %s:\n%s", argv[0], addr, b)
}

// BIND serves z on ip:53 and returns that address.
func BIND(t *testing.T, ip string, z Zone) string {
	testenv.Integration(t, "named", "ip")
	Root(t)
	dir := t.TempDir()
	Loopback(t, ip)
	os.WriteFile(filepath.Join(dir, "zone"), []byte(z.file(ip, 1)), 0o644)
	crlGrant := ""
	if z.CRLName != "" {
		crlGrant = fmt.Sprintf(` grant "%s" name %s. A;`, z.Key.Name, z.CRLName)
	}
	conf := fmt.Sprintf(`key "%[1]s" { algorithm %[2]s; secret "%[3]s"; };
options { directory "%[4]s"; pid-file "%[4]s/named.pid"; session-keyfile "%[4]s/s.key"; listen-on port 53 { %[5]s; }; listen-on-v6 { none; };
  recursion no; dnssec-validation no; notify no; };
controls { };
zone "%[6]s" { type primary; file "%[4]s/zone"; update-policy { grant "%[1]s" name %[7]s. A; grant "%[1]s" name %[8]s. TXT;%[9]s }; };
`, z.Key.Name, z.Key.Algorithm, z.Key.Secret, dir, ip, z.Zone, z.Name, z.EpochName, crlGrant)
	os.WriteFile(filepath.Join(dir, "named.conf"), []byte(conf), 0o644)
	start(t, ip+":53", "named", "named", "-c", filepath.Join(dir, "named.conf"), "-g")
	return ip + ":53"
}

// Knot serves z on ip:53 and returns that address.
func Knot(t *testing.T, ip string, z Zone) string {
	testenv.Integration(t, "knotd", "ip")
	Root(t)
	dir := t.TempDir()
	Loopback(t, ip)
	os.WriteFile(filepath.Join(dir, z.Zone+".zone"), []byte(z.file(ip, 1)), 0o644)
	os.MkdirAll(filepath.Join(dir, "db"), 0o755)
	conf := fmt.Sprintf(`server:
  rundir: "%[1]s"
  listen: %[2]s@53
database:
  storage: "%[1]s/db"
key:
  - id: %[3]s
    algorithm: %[4]s
    secret: %[5]s
acl:
  - id: upd
    key: %[3]s
    action: update
template:
  - id: default
    storage: "%[1]s"
    zonefile-sync: -1
    journal-content: all
zone:
  - domain: %[6]s
    acl: upd
`, dir, ip, z.Key.Name, z.Key.Algorithm, z.Key.Secret, z.Zone)
	os.WriteFile(filepath.Join(dir, "knot.conf"), []byte(conf), 0o644)
	start(t, ip+":53", "knotd", "knotd", "-c", filepath.Join(dir, "knot.conf"))
	return ip + ":53"
}

// PowerDNSServer is a running PowerDNS Authoritative server.
type PowerDNSServer struct {
	DNS    string // ip:53
	API    string // http://ip:8081
	APIKey string
}

// PowerDNS serves z on ip:53 (gsqlite3), its API on ip:8081; the zone is
// created through the API with SOA-EDIT-API INCREASE.
func PowerDNS(t *testing.T, ip string, z Zone) PowerDNSServer {
	testenv.Integration(t, "pdns_server", "ip")
	Root(t)
	dir := t.TempDir()
	Loopback(t, ip)
	if err := powerdns.CreateDB(filepath.Join(dir, "pdns.sqlite3")); err != nil {
		t.Fatal(err)
	}
	key := base64.RawURLEncoding.EncodeToString([]byte(t.Name() + ip))
	conf := fmt.Sprintf(`launch=gsqlite3
gsqlite3-database=%[1]s/pdns.sqlite3
local-address=%[2]s
local-port=53
socket-dir=%[1]s
daemon=no
guardian=no
api=yes
api-key=%[3]s
webserver=yes
webserver-address=%[2]s
webserver-port=8081
webserver-allow-from=127.0.0.0/8
cache-ttl=0
query-cache-ttl=0
negquery-cache-ttl=0
security-poll-suffix=
`, dir, ip, key)
	os.WriteFile(filepath.Join(dir, "pdns.conf"), []byte(conf), 0o600)
	start(t, ip+":8081", "pdns", "pdns_server", "--config-dir="+dir)
	s := PowerDNSServer{DNS: ip + ":53", API: "http://" + ip + ":8081", APIKey: key}
	txt := func(v string) string { return `"` + v + `"` }
	body := map[string]any{"name": z.Zone + ".", "kind": "Native", "soa_edit_api": "INCREASE", "nameservers": []string{"ns1." + z.Zone + "."},
		"rrsets": []map[string]any{
			{"name": "ns1." + z.Zone + ".", "type": "A", "ttl": 30, "records": []map[string]any{{"content": ip}}},
			{"name": z.Name + ".", "type": "A", "ttl": 30, "records": []map[string]any{{"content": z.Initial}}},
			{"name": z.EpochName + ".", "type": "TXT", "ttl": 30, "records": []map[string]any{{"content": txt(InitialEpoch)}}},
		}}
	var crl []map[string]any
	for _, a := range z.CRLInitial {
		crl = append(crl, map[string]any{"content": a})
	}
	if len(crl) > 0 {
		body["rrsets"] = append(body["rrsets"].([]map[string]any), map[string]any{"name": z.CRLName + ".", "type": "A", "ttl": 30, "records": crl})
	}
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, s.API+"/api/v1/servers/localhost/zones", bytes.NewReader(b))
	req.Header.Set("X-API-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		msg, _ := io.ReadAll(resp.Body)
		t.Fatalf("PowerDNS: create zone: HTTP %d %s", resp.StatusCode, msg)
	}
	return s
}
