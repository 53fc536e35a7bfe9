package site

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/intermediates"
	"github.com/cairn-pki/cairn/internal/acmefront"
	"github.com/cairn-pki/cairn/internal/boulderbin"
	"github.com/cairn-pki/cairn/internal/boulderbin/addition"
	"github.com/cairn-pki/cairn/internal/fsutil"
	"github.com/cairn-pki/cairn/internal/namescope"
)

// PKISource is what rendering needs from the cluster PKI
// (*intermediates.PKI in production, a software stand-in in unit tests).
type PKISource interface {
	SiteIssuers(site string) ([]intermediates.SiteIssuer, error)
	SiteToken(site string) (intermediates.HSMToken, error)
	RootCertFile() string
	IssueInfrastructureCert(ctx context.Context, pub crypto.PublicKey, cn string, dnsNames []string, ips []net.IP, validity time.Duration) ([]byte, error)
}

// Options for rendering one site.
type Options struct {
	Spec  *cluster.Spec
	PKI   PKISource
	Index int // site index in Spec.Sites
	// Out is where the bundle is written.
	Out string
	// Root is where the bundle will live on the target host; every path in
	// the configs uses it. Empty means Out (the lab).
	Root string
	// TokenDir is where the site's SoftHSM tokens are on the target. Empty
	// means the cluster PKI's own token directory (the lab).
	TokenDir string
	// SchemaDir holds Boulder's sa/db/*.sql at the pinned version (a site
	// on another release reads that release's own).
	SchemaDir string
	// BoulderVersion is the Boulder release the site runs. Empty keeps
	// the one its bundle at Out records (a site stays on its release
	// until `cairn upgrade apply --to` moves it), else the pinned one.
	// Configs are rendered from the pinned release's structs: another
	// release must accept them (its components validate their configs at
	// start, and the upgrade gate proves it issues).
	BoulderVersion string
	// Lab: the bundle runs on this machine as part of the lab (implied
	// when Root is empty; set it when rendering a lab site elsewhere, e.g.
	// to plan an upgrade).
	Lab bool
	// RotateInternal makes every internal certificate again (new keys,
	// full validity), whatever is left of the old ones.
	RotateInternal bool
	Now            time.Time
}

// Bundle is the rendered site: what to start, in which order, and how to
// tell that each part is ready. It is written as bundle.json.
type Bundle struct {
	Site         string `json:"site"`
	Root         string `json:"root"`
	Public       string `json:"publicAddress"`
	DirectoryURL string `json:"directoryURL"`
	SiteURL      string `json:"siteDirectoryURL"`
	SiteName     string `json:"siteName"`
	// LoopbackAddresses must exist on an interface before BIND starts
	// (BIND binds only addresses it sees; Go services bind any 127/8).
	BindAddresses []string  `json:"bindAddresses"`
	Database      Database  `json:"database"`
	Processes     []Process `json:"processes"`
	// BoulderVersion is the Boulder release the bundle's configs are for;
	// Generation names the rendered bundle (configs, processes, version).
	BoulderVersion string `json:"boulderVersion"`
	Generation     string `json:"generation"`
}

// Database says how to initialise the site's MariaDB.
type Database struct {
	Config    string   `json:"config"` // my.cnf
	DataDir   string   `json:"dataDir"`
	SchemaSQL []string `json:"schemaSQL"` // run once, in order, as root over the socket
	UsersSQL  string   `json:"usersSQL"`  // run on every start (idempotent; 0600)
	// ReplicationSQL (users for peers and cairn, connections to peers) is
	// run on every start after UsersSQL (idempotent; 0600).
	ReplicationSQL string `json:"replicationSQL"`
	// Connections are the replication connections the site must have
	// (one per peer; none when accounts do not replicate): any other is
	// removed when the database is loaded.
	Connections []string `json:"connections,omitempty"`
	// TLSKey is the database's TLS key: MariaDB's own user must read it.
	TLSKey     string `json:"tlsKey"`
	CheckTable string `json:"checkTable"` // exists once the schema is loaded
}

// Process is one long-running part of the site.
type Process struct {
	Name    string   `json:"name"`
	Program string   `json:"program"` // boulder, ct-test-srv, s3-test-srv, mariadbd, redis-server, named, cairn
	Args    []string `json:"args"`
	Env     []string `json:"env,omitempty"`
	// UnsetEnv names variables to remove (crl-storer fails when
	// AWS_CA_BUNDLE is set).
	UnsetEnv []string `json:"unsetEnv,omitempty"`
	// Ready is "tcp:IP:port" or "unix:PATH": the process is up once that
	// accepts.
	Ready string `json:"ready"`
	// Listen is the address clients use (for status pages).
	Listen string `json:"listen"`
}

