package site

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/letsencrypt/boulder/config"
	"github.com/letsencrypt/boulder/issuance"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/intermediates"
	"github.com/cairn-pki/cairn/internal/acmefront"
	"github.com/cairn-pki/cairn/internal/boulderbin"
	"github.com/cairn-pki/cairn/internal/fsutil"
	"github.com/cairn-pki/cairn/internal/labtest"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// softPKI stands in for the cluster PKI with software keys and fixed
// subjects (so NameIDs, and the golden files, are stable).
type softPKI struct {
	dir      string
	root     *x509.Certificate
	rootKey  crypto.Signer
	issuers  map[string][]intermediates.SiteIssuer
	infra    *x509.Certificate
	infraKey crypto.Signer
}

func newSoftPKI(t *testing.T, spec *cluster.Spec) *softPKI {
	t.Helper()
	if spec.Dir == "" {
		spec.Dir = t.TempDir() // cluster-level secrets (database CA, passwords)
	}
	dir := t.TempDir()
	p := &softPKI{dir: dir, issuers: map[string][]intermediates.SiteIssuer{}}
	p.rootKey, _ = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p.root = p.sign(t, "test Root X1", p.rootKey.Public(), nil, nil)
	writePEM(t, filepath.Join(dir, "root.pem"), p.root.Raw)
	p.infraKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p.infra = p.sign(t, "test Infrastructure I1", p.infraKey.Public(), p.root, p.rootKey)
	for _, s := range spec.Sites {
		for _, kt := range []string{"ecdsa-p384", "rsa-2048"} {
			var pub crypto.PublicKey
			letter := "E"
			if kt == "rsa-2048" {
				k, _ := rsa.GenerateKey(rand.Reader, 2048)
				pub, letter = k.Public(), "R"
			} else {
				k, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
				pub = k.Public()
			}
			c := p.sign(t, "test "+s.Name+" "+letter+"1", pub, p.root, p.rootKey)
			file := filepath.Join(dir, s.Name+"-"+strings.ToLower(letter)+"1.cert.pem")
			writePEM(t, file, c.Raw)
			ic, _ := issuance.NewCertificate(c)
			p.issuers[s.Name] = append(p.issuers[s.Name], intermediates.SiteIssuer{Label: s.Name + "-" + strings.ToLower(letter) + "1",
				KeyType: kt, Generation: 1, CertFile: file, NameID: int64(ic.NameID()), Current: true})
		}
	}
	os.WriteFile(filepath.Join(dir, "pin"), []byte("1234\n"), 0o600)
	return p
}

func (p *softPKI) sign(t *testing.T, cn string, pub crypto.PublicKey, parent *x509.Certificate, key crypto.Signer) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature}
	if parent == nil {
		parent, key = tmpl, p.rootKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c
}

func writePEM(t *testing.T, path string, der []byte) {
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (p *softPKI) SiteIssuers(site string) ([]intermediates.SiteIssuer, error) {
	return p.issuers[site], nil
}
func (p *softPKI) SiteToken(site string) (intermediates.HSMToken, error) {
	return intermediates.HSMToken{Module: cluster.DefaultSoftHSMLib, Label: "test-" + site, PINFile: filepath.Join(p.dir, "pin"),
		SoftHSMTokenDir: "/cairn/pki/sites/" + site + "/softhsm/tokens"}, nil
}
func (p *softPKI) RootCertFile() string { return filepath.Join(p.dir, "root.pem") }
func (p *softPKI) IssueInfrastructureCert(_ context.Context, pub crypto.PublicKey, cn string, dnsNames []string, ips []net.IP, validity time.Duration) ([]byte, error) {
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(validity), DNSNames: dnsNames, IPAddresses: ips,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.infra, pub, p.infraKey)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// schemaDir fakes Boulder's sa/db directory.
func schemaDir(t *testing.T) string {
	d := t.TempDir()
	os.MkdirAll(filepath.Join(d, "sa", "db"), 0o755)
	for _, f := range []string{"01-boulder_sa.sql", "01-incidents_sa.sql"} {
		os.WriteFile(filepath.Join(d, "sa", "db", f), []byte("CREATE TABLE x (id int);\n"), 0o644)
	}
	return d
}

func render(t *testing.T, spec *cluster.Spec, pki *softPKI, i int, out string) *Bundle {
	t.Helper()
	b, err := Render(context.Background(), Options{Spec: spec, PKI: pki, Index: i, Out: out, Root: "/cairn/sites/" + spec.Sites[i].Name,
		SchemaDir: schemaDir(t), Now: time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Golden files: every non-secret config of site a, with values that are
// random per render (NameIDs of the test PKI's keys are not: subjects are
// fixed) masked.
var goldenFiles = []string{"bundle.json", "etc/sa.json", "etc/ca.json", "etc/ra.json", "etc/va.json", "etc/rva1.json",
	"etc/publisher.json", "etc/nonce.json", "etc/wfe2.json", "etc/crl-storer.json", "etc/crl-updater.json", "etc/agent.json",
	"etc/my.cnf", "etc/named.conf", "etc/a.boulder.internal.zone", "etc/ident-policy.yaml", "etc/http-front.json", "etc/acme-front.json", "etc/softhsm2.conf", "etc/admin.json"}

func TestRenderGolden(t *testing.T) {
	spec := cluster.Default([]string{"a", "b", "c"})
	pki := newSoftPKI(t, spec)
	out := t.TempDir()
	b := render(t, spec, pki, 0, out)
	for _, f := range goldenFiles {
		got, err := os.ReadFile(filepath.Join(out, f))
		if err != nil {
			t.Fatal(err)
		}
		// The generation digests certificates made with random keys.
		got = bytes.ReplaceAll(got, []byte(`"`+b.Generation+`"`), []byte(`"GENERATION"`))
		golden := filepath.Join("testdata", "golden", strings.ReplaceAll(f, "/", "_"))
		if *update {
			os.MkdirAll(filepath.Dir(golden), 0o755)
			os.WriteFile(golden, got, 0o644)
			continue
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("%v (run go test ./site -run Golden -update)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from %s (re-run with -update if intended)", f, golden)
		}
	}
}

func TestRenderIsIdempotent(t *testing.T) {
	spec := cluster.Default([]string{"a", "b"})
	pki := newSoftPKI(t, spec)
	out := t.TempDir()
	b1 := render(t, spec, pki, 1, out)
	first := snapshot(t, out)
	b2 := render(t, spec, pki, 1, out)
	second := snapshot(t, out)
	if b1.Generation == "" || b1.Generation != b2.Generation || b1.BoulderVersion != boulderbin.Version {
		t.Errorf("generation %q then %q, Boulder %q", b1.Generation, b2.Generation, b1.BoulderVersion)
	}
	// A change of what the site runs is a new generation, and the ACME
	// front carries it.
	spec.ACME.CAAIdentity = "ca2." + spec.ACME.Zone
	b3 := render(t, spec, pki, 1, t.TempDir())
	if b3.Generation == b1.Generation {
		t.Errorf("a changed CAA identity kept generation %s", b1.Generation)
	}
	front, _ := os.ReadFile(filepath.Join(out, "etc", "acme-front.json"))
	if !strings.Contains(string(front), `"bundle": "`+b2.Generation+`"`) {
		t.Errorf("acme-front.json does not carry generation %s:\n%s", b2.Generation, front)
	}
	for f, h := range first {
		if second[f] != h {
			t.Errorf("%s changed on the second render", f)
		}
	}
	if len(first) != len(second) {
		t.Errorf("file count %d -> %d", len(first), len(second))
	}
	// Secrets are 0600 in a 0700 directory.
	filepath.WalkDir(filepath.Join(out, "secrets"), func(p string, d fs.DirEntry, err error) error {
		info, _ := d.Info()
		if d.IsDir() && info.Mode().Perm() != 0o700 || !d.IsDir() && info.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %o", p, info.Mode().Perm())
		}
		return nil
	})
	// No secret appears outside secrets/ (nor in the bundle manifest).
	var secrets []string
	for _, f := range []string{"redis.pw", "db_sa.pw", "nonce_hmac.key"} {
		b, _ := os.ReadFile(filepath.Join(out, "secrets", f))
		secrets = append(secrets, strings.TrimSpace(string(b)))
	}
	filepath.WalkDir(out, func(p string, d fs.DirEntry, err error) error {
		if d.IsDir() || strings.Contains(p, "/secrets/") || strings.Contains(p, "/ipki/") {
			return nil
		}
		b, _ := os.ReadFile(p)
		for _, s := range secrets {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("a secret appears in %s", p)
			}
		}
		return nil
	})
}

func snapshot(t *testing.T, dir string) map[string]string {
	m := map[string]string{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := os.ReadFile(p)
			m[p] = string(b)
		}
		return nil
	})
	return m
}