// Render writes the site bundle. It is idempotent: secrets, keys and
// certificates are reused, and every file is written atomically.
func Render(ctx context.Context, o Options) (*Bundle, error) {
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	inPlace := o.Root == "" || o.Lab // the lab
	if o.Root == "" {
		o.Root = o.Out
	}
	p, err := NewPlan(o.Spec, o.Index)
	if err != nil {
		return nil, err
	}
	if o.BoulderVersion == "" {
		o.BoulderVersion = boulderbin.Version
		if old, err := ReadBundle(o.Out); err == nil && old.BoulderVersion != "" {
			o.BoulderVersion = old.BoulderVersion
		}
	}
	if err := boulderbin.CheckVersion(o.BoulderVersion); err != nil {
		return nil, err
	}
	if o.BoulderVersion != boulderbin.Version {
		if o.SchemaDir, err = boulderbin.SourceDirFor(ctx, o.BoulderVersion); err != nil {
			return nil, err
		}
	}
	r := &renderer{o: o, p: p, varDir: filepath.Join(o.Root, "var"), inPlace: inPlace}
	if err := r.render(ctx); err != nil {
		return nil, fmt.Errorf("render site %q: %w", p.Site.Name, err)
	}
	return r.bundle, nil
}

type renderer struct {
	o      Options
	p      *Plan
	varDir string
	bundle *Bundle
	own    []int64    // this site's issuer NameIDs
	peers  []peerSite // the other sites, read once by peerIssuers
	// inPlace: rendered where it runs (the lab).
	inPlace bool
}

// peerSite is another site as this site's fronts need it.
type peerSite struct {
	name    string
	plan    *Plan
	nameIDs []int64 // its issuers (each also in this bundle's pki/issuers)
}

func (r *renderer) out(parts ...string) string {
	return filepath.Join(append([]string{r.o.Out}, parts...)...)
}
func (r *renderer) root(parts ...string) string {
	return filepath.Join(append([]string{r.o.Root}, parts...)...)
}

func (r *renderer) write(rel string, data []byte, secret bool) error {
	mode := fs.FileMode(0o644)
	if secret {
		mode = 0o600
		if err := os.MkdirAll(filepath.Dir(r.out(rel)), 0o700); err != nil {
			return err
		}
	}
	return fsutil.WriteFileAtomic(r.out(rel), data, mode)
}

// secret returns the secret stored at secrets/<name>, creating it first.
func (r *renderer) secret(name string, nBytes int) (string, error) {
	return fsutil.EnsureSecret(r.out("secrets", name), nBytes)
}

func (r *renderer) render(ctx context.Context) error {
	if err := r.bundleDirs(); err != nil {
		return err
	}
	if err := r.internalPKI(); err != nil {
		return err
	}
	in, err := r.issuers()
	if err != nil {
		return err
	}
	caEnv, err := r.pkcs11Config()
	if err != nil {
		return err
	}
	if err := r.wfeCertificate(ctx); err != nil {
		return err
	}
	redisPW, err := r.siteSecrets()
	if err != nil {
		return err
	}
	logList, err := r.ctLogs()
	if err != nil {
		return err
	}
	// Account replication: the database's certificate, users and connections.
	replication, err := r.replication(ctx)
	if err != nil {
		return err
	}
	if err := r.plainConfigs(in, replication, logList, redisPW); err != nil {
		return err
	}
	if err := r.boulderFiles(in); err != nil {
		return err
	}
	// Database schema from the site's Boulder release.
	schema, err := r.schema()
	if err != nil {
		return err
	}
	if err := r.workDirs(); err != nil {
		return err
	}
	r.bundle = r.manifest(caEnv, schema)
	r.bundle.BoulderVersion = r.o.BoulderVersion
	if r.bundle.Generation, err = r.generation(); err != nil {
		return err
	}
	// The ACME front tells the probes which release the site runs.
	front, err := r.acmeFront(in)
	if err != nil {
		return err
	}
	if err := r.write("etc/acme-front.json", []byte(front), false); err != nil {
		return err
	}
	data, err := json.MarshalIndent(r.bundle, "", "  ")
	if err != nil {
		return err
	}
	return r.write("bundle.json", append(data, '\n'), false)
}

// bundleDirs makes the bundle directory and its secrets directory. The
// bundle directory itself must be traversable: MariaDB runs as its own user.
func (r *renderer) bundleDirs() error {
	if err := os.MkdirAll(r.o.Out, 0o755); err != nil {
		return err
	}
	if err := os.Chmod(r.o.Out, 0o755); err != nil {
		return err
	}
	if err := os.MkdirAll(r.out("secrets"), 0o700); err != nil {
		return err
	}
	return os.Chmod(r.out("secrets"), 0o700)
}