// Two sites never collide: no address:port, serial prefix, nonce key,
// internal CA or account ID residue is shared.
func TestSitesDoNotCollide(t *testing.T) {
	spec := cluster.Default([]string{"a", "b", "c"})
	pki := newSoftPKI(t, spec)
	listens := map[string]string{}
	nonceKeys := map[string]string{}
	cas := map[string]string{}
	var offsets []string
	for i, s := range spec.Sites {
		out := t.TempDir()
		b := render(t, spec, pki, i, out)
		for _, p := range b.Processes {
			if other, dup := listens[p.Listen]; dup {
				t.Errorf("%s/%s and %s both listen on %s", s.Name, p.Name, other, p.Listen)
			}
			listens[p.Listen] = s.Name + "/" + p.Name
		}
		// Every debug and gRPC address inside the site's configs is unique.
		seen := map[string]string{}
		for _, f := range []string{"sa", "ca", "ra", "va", "rva1", "rva2", "rva3", "publisher", "nonce", "wfe2", "crl-storer", "crl-updater"} {
			raw, _ := os.ReadFile(filepath.Join(out, "etc", f+".json"))
			for _, m := range regexp.MustCompile(`"(?:DebugAddr|address|ListenAddress|TLSListenAddress)": "([^"]+)"`).FindAllStringSubmatch(string(raw), -1) {
				if other, dup := seen[m[1]]; dup {
					t.Errorf("site %s: %s used by %s and %s", s.Name, m[1], other, f)
				}
				seen[m[1]] = f
			}
		}
		// One nonce key for the cluster (every WFE derives every site's
		// nonce prefix from it), each site's nonce service in every
		// site's SRV records, and the peers' internal CAs in peers.pem
		// (its own first).
		k, _ := os.ReadFile(filepath.Join(out, "secrets", "nonce_hmac.key"))
		nonceKeys[string(k)] = s.Name
		ca, _ := os.ReadFile(filepath.Join(out, "ipki", "ca.pem"))
		if other, dup := cas[string(ca)]; dup {
			t.Errorf("sites %s and %s share an internal CA", s.Name, other)
		}
		cas[string(ca)] = s.Name
		peers, _ := os.ReadFile(filepath.Join(out, "ipki", "peers.pem"))
		if !bytes.HasPrefix(peers, ca) || bytes.Count(peers, []byte("BEGIN CERTIFICATE")) != len(spec.Sites) {
			t.Errorf("site %s: peers.pem does not start with its CA or does not hold %d CAs", s.Name, len(spec.Sites))
		}
		zone, _ := os.ReadFile(filepath.Join(out, "etc", s.Name+".boulder.internal.zone"))
		for _, o := range spec.Sites {
			if !regexp.MustCompile(`(?m)^nonce\d+ +A +` + regexp.QuoteMeta(o.Address) + `$`).Match(zone) {
				t.Errorf("site %s: its service zone has no nonce target for site %s (%s):\n%s", s.Name, o.Name, o.Address, zone)
			}
		}
		cnf, _ := os.ReadFile(filepath.Join(out, "etc", "my.cnf"))
		offsets = append(offsets, regexp.MustCompile(`auto_increment_offset=(\d+)`).FindStringSubmatch(string(cnf))[1])
		var cfg map[string]map[string]any
		raw, _ := os.ReadFile(filepath.Join(out, "etc", "ca.json"))
		json.Unmarshal(raw, &cfg)
		if got := cfg["CA"]["SerialPrefixHex"]; got != s.SerialPrefix.Hex() {
			t.Errorf("site %s serial prefix %v", s.Name, got)
		}
	}
	if strings.Join(offsets, ",") != "1,2,3" {
		t.Errorf("auto_increment offsets %v", offsets)
	}
	if len(nonceKeys) != 1 {
		t.Errorf("%d nonce keys for %d sites, want the cluster's one", len(nonceKeys), len(spec.Sites))
	}
}

func TestBoulderValidatorRefusesBadConfigs(t *testing.T) {
	spec := cluster.Default([]string{"a"})
	if err := Check(spec); err != nil {
		t.Fatalf("default spec: %v", err)
	}
	spec.ACME.CAAIdentity = "not a domain"
	err := Check(spec)
	if err == nil || !strings.Contains(err.Error(), "Boulder would refuse") || !strings.Contains(err.Error(), "DirectoryCAAIdentity") {
		t.Fatalf("bad CAA identity: %v", err)
	}
}

func TestPlainEncodesDurationsAsStrings(t *testing.T) {
	var c struct {
		D dur2
	}
	c.D.X = dur(90 * time.Second)
	b, _ := json.Marshal(plain(reflectValue(c)))
	if string(b) != `{"D":{"X":"1m30s"}}` {
		t.Errorf("got %s", b)
	}
}

type dur2 struct{ X config.Duration }

func reflectValue(v any) reflect.Value { return reflect.ValueOf(v) }

func TestExternalCRLStore(t *testing.T) {
	spec := cluster.Default([]string{"a"})
	spec.Dir = t.TempDir()
	creds := filepath.Join(spec.Dir, "s3.ini")
	os.WriteFile(creds, []byte("[default]\naws_access_key_id=AK\naws_secret_access_key=SK"), 0o600)
	spec.Sites[0].CRLStore = cluster.CRLStore{Endpoint: "https://minio.example.net:9000", Bucket: "cairn-crls", Region: "eu-1", CredentialsFile: "s3.ini"}
	if errs := spec.Validate(); len(errs) > 0 {
		t.Fatal(errs)
	}
	out := t.TempDir()
	b := render(t, spec, newSoftPKI(t, spec), 0, out)
	for _, p := range b.Processes {
		if p.Name == "s3-test-srv" || p.Name == "crl-http" {
			t.Errorf("%s started with an external store", p.Name)
		}
	}
	raw, _ := os.ReadFile(filepath.Join(out, "etc", "crl-storer.json"))
	if !strings.Contains(string(raw), `"S3Endpoint": "https://minio.example.net:9000"`) || !strings.Contains(string(raw), `"S3Bucket": "cairn-crls"`) {
		t.Errorf("crl-storer config:\n%s", raw)
	}
	ca, _ := os.ReadFile(filepath.Join(out, "etc", "ca.json"))
	if !strings.Contains(string(ca), `"CRLURLBase": "http://crl.a.lab.home.arpa/cairn-crls/`) {
		t.Errorf("CRL URL base not under the bucket")
	}
	if got, _ := os.ReadFile(filepath.Join(out, "secrets", "aws_creds.ini")); !strings.Contains(string(got), "aws_secret_access_key=SK") {
		t.Errorf("credentials not copied: %q", got)
	}
	os.Chmod(creds, 0o644)
	_, err := Render(context.Background(), Options{Spec: spec, PKI: newSoftPKI(t, spec), Out: t.TempDir(), SchemaDir: schemaDir(t)})
	if err == nil || !strings.Contains(err.Error(), "crlStore.credentialsFile") {
		t.Errorf("world-readable credentials accepted: %v", err)
	}
}