// internalPKI makes (or keeps) the site's internal mTLS PKI and its leaves.
func (r *renderer) internalPKI() error {
	p := r.p
	caDir := p.Spec.Path(InternalCADir(p.Site.Name))
	if err := moveCAOutOfBundle(r.out("ipki"), caDir); err != nil {
		return err
	}
	k, err := loadOrCreateCA(caDir, r.out("ipki"), p.Site.Name+" internal gRPC CA", r.o.Now)
	if err != nil {
		return err
	}
	k.rotate = r.o.RotateInternal
	if err := r.peerCAs(k); err != nil {
		return err
	}
	for _, id := range grpcIdentities {
		if err := k.leaf(id+".boulder", []string{id + ".boulder"}, nil); err != nil {
			return err
		}
	}
	if err := k.leaf("doh", []string{"dns." + p.ServiceZone()}, []net.IP{p.DNS.AsSlice()}); err != nil {
		return err
	}
	if err := k.leaf("redis", []string{"redis.boulder"}, []net.IP{p.DB.AsSlice()}); err != nil {
		return err
	}
	return r.siteAgent(k)
}

// NonceKeyFile is the cluster's nonce HMAC key, relative to the spec: on
// the rendering machine, copied into every site's bundle.
var NonceKeyFile = filepath.Join(cluster.DefaultSecretsDir, "nonce_hmac.key")

// peerCAs writes ipki/peers.pem: this site's internal CA certificate,
// then every other site's (each made here first if that site was never
// rendered). Only the nonce service and the WFE trust it: a peer's WFE
// may redeem this site's nonces, and this site's WFE reaches the peers'
// nonce services; every other service trusts its own site's CA alone.
func (r *renderer) peerCAs(own *ipki) error {
	pem := pemCert(own.cert)
	for _, s := range r.p.Spec.Sites {
		if s.Name == r.p.Site.Name {
			continue
		}
		dir := r.p.Spec.Path(InternalCADir(s.Name))
		peer, err := loadOrCreateCA(dir, dir, s.Name+" internal gRPC CA", r.o.Now)
		if err != nil {
			return fmt.Errorf("site %s's internal CA: %w", s.Name, err)
		}
		pem = append(pem, pemCert(peer.cert)...)
	}
	return r.write("ipki/peers.pem", pem, false)
}

// issuers copies the root and the site's issuers (cluster PKI) into the
// bundle, with each issuer in DER for AIA, and returns the inputs of the
// Boulder configs.
func (r *renderer) issuers() (*boulderInputs, error) {
	p := r.p
	issuers, err := r.o.PKI.SiteIssuers(p.Site.Name)
	if err != nil {
		return nil, err
	}
	in := &boulderInputs{plan: p, root: r.o.Root, rootCert: r.root("pki", "root.cert.pem"),
		pkcs11JSON:  r.root("secrets", "pkcs11.json"),
		redisPWFile: r.root("secrets", "redis.pw")}
	rootPEM, err := os.ReadFile(r.o.PKI.RootCertFile())
	if err != nil {
		return nil, err
	}
	if err := r.write("pki/root.cert.pem", rootPEM, false); err != nil {
		return nil, err
	}
	for _, is := range issuers {
		b, err := os.ReadFile(is.CertFile)
		if err != nil {
			return nil, err
		}
		if err := r.write("pki/"+is.Label+".cert.pem", b, false); err != nil {
			return nil, err
		}
		// AIA: the issuer certificate in DER, served by the CRL front.
		block, _ := pem.Decode(b)
		if err := r.write(fmt.Sprintf("pki/issuers/%d.der", is.NameID), block.Bytes, false); err != nil {
			return nil, err
		}
		in.issuers = append(in.issuers, issuerInput{certFile: r.root("pki", is.Label+".cert.pem"), nameID: is.NameID, current: is.Current,
			live: is.NotAfter.After(r.o.Now)})
		r.own = append(r.own, is.NameID)
	}
	return in, r.peerIssuers()
}

// peerIssuers puts every other site's issuers (public certificates) in
// pki/issuers too: the CRL front's mirror checks their CRLs with them.
func (r *renderer) peerIssuers() error {
	for i, s := range r.o.Spec.Sites {
		if s.Name == r.p.Site.Name {
			continue
		}
		pp, err := NewPlan(r.o.Spec, i)
		if err != nil {
			continue
		}
		peer := peerSite{name: s.Name, plan: pp, nameIDs: []int64{}}
		issuers, err := r.o.PKI.SiteIssuers(s.Name)
		if err != nil {
			issuers = nil // no intermediates yet: nothing to mirror or forward
		}
		for _, is := range issuers {
			b, err := os.ReadFile(is.CertFile)
			if err != nil {
				return err
			}
			block, _ := pem.Decode(b)
			if err := r.write(fmt.Sprintf("pki/issuers/%d.der", is.NameID), block.Bytes, false); err != nil {
				return err
			}
			peer.nameIDs = append(peer.nameIDs, is.NameID)
		}
		r.peers = append(r.peers, peer)
	}
	return nil
}

// pkcs11Config writes the CA's PKCS#11 config (and the SoftHSM config when
// the token is a SoftHSM one) and returns the CA's extra environment.
func (r *renderer) pkcs11Config() ([]string, error) {
	tok, err := r.o.PKI.SiteToken(r.p.Site.Name)
	if err != nil {
		return nil, err
	}
	pin, err := fsutil.ReadSecret(tok.PINFile)
	if err != nil {
		return nil, err
	}
	p11, _ := json.Marshal(map[string]string{"module": tok.Module, "tokenLabel": tok.Label, "pin": pin})
	if err := r.write("secrets/pkcs11.json", p11, true); err != nil {
		return nil, err
	}
	tokenDir := r.o.TokenDir
	if tokenDir == "" {
		tokenDir = tok.SoftHSMTokenDir
	}
	var caEnv []string
	if tokenDir != "" {
		if err := r.write("etc/softhsm2.conf", []byte(softhsmConf(tokenDir)), false); err != nil {
			return nil, err
		}
		caEnv = []string{"SOFTHSM2_CONF=" + r.root("etc", "softhsm2.conf")}
	}
	return caEnv, nil
}

// siteSecrets makes (or keeps) the site's secrets: the nonce key, the Redis
// password (returned), the database users' passwords and URLs, and the CRL
// store's credentials.
func (r *renderer) siteSecrets() (string, error) {
	p := r.p
	// One nonce key for the cluster (Boulder: "the same across all
	// boulder-wfe and nonce-service instances" of a multi-DC deployment):
	// every site's WFE derives each site's nonce prefix from it and
	// redeems any site's nonce at the site that issued it.
	clusterKey := p.Spec.Path(NonceKeyFile)
	if _, err := fsutil.EnsureSecret(clusterKey, 32); err != nil {
		return "", err
	}
	key, err := os.ReadFile(clusterKey)
	if err != nil {
		return "", err
	}
	if err := r.write("secrets/nonce_hmac.key", key, true); err != nil {
		return "", err
	}
	redisPW, err := r.secret("redis.pw", 20)
	if err != nil {
		return "", err
	}
	passwords := map[string]string{}
	for _, u := range dbUserOrder {
		if passwords[u], err = r.secret("db_"+u+".pw", 16); err != nil {
			return "", err
		}
		if err := r.write("secrets/"+u+"_dburl", []byte(dbURL(p, u, passwords[u])), true); err != nil {
			return "", err
		}
	}
	if err := r.write("secrets/db-users.sql", []byte(usersSQL(p, passwords)), true); err != nil {
		return "", err
	}
	if err := r.crlStoreCredentials(); err != nil {
		return "", err
	}
	return redisPW, nil
}

// ctLogs writes the CT test server's config (with its keys) and returns
// the CT log list.
func (r *renderer) ctLogs() ([]byte, error) {
	ctSecret, logList, err := r.ctFiles()
	if err != nil {
		return nil, err
	}
	if err := r.write("secrets/ct-test-srv.json", ctSecret, true); err != nil {
		return nil, err
	}
	return logList, nil
}

// plainConfigs writes the config files that are not Boulder's.
func (r *renderer) plainConfigs(in *boulderInputs, replication string, logList []byte, redisPW string) error {
	p := r.p
	files := map[string]string{
		"etc/ident-policy.yaml":            identPolicy(p),
		"etc/ratelimit-defaults.yml":       rateLimitDefaults,
		"etc/my.cnf":                       myCnf(p, r.varDir, r.o.Root, replication),
		"etc/named.conf":                   namedConf(p, r.o.Root, r.varDir),
		"etc/" + p.ServiceZone() + ".zone": serviceZone(p),
		"etc/log_list.json":                string(logList),
		"etc/crl-storer.ini":               "[default]\nregion=us-east-1\n",
		"etc/http-front.json":              r.httpFront(),
	}
	for rel, content := range files {
		if err := r.write(rel, []byte(content), false); err != nil {
			return err
		}
	}
	return r.write("secrets/redis.conf", []byte(redisConf(p, r.o.Root, r.varDir, redisPW)), true)
}