// Account replication: site a pulls only the accounts table from b and c,
// as a distinct user per peer tied to the peer's certificate; "off"
// renders neither a binary log nor connections.
func TestRenderReplication(t *testing.T) {
	spec := cluster.Default([]string{"a", "b", "c"})
	pki := newSoftPKI(t, spec)
	out := t.TempDir()
	render(t, spec, pki, 0, out)
	sqlText, err := os.ReadFile(filepath.Join(out, "secrets", "db-replication.sql"))
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Join(out, "secrets", "db-replication.sql")); fi.Mode().Perm() != 0o600 {
		t.Errorf("db-replication.sql mode %v, want 0600 (it holds passwords)", fi.Mode().Perm())
	}
	sql := string(sqlText)
	for _, want := range []string{
		"CREATE USER IF NOT EXISTS 'repl_b'@'127.0.32.1'", "REQUIRE SUBJECT '/CN=cairn-db-b' AND ISSUER '/CN=lab database replication CA'",
		"GRANT REPLICATION SLAVE ON *.* TO 'repl_c'@'127.0.0.1'",
		"CHANGE MASTER 'b' TO MASTER_HOST='127.0.32.1', MASTER_PORT=3306, MASTER_USER='repl_a'", "DO_DOMAIN_IDS=(2)",
		"CHANGE MASTER 'c' TO MASTER_HOST='127.0.33.1'", "DO_DOMAIN_IDS=(3)", "MASTER_SSL_VERIFY_SERVER_CERT=1", "START ALL SLAVES",
		"GRANT SELECT ON boulder_sa.registrations TO 'cairn_monitor'@'%'",
		// The monitor is bound to its client certificate, and reads the
		// count of refused foreign rows.
		"CREATE USER IF NOT EXISTS 'cairn_monitor'@'%' IDENTIFIED BY", "REQUIRE SUBJECT '/CN=cairn-monitor' AND ISSUER '/CN=lab database replication CA'",
		"GRANT SELECT ON cairn.foreign_writes TO 'cairn_monitor'@'%'",
		// Every write to the accounts table, local or replicated, passes
		// the ownership triggers.
		"CREATE OR REPLACE TRIGGER boulder_sa.cairn_owned_insert BEFORE INSERT ON boulder_sa.registrations FOR EACH ROW\n" +
			"  IF @@session.gtid_domain_id <> @@global.gtid_domain_id AND NOT (NEW.id % 128 = @@session.gtid_domain_id) THEN CALL cairn.refuse_foreign_write('boulder_sa.registrations', NEW.id, 'insert'); END IF//",
		"BEFORE UPDATE ON boulder_sa.registrations FOR EACH ROW\n" +
			"  IF @@session.gtid_domain_id <> @@global.gtid_domain_id AND NOT ((OLD.id % 128 = @@session.gtid_domain_id) AND (NEW.id % 128 = @@session.gtid_domain_id)) THEN",
		"BEFORE DELETE ON boulder_sa.registrations FOR EACH ROW\n" +
			"  IF @@session.gtid_domain_id <> @@global.gtid_domain_id AND NOT (OLD.id % 128 = @@session.gtid_domain_id) THEN CALL cairn.refuse_foreign_write('boulder_sa.registrations', OLD.id, 'delete')",
		// The EAB tables replicate under the same rule; a binding's origin
		// is its account's.
		"CREATE OR REPLACE TRIGGER cairn.eab_bindings_owned_insert BEFORE INSERT ON cairn.eab_bindings FOR EACH ROW\n" +
			"  IF @@session.gtid_domain_id <> @@global.gtid_domain_id AND NOT (NEW.account_id % 128 = @@session.gtid_domain_id) THEN",
		"CREATE OR REPLACE TRIGGER cairn.eab_keys_owned_update", "CREATE OR REPLACE TRIGGER cairn.eab_revocations_owned_delete",
		// The front reads keys and two columns of the accounts, and only
		// inserts bindings; the administrator inserts (and a seed copies) rows.
		"GRANT SELECT (id, jwk_sha256) ON boulder_sa.registrations TO 'cairn_front'@'127.0.0.1'",
		"GRANT SELECT, INSERT ON cairn.eab_bindings TO 'cairn_front'@'127.0.31.",
		"GRANT SELECT, INSERT ON cairn.eab_keys TO 'cairn_admin'@'%'", "GRANT SELECT, INSERT ON cairn.eab_bindings TO 'cairn_admin'@'%'",
		"SIGNAL SQLSTATE '45000' SET MYSQL_ERRNO = 1644",
	} {
		if !strings.Contains(sql, want) {
			t.Errorf("db-replication.sql lacks %q", want)
		}
	}
	if strings.Contains(sql, "'repl_a'@") {
		t.Error("site a must not create a user for itself")
	}
	if strings.Contains(sql, "REQUIRE SSL") {
		t.Error("a database user is bound to TLS only, not to a certificate")
	}
	cnf, err := os.ReadFile(filepath.Join(out, "etc", "my.cnf"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"slave_skip_errors=1062,1032,1644\n", "slave_run_triggers_for_rbr=ENFORCE\n"} {
		if !strings.Contains(string(cnf), want) {
			t.Errorf("my.cnf lacks %q", want)
		}
	}
	// The monitor's client certificate: the database CA's, clientAuth, its
	// key 0600.
	mCertFile, mKeyFile := MonitorTLSFiles(spec)
	mCert, _, err := readPair(mCertFile, mKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(mKeyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("monitor key %s: %v, %v", mKeyFile, fi.Mode(), err)
	}
	if mCert.Subject.CommonName != MonitorCertCN || !slices.Contains(mCert.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		t.Errorf("monitor certificate: CN %q, EKU %v", mCert.Subject.CommonName, mCert.ExtKeyUsage)
	}
	// The replica's certificate is a client's too, and chains to the CA the
	// peers trust.
	cert, _, err := readPair(filepath.Join(out, "tls", "db.pem"), filepath.Join(out, "tls", "db.key"))
	if err != nil {
		t.Fatal(err)
	}
	ca, _, err := readPair(filepath.Join(spec.Dir, DBCADir, "ca.pem"), filepath.Join(spec.Dir, DBCADir, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	if mCert.CheckSignatureFrom(ca) != nil {
		t.Error("the monitor certificate is not the database CA's")
	}
	if cert.CheckSignatureFrom(ca) != nil || !slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageClientAuth) || cert.Subject.CommonName != "cairn-db-a" {
		t.Errorf("db certificate: CN %q, EKU %v", cert.Subject.CommonName, cert.ExtKeyUsage)
	}

	spec.Accounts.Replication = cluster.ReplicationOff
	out = t.TempDir()
	render(t, spec, pki, 0, out)
	cnf, _ = os.ReadFile(filepath.Join(out, "etc", "my.cnf"))
	sqlText, _ = os.ReadFile(filepath.Join(out, "secrets", "db-replication.sql"))
	if strings.Contains(string(cnf), "log_bin") || strings.Contains(string(cnf), "replicate_do_table") || strings.Contains(string(sqlText), "CHANGE MASTER") {
		t.Errorf("replication off still replicates:\n%s\n%s", cnf, sqlText)
	}
}

// The lab's Go processes collect garbage harder (LabGOGC) and run on one
// core each (LabGOMAXPROCS); a bundle for a host keeps Go's defaults.
func TestLabGoSettingsOnlyInPlace(t *testing.T) {
	spec := cluster.Default([]string{"a", "b"})
	spec.Dir = t.TempDir()
	pki := newSoftPKI(t, spec)
	envOf := func(b *Bundle, name string) []string {
		for _, p := range b.Processes {
			if p.Name == name {
				return p.Env
			}
		}
		t.Fatalf("no process %s", name)
		return nil
	}
	host := render(t, spec, pki, 0, t.TempDir())
	lab, err := Render(context.Background(), Options{Spec: spec, PKI: pki, Index: 0, Out: t.TempDir(), SchemaDir: schemaDir(t)})
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range []string{LabGOGC, LabGOMAXPROCS} {
		for _, name := range []string{"wfe", "sa", ACMEFront, "ct-test-srv"} {
			if !slices.Contains(envOf(lab, name), kv) {
				t.Errorf("lab %s: env %v lacks %s", name, envOf(lab, name), kv)
			}
			if slices.Contains(envOf(host, name), kv) {
				t.Errorf("host bundle %s: env %v has %s", name, envOf(host, name), kv)
			}
		}
		if slices.Contains(envOf(lab, "mariadb"), kv) {
			t.Errorf("mariadb is not a Go program, has %s", kv)
		}
	}
}

// The internal gRPC CA's key stays next to the spec (the rendering
// machine): the bundle has the CA certificate and the leaves only. A
// bundle rendered by an older cairn, with the key inside, keeps its CA
// (every leaf stays valid) and loses the key. Leaves live 90 days and a
// rotating render replaces every one of them under the same CA.
func TestInternalCAKeyStaysOffTheBundle(t *testing.T) {
	spec := cluster.Default([]string{"a", "b"})
	pki := newSoftPKI(t, spec)
	out := t.TempDir()
	render(t, spec, pki, 0, out)
	caDir := spec.Path(InternalCADir("a"))
	if err := filepath.WalkDir(out, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, "ca.key") {
			t.Errorf("the bundle holds a CA key: %s", p)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(caDir, "ca.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the internal CA key next to the spec: %v %v", err, fi)
	}
	caCert := func() *x509.Certificate { return labtest.ReadCert(t, filepath.Join(out, "ipki", "ca.pem")) }
	ca := caCert()
	if !bytes.Equal(ca.Raw, labtest.ReadCert(t, filepath.Join(caDir, "ca.pem")).Raw) {
		t.Fatal("the bundle's ipki/ca.pem is not the CA next to the spec")
	}
	leaves := map[string]*x509.Certificate{}
	for _, id := range append(slices.Clone(grpcIdentities), "redis", "doh", "agent") {
		name := id
		if slices.Contains(grpcIdentities, id) {
			name = id + ".boulder"
		}
		c := labtest.ReadCert(t, filepath.Join(out, "ipki", name, "cert.pem"))
		if err := c.CheckSignatureFrom(ca); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if life := c.NotAfter.Sub(c.NotBefore); life > leafValidity+time.Hour {
			t.Errorf("%s lives %s, want at most %s", name, life, leafValidity)
		}
		leaves[name] = c
	}
	controller := labtest.ReadCert(t, filepath.Join(spec.Path(ControllerAgentDir("a")), "cert.pem"))

	// An older bundle: the CA inside it, none next to the spec.
	old := t.TempDir()
	render(t, spec, pki, 0, old)
	oldCA := labtest.ReadCert(t, filepath.Join(caDir, "ca.pem"))
	for _, f := range []string{"ca.key", "ca.pem"} {
		b, err := os.ReadFile(filepath.Join(caDir, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(old, "ipki", f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.RemoveAll(caDir); err != nil {
		t.Fatal(err)
	}
	render(t, spec, pki, 0, old)
	if fsutil.Exists(filepath.Join(old, "ipki", "ca.key")) {
		t.Error("re-rendering an older bundle left the CA key in it")
	}
	if got := labtest.ReadCert(t, filepath.Join(caDir, "ca.pem")); !bytes.Equal(got.Raw, oldCA.Raw) {
		t.Error("re-rendering an older bundle made a new internal CA: its leaves (and peers' trust) would break")
	}

	// Rotation: every leaf new (new key), same CA, and the controller's
	// credential for the agent too.
	if _, err := Render(context.Background(), Options{Spec: spec, PKI: pki, Index: 0, Out: out, Root: "/cairn/sites/a",
		SchemaDir: schemaDir(t), Now: time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC), RotateInternal: true}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(caCert().Raw, ca.Raw) {
		t.Error("rotating the leaves changed the CA")
	}
	for name, c := range leaves {
		n := labtest.ReadCert(t, filepath.Join(out, "ipki", name, "cert.pem"))
		if n.SerialNumber.Cmp(c.SerialNumber) == 0 || bytes.Equal(n.RawSubjectPublicKeyInfo, c.RawSubjectPublicKeyInfo) {
			t.Errorf("%s was not rotated", name)
		}
	}
	if n := labtest.ReadCert(t, filepath.Join(spec.Path(ControllerAgentDir("a")), "cert.pem")); bytes.Equal(n.RawSubjectPublicKeyInfo, controller.RawSubjectPublicKeyInfo) {
		t.Error("the controller's agent credential was not rotated")
	}
}

// The spec's profiles reach every site alike: the CA's profiles (each
// with its validity) and its current issuers' lists, the RA's validation
// profiles and default, the WFE's directory.
func TestProfilesRenderedAlikeAtEverySite(t *testing.T) {
	spec := cluster.Default([]string{"a", "b"})
	spec.Profiles = []cluster.Profile{
		{Name: "tlsserver", Validity: cluster.Duration{Duration: 45 * 24 * time.Hour}, Description: "https://ca.example/tlsserver"},
		{Name: "shortlived", Validity: cluster.Duration{Duration: 6 * 24 * time.Hour}, Description: "6 days"},
		{Name: "hours", Validity: cluster.Duration{Duration: 12 * time.Hour}, Description: "12 hours"},
	}
	spec.ACME.DefaultProfile = "shortlived"
	if errs := spec.Validate(); len(errs) > 0 {
		t.Fatal(errs)
	}
	pki := newSoftPKI(t, spec)
	names := []string{"tlsserver", "shortlived", "hours"}
	var first string
	for i, s := range spec.Sites {
		out := t.TempDir()
		render(t, spec, pki, i, out)
		var ca struct {
			CA struct {
				Issuance struct {
					CertProfiles map[string]issuance.ProfileConfig
					Issuers      []struct{ Profiles []string }
				}
			}
		}
		var ra struct {
			RA struct {
				ValidationProfiles map[string]struct {
					MaxNames        int
					IdentifierTypes []string
				}
				DefaultProfileName string
			}
		}
		var wfe struct {
			WFE struct{ CertProfiles map[string]string }
		}
		readJSON(t, filepath.Join(out, "etc", "ca.json"), &ca)
		readJSON(t, filepath.Join(out, "etc", "ra.json"), &ra)
		readJSON(t, filepath.Join(out, "etc", "wfe2.json"), &wfe)
		for _, p := range spec.Profiles {
			cp, ok := ca.CA.Issuance.CertProfiles[p.Name]
			if !ok || cp.MaxValidityPeriod.Duration != p.Validity.Duration || cp.MaxValidityBackdate.Duration != cluster.ProfileBackdate || len(cp.IgnoredLints) == 0 {
				t.Errorf("site %s: CA profile %s = %+v, want validity %s", s.Name, p.Name, cp, p.Validity)
			}
			if vp, ok := ra.RA.ValidationProfiles[p.Name]; !ok || vp.MaxNames != 100 || !slices.Equal(vp.IdentifierTypes, []string{"dns"}) {
				t.Errorf("site %s: RA validation profile %s = %+v", s.Name, p.Name, vp)
			}
		}
		if len(ca.CA.Issuance.CertProfiles) != len(names) || len(ra.RA.ValidationProfiles) != len(names) {
			t.Errorf("site %s: CA has %d profiles, RA %d; want %d", s.Name, len(ca.CA.Issuance.CertProfiles), len(ra.RA.ValidationProfiles), len(names))
		}
		for j, is := range ca.CA.Issuance.Issuers {
			if !slices.Equal(is.Profiles, names) {
				t.Errorf("site %s: issuer %d profiles %v, want %v", s.Name, j, is.Profiles, names)
			}
		}
		if ra.RA.DefaultProfileName != "shortlived" {
			t.Errorf("site %s: RA default profile %q", s.Name, ra.RA.DefaultProfileName)
		}
		if !reflect.DeepEqual(wfe.WFE.CertProfiles, spec.ProfileDescriptions()) {
			t.Errorf("site %s: WFE advertises %v, want %v", s.Name, wfe.WFE.CertProfiles, spec.ProfileDescriptions())
		}
		got := fmt.Sprint(ca.CA.Issuance.CertProfiles, ra.RA, wfe.WFE)
		if i == 0 {
			first = got
		} else if got != first {
			t.Errorf("site %s renders its profiles unlike site %s:\n%s\n%s", s.Name, spec.Sites[0].Name, got, first)
		}
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// With eab.required the front gets the policy, the probes' account keys
// (which register without a binding) and its own database user.
func TestRenderEABPolicy(t *testing.T) {
	spec := cluster.Default([]string{"a", "b"})
	spec.EAB.Required = true
	spec.Policy.AllowedNames = []string{"*.Corp.Internal", "lab.home.arpa"}
	pki := newSoftPKI(t, spec)
	out := t.TempDir()
	render(t, spec, pki, 1, out)
	var front acmefront.Config
	if err := fsutil.ReadJSON(filepath.Join(out, "etc", "acme-front.json"), &front); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, s := range spec.Sites {
		k, err := ProbeAccountKey(spec, s.Name)
		if err != nil {
			t.Fatal(err)
		}
		d, _ := KeyDigest(k.Public())
		want = append(want, d)
	}
	if !front.EABRequired || !slices.Equal(front.AllowedNames, []string{"corp.internal", "lab.home.arpa"}) || front.SitePrefix != 2 ||
		!slices.Equal(front.ExemptKeys, want) || front.DB == nil || front.DB.User != FrontDBUser || front.DB.Addr != "127.0.32.10:3306" ||
		front.DB.PasswordFile != "/cairn/sites/b/secrets/db_cairn_front.pw" {
		t.Errorf("acme-front.json: %+v (db %+v), want exempt %v", front, front.DB, want)
	}
	if fi, err := os.Stat(filepath.Join(out, "secrets", "db_cairn_front.pw")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("front's database password: %v %v", fi, err)
	}
	// The password is in the SQL that makes the user, and nowhere else.
	pw, _ := fsutil.ReadSecret(filepath.Join(out, "secrets", "db_cairn_front.pw"))
	sql, _ := os.ReadFile(filepath.Join(out, "secrets", "db-replication.sql"))
	if !strings.Contains(string(sql), "CREATE USER IF NOT EXISTS 'cairn_front'@'127.0.32.10' IDENTIFIED BY '"+pw+"'") {
		t.Error("db-replication.sql does not make the front's user with its password")
	}
	if b, _ := os.ReadFile(filepath.Join(out, "etc", "acme-front.json")); strings.Contains(string(b), pw) {
		t.Error("the front's password is in its config")
	}
}

// With validation.resolvers, a site's BIND forwards the ACME zone to the
// cluster's primary and every other name to those resolvers; without,
// everything goes to the primary.
func TestRenderValidationResolvers(t *testing.T) {
	spec := cluster.Default([]string{"a", "b"})
	pki := newSoftPKI(t, spec)
	out := t.TempDir()
	render(t, spec, pki, 0, out)
	conf, _ := os.ReadFile(filepath.Join(out, "etc", "named.conf"))
	primary := strings.Replace(spec.PrimaryDNS().String(), ":", " port ", 1) + ";"
	if !strings.Contains(string(conf), "forwarders { "+primary+" };") || strings.Contains(string(conf), "type forward") {
		t.Errorf("without resolvers, named.conf must forward everything to the primary (%s):\n%s", primary, conf)
	}
	spec.Validation.Resolvers = []string{"10.0.0.53", "[fd00::53]:5353"}
	out = t.TempDir()
	render(t, spec, pki, 0, out)
	conf, _ = os.ReadFile(filepath.Join(out, "etc", "named.conf"))
	for _, want := range []string{"forwarders { 10.0.0.53 port 53; fd00::53 port 5353; };",
		fmt.Sprintf("zone %q { type forward; forward only; forwarders { %s }; };", spec.ACME.Zone, primary)} {
		if !strings.Contains(string(conf), want) {
			t.Errorf("named.conf lacks %q:\n%s", want, conf)
		}
	}
}