// boulderFiles writes Boulder's configs through Boulder's structs and
// validator, and the admin tool's config.
func (r *renderer) boulderFiles(in *boulderInputs) error {
	for _, c := range in.boulderConfigs() {
		data, err := encodeValidated(c)
		if err != nil {
			return err
		}
		if err := r.write("etc/"+c.file, data, false); err != nil {
			return err
		}
	}
	admin, err := in.adminConfig()
	if err != nil {
		return err
	}
	return r.write("etc/admin.json", admin, false)
}

// workDirs makes the working directories the processes expect (the
// database's are made by whoever initialises it).
func (r *renderer) workDirs() error {
	for _, d := range []string{"bind", "redis", "run", "logs", "pids"} {
		if err := os.MkdirAll(filepath.Join(r.o.Out, "var", d), 0o755); err != nil {
			return err
		}
	}
	return nil
}

// wfeCertificate keeps a valid certificate or has the infrastructure CA sign
// a new one: the shared ACME name, the site's own name and its address.
func (r *renderer) wfeCertificate(ctx context.Context) error {
	p := r.p
	names := []string{p.Spec.ACME.Name, p.SiteName()}
	ips := []net.IP{p.Public.AsSlice()}
	keyPath, certPath := r.out("secrets", "wfe-https.key"), r.out("https", "wfe.pem")
	if b, err := os.ReadFile(certPath); err == nil && fsutil.Exists(keyPath) {
		if block, _ := pem.Decode(b); block != nil {
			if c, err := x509.ParseCertificate(block.Bytes); err == nil && slices.Equal(c.DNSNames, names) &&
				len(c.IPAddresses) == 1 && c.IPAddresses[0].Equal(ips[0]) && c.NotAfter.Sub(r.o.Now) > 30*24*time.Hour {
				return nil
			}
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	chain, err := r.o.PKI.IssueInfrastructureCert(ctx, key.Public(), p.Spec.ACME.Name, names, ips, 365*24*time.Hour)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := r.write("secrets/wfe-https.key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), true); err != nil {
		return err
	}
	return r.write("https/wfe.pem", chain, false)
}

// crlStoreCredentials copies the operator's S3 credentials into the bundle,
// or makes random ones for the lab's stand-in (which checks none).
func (r *renderer) crlStoreCredentials() error {
	if r.p.ExternalCRLStore() {
		creds, err := fsutil.ReadSecret(r.o.Spec.Path(r.p.Site.CRLStore.CredentialsFile))
		if err != nil {
			return fmt.Errorf("sites[%d].crlStore.credentialsFile: %w", r.p.Index, err)
		}
		return r.write("secrets/aws_creds.ini", []byte(creds+"\n"), true)
	}
	id, err := r.secret("aws_access_key_id", 10)
	if err != nil {
		return err
	}
	key, err := r.secret("aws_secret_access_key", 20)
	if err != nil {
		return err
	}
	return r.write("secrets/aws_creds.ini", fmt.Appendf(nil, "[default]\naws_access_key_id=%s\naws_secret_access_key=%s\n", id, key), true)
}

// ctFiles reuses the CT keys if the site has them, else makes new ones.
func (r *renderer) ctFiles() ([]byte, []byte, error) {
	old, err := os.ReadFile(r.out("secrets", "ct-test-srv.json"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, err
	}
	return ctConfig(r.p, old)
}

func (r *renderer) schema() ([]string, error) {
	var out []string
	for _, f := range []string{"01-boulder_sa.sql", "01-incidents_sa.sql"} {
		b, err := os.ReadFile(filepath.Join(r.o.SchemaDir, "sa", "db", f))
		if err != nil {
			return nil, fmt.Errorf("read the Boulder schema: %w", err)
		}
		db := "boulder_sa"
		if strings.Contains(f, "incidents") {
			db = "incidents_sa"
		}
		content := fmt.Sprintf("CREATE DATABASE IF NOT EXISTS %s;\nUSE %s;\n%s", db, db, b)
		if err := r.write("sql/"+f, []byte(content), false); err != nil {
			return nil, err
		}
		out = append(out, r.root("sql", f))
	}
	return out, nil
}

// httpFront serves the site's CRLs (proxied from the S3 store, at the path
// crl-storer writes) and its issuer certificates (AIA) at the CRL URL.
// It also mirrors every other site's CRLs (and serves them) so they
// download while their site is down.
func (r *renderer) httpFront() string {
	type peer struct {
		URL     string  `json:"url"`
		NameIDs []int64 `json:"nameIDs"`
	}
	peers := []peer{}
	for _, pr := range r.peers {
		if !pr.plan.ExternalCRLStore() {
			peers = append(peers, peer{URL: "http://" + Addr(pr.plan.CRL, PortCRLHTTP), NameIDs: pr.nameIDs})
		}
	}
	b, _ := json.MarshalIndent(map[string]any{
		"listen": Addr(r.p.CRL, PortCRLHTTP),
		"static": map[string]string{"/issuers/": r.root("pki", "issuers")},
		"proxy":  map[string]string{"/" + r.p.Site.CRLStore.Bucket + "/": "http://" + Addr(r.p.CRL, PortS3)},
		"mirror": map[string]any{"dir": r.root("var", "crl-mirror"), "bucket": r.p.Site.CRLStore.Bucket, "peers": peers,
			"issuers": r.root("pki", "issuers"), "own": r.own, "shards": CRLShards, "every": crlMirrorEvery.String()},
	}, "", "  ")
	return string(b)
}

// crlMirrorEvery: how often a CRL front copies the other sites' CRLs.
const crlMirrorEvery = 30 * time.Second

func (r *renderer) manifest(caEnv, schema []string) *Bundle {
	p := r.p
	etc := func(f string) string { return r.root("etc", f) }
	boulder := func(name, component, cfg string, port int, env ...string) Process {
		// cairn's policy addition (docs/policy.md): private suffixes for
		// every component, the networks validation may reach for VAs.
		env = append(env, addition.Env(p.Spec.Policy.PrivateSuffixes, p.Spec.Validation.AllowedNetworks, component == "boulder-va" || component == "remoteva")...)
		return Process{Name: name, Program: "boulder", Args: []string{component, "--config", etc(cfg)},
			Env: env, Ready: "tcp:" + Addr(p.Svc, port), Listen: Addr(p.Svc, port)}
	}
	procs := []Process{
		{Name: "mariadb", Program: "mariadbd", Args: []string{"--defaults-file=" + etc("my.cnf")},
			Ready: "unix:" + mysqlSocket(r.varDir), Listen: Addr(p.DB, PortDB)},
		{Name: "redis", Program: "redis-server", Args: []string{r.root("secrets", "redis.conf")},
			Ready: "tcp:" + Addr(p.DB, PortRedis), Listen: Addr(p.DB, PortRedis)},
		{Name: "named", Program: "named", Args: []string{"-c", etc("named.conf"), "-f"},
			Ready: "tcp:" + Addr(p.DNS, PortDoH), Listen: Addr(p.DNS, PortDNS)},
		{Name: "ct-test-srv", Program: "ct-test-srv", Args: []string{"--config", r.root("secrets", "ct-test-srv.json")},
			Ready: "tcp:" + Addr(p.CT, PortCTB), Listen: Addr(p.CT, PortCTA)},
		{Name: "s3-test-srv", Program: "s3-test-srv", Args: []string{"--listen", Addr(p.CRL, PortS3)},
			Ready: "tcp:" + Addr(p.CRL, PortS3), Listen: Addr(p.CRL, PortS3)},
		{Name: "crl-http", Program: FrontProgram, Args: []string{"http-front", "--config", etc("http-front.json")},
			Ready: "tcp:" + Addr(p.CRL, PortCRLHTTP), Listen: Addr(p.CRL, PortCRLHTTP)},
		boulder("sa", "boulder-sa", "sa.json", PortSA),
		boulder("publisher", "boulder-publisher", "publisher.json", PortPublisher),
		boulder("rva1", "remoteva", "rva1.json", PortRVA1),
		boulder("rva2", "remoteva", "rva2.json", PortRVA1+1),
		boulder("rva3", "remoteva", "rva3.json", PortRVA1+2),
		boulder("va", "boulder-va", "va.json", PortVA),
		// The CA and RA call each other (Issue, GetSCTs): start the CA just
		// before the RA.
		boulder("ca", "boulder-ca", "ca.json", PortCA, caEnv...),
		boulder("ra", "boulder-ra", "ra.json", PortRA),
		nonceProcess(boulder("nonce", "nonce-service", "nonce.json", PortNonce), p),
		boulder("wfe", "boulder-wfe2", "wfe2.json", PortWFEHTTP),
		{Name: ACMEFront, Program: FrontProgram, Args: []string{"acme-front", "--config", etc("acme-front.json")},
			Ready: "tcp:" + Addr(p.Public, p.Spec.ACME.HTTPSPort), Listen: Addr(p.Public, p.Spec.ACME.HTTPSPort)},
		boulder("crl-storer", "crl-storer", "crl-storer.json", PortCRLStorer),
		{Name: "crl-updater", Program: "boulder", Args: []string{"crl-updater", "--config", etc("crl-updater.json")},
			Env: addition.Env(p.Spec.Policy.PrivateSuffixes, nil, false), Ready: "tcp:" + p.debug("crl-updater"), Listen: p.debug("crl-updater")},
		// The controller's way in: revoke, block a key, publish CRLs.
		{Name: AgentProcess, Program: "cairn", Args: []string{"site", "agent", "--config", etc("agent.json")},
			Ready: "tcp:" + p.agentListen(), Listen: p.agentListen()},
	}
	if p.ExternalCRLStore() {
		// The operator's store and web server publish the CRLs.
		procs = slices.DeleteFunc(procs, func(x Process) bool { return x.Name == "s3-test-srv" || x.Name == "crl-http" })
	}
	for i := range procs {
		switch procs[i].Name {
		case "crl-storer":
			procs[i].UnsetEnv = []string{"AWS_CA_BUNDLE"}
		}
		if r.inPlace {
			procs[i].labEnv()
		}
	}
	return &Bundle{
		Site: p.Site.Name, Root: r.o.Root, Public: p.Public.String(),
		DirectoryURL: p.DirectoryURL(), SiteURL: acmeURL(p.SiteName(), p.Spec.ACME.HTTPSPort) + "/directory", SiteName: p.SiteName(),
		BindAddresses: []string{p.DNS.String()},
		Database: Database{Config: etc("my.cnf"), DataDir: filepath.Join(r.varDir, "mysql", "data"), SchemaSQL: schema,
			UsersSQL: r.root("secrets", "db-users.sql"), ReplicationSQL: r.root("secrets", "db-replication.sql"), TLSKey: r.root("tls", "db.key"), Connections: r.connections(), CheckTable: "boulder_sa.authz2"},
		Processes: procs,
	}
}

// LabGOGC: the lab runs some 50 Go processes on one machine; collecting
// garbage at half Go's default heap growth saves about 100 MiB of the
// lab's memory (docs/lab.md, Figures) for little CPU at a lab's load.
// Provisioned hosts keep Go's default.
const LabGOGC = "GOGC=50"

// LabGOMAXPROCS: with some 50 Go processes on the machine's cores, each
// process's scheduler spinning on a second core to find work costs CPU
// and gains nothing: an idle 3-site lab took 13.8–15.8 s of CPU a minute
// with one core each, 17.7–18.1 s without (docs/lab.md, Figures).
// Provisioned hosts keep Go's default.
const LabGOMAXPROCS = "GOMAXPROCS=1"

// goPrograms are the bundles' Go programs.
var goPrograms = []string{"boulder", "cairn", FrontProgram, "ct-test-srv", "s3-test-srv", "prometheus"}

// labEnv gives a lab process what the lab's processes get (LabGOGC and
// LabGOMAXPROCS for Go programs).
func (p *Process) labEnv() {
	if slices.Contains(goPrograms, p.Program) {
		p.Env = append(p.Env, LabGOGC, LabGOMAXPROCS)
	}
}

// FrontProgram is the small binary of the processes that face clients
// (cmd/cairn-front): a site's ACME and CRL fronts, the cluster's PKI front.
// It is installed next to cairn.
const FrontProgram = "cairn-front"

// FrontNextTo finds cairn-front next to the cairn executable self.
func FrontNextTo(self string) (string, error) {
	p := filepath.Join(filepath.Dir(self), FrontProgram)
	if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
		return p, nil
	}
	return "", fmt.Errorf("%s is not next to %s: build it too (make build, or go build -o %s ./cmd/cairn-front)", FrontProgram, self, p)
}

// ACMEFront is the process that serves the ACME name over HTTPS in front
// of the WFE (internal/acmefront).
const ACMEFront = "acme-front"

// acmeFront is its config: TLS with the WFE's certificate, the WFE's plain
// listener upstream, the site's own issuers, and who may get which
// certificate (EAB, allowed names: docs/authority.md).
func (r *renderer) acmeFront(in *boulderInputs) (string, error) {
	p := r.p
	var issuers []string
	for _, is := range in.issuers {
		issuers = append(issuers, is.certFile)
	}
	type peer struct {
		Site    string   `json:"site"`
		Addr    string   `json:"addr"`
		Issuers []string `json:"issuers"`
	}
	peers := []peer{}
	for _, pr := range r.peers {
		x := peer{Site: pr.name, Addr: Addr(pr.plan.Public, p.Spec.ACME.HTTPSPort), Issuers: []string{}}
		for _, id := range pr.nameIDs {
			x.Issuers = append(x.Issuers, r.root("pki", "issuers", fmt.Sprintf("%d.der", id)))
		}
		peers = append(peers, x)
	}
	allowed, err := namescope.NormalizeAll(p.Spec.Policy.AllowedNames)
	if err != nil {
		return "", fmt.Errorf("policy.allowedNames: %w", err)
	}
	allowed = append([]string{}, allowed...)
	// The health probes register without a binding (the controller holds
	// their keys).
	exempt := []string{}
	if p.Spec.EAB.Required {
		if exempt, err = probeKeyDigests(p.Spec); err != nil {
			return "", err
		}
	}
	b, _ := json.MarshalIndent(map[string]any{
		"release":  acmefront.Release{Site: p.Site.Name, Boulder: r.bundle.BoulderVersion, Bundle: r.bundle.Generation},
		"listen":   Addr(p.Public, p.Spec.ACME.HTTPSPort),
		"upstream": "http://" + Addr(p.Svc, PortWFEHTTP),
		"certFile": r.root("https", "wfe.pem"),
		"keyFile":  r.root("secrets", "wfe-https.key"),
		"issuers":  issuers,
		// Another site's certificate is revoked there (revokeCert).
		"peers":    peers,
		"rootFile": r.root("pki", "root.cert.pem"),
		// Connections held and refused (caps: connlimit's defaults), on
		// the internal address Prometheus scrapes.
		"metricsListen": p.debug(ACMEFront),
		// When the internal certificates expire, on the same /metrics.
		"internalCerts": r.root("ipki"),
		"eabRequired":   p.Spec.EAB.Required,
		"allowedNames":  allowed,
		"exemptKeys":    exempt,
		"sitePrefix":    p.Site.SerialPrefix.Value(),
		"db":            acmefront.DBConfig{Addr: Addr(p.DB, PortDB), User: FrontDBUser, PasswordFile: r.root("secrets", frontPasswordSecret)},
	}, "", "  ")
	return string(b) + "\n", nil
}

// generation names what the bundle runs: a digest of its rendered files
// (RenderedFiles), its processes and the Boulder version. Two renders that
// would run the same thing have the same generation; any change of
// config, binary version or process list gives a new one.
func (r *renderer) generation() (string, error) {
	files, err := RenderedFiles(r.o.Out)
	if err != nil {
		return "", err
	}
	delete(files, "etc/acme-front.json") // it carries the generation
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	h := sha256.New()
	for _, n := range names {
		fmt.Fprintf(h, "%s %x\n", n, sha256.Sum256(files[n]))
	}
	procs, _ := json.Marshal(r.bundle.Processes)
	h.Write(procs)
	fmt.Fprintf(h, "boulder %s\n", r.bundle.BoulderVersion)
	return hex.EncodeToString(h.Sum(nil))[:12], nil
}

// renderedDirs are the bundle's directories that rendering writes and an
// upgrade changes; the others hold data and secrets.
var renderedDirs = []string{"etc", "sql", "https", "pki", "ipki"}

// RenderedFiles reads a bundle's rendered files by path relative to dir:
// configs, schema, certificates and issuers, only those others may read
// (no secret).
func RenderedFiles(dir string) (map[string][]byte, error) {
	m := map[string][]byte{}
	for _, d := range renderedDirs {
		err := filepath.WalkDir(filepath.Join(dir, d), func(path string, e fs.DirEntry, err error) error {
			if err != nil || e.IsDir() {
				return err
			}
			fi, err := e.Info()
			if err != nil || fi.Mode().Perm()&0o044 == 0 {
				return err
			}
			rel, _ := filepath.Rel(dir, path)
			m[rel], err = os.ReadFile(path)
			return err
		})
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	return m, nil
}

// ReadBundle reads a rendered bundle's manifest.
func ReadBundle(dir string) (*Bundle, error) {
	b, err := os.ReadFile(filepath.Join(dir, "bundle.json"))
	if err != nil {
		return nil, err
	}
	var bundle Bundle
	if err := json.Unmarshal(b, &bundle); err != nil {
		return nil, fmt.Errorf("%s/bundle.json: %w", dir, err)
	}
	return &bundle, nil
}

// nonceProcess is the nonce service on the site's public address (its
// peers' WFEs reach it there: NonceAddr).
func nonceProcess(proc Process, p *Plan) Process {
	proc.Ready, proc.Listen = "tcp:"+NonceAddr(p.Public), NonceAddr(p.Public)
	return proc
}
