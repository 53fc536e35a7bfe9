// Package intermediates makes and keeps the cluster PKI: an offline root,
// an ECDSA and an RSA issuing intermediate for every site, a separate
// infrastructure intermediate for the sites' HTTPS certificates, and the
// root's CRL. Keys are created and used only inside PKCS#11 tokens through
// Boulder's ceremony tool; the root's token is separate from every site's.
package intermediates

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/letsencrypt/boulder/issuance"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/internal/fsutil"
)

// Options are what the PKI needs besides the spec.
type Options struct {
	// Ceremony is the path of Boulder's ceremony binary (pinned version).
	Ceremony string
	// Log receives one progress line per step.
	Log io.Writer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Signer is the cairn executable. SoftHSM reads its configuration only
	// from the environment of the process that loads it, so signing with a
	// SoftHSM token runs in `cairn pki sign-infra`, and finding or creating
	// a SoftHSM token in `cairn pki token`, each with that token's
	// SOFTHSM2_CONF; the library never changes its own environment.
	Signer string
	// Run runs every external command the PKI starts (the ceremony tool,
	// cairn's token and signing children); nil is (*exec.Cmd).Run. Tests
	// record here what each command line and environment held.
	Run func(*exec.Cmd) error
}

// PKI is the cluster PKI in spec.PKI.Dir.
type PKI struct {
	spec  *cluster.Spec
	dir   string
	opts  Options
	state *state
}

// state is what the files alone cannot tell: each site's current
// generation, the root CRL number, and what the root has revoked.
type state struct {
	CRLNumber   int64          `json:"crlNumber"`
	Generations map[string]int `json:"generations"`
	Revoked     []Revocation   `json:"revoked"`
}

// Revocation is one intermediate the root revoked.
type Revocation struct {
	CertFile string    `json:"certFile"` // relative to the PKI dir
	Site     string    `json:"site"`
	Serial   string    `json:"serial"`
	At       time.Time `json:"at"`
	Reason   string    `json:"reason"`
}

// Open reads the PKI state (empty if nothing exists yet). Callers hold the
// returned unlock until done; two cairn commands never change one PKI at once.
func Open(spec *cluster.Spec, opts Options) (*PKI, func(), error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	p := &PKI{spec: spec, dir: spec.Path(spec.PKI.Dir), opts: opts, state: &state{Generations: map[string]int{}, Revoked: []Revocation{}}}
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("create PKI dir: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(p.dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, nil, err
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, nil, fmt.Errorf("PKI in %s is in use by another cairn command; wait for it to finish", p.dir)
	}
	unlock := func() { lock.Close() }
	b, err := os.ReadFile(p.statePath())
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		unlock()
		return nil, nil, err
	default:
		if err := json.Unmarshal(b, p.state); err != nil {
			unlock()
			return nil, nil, fmt.Errorf("%s is damaged (%v): restore it from backup", p.statePath(), err)
		}
		if p.state.Generations == nil {
			p.state.Generations = map[string]int{}
		}
	}
	return p, unlock, nil
}

// OpenReadOnly reads the PKI without taking its lock, for readers that
// run next to cairn commands (the prober reads issuers and the root).
func OpenReadOnly(spec *cluster.Spec) (*PKI, error) {
	p := &PKI{spec: spec, dir: spec.Path(spec.PKI.Dir), opts: Options{Now: time.Now, Log: io.Discard},
		state: &state{Generations: map[string]int{}, Revoked: []Revocation{}}}
	b, err := os.ReadFile(p.statePath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no PKI in %s: run `cairn pki init` (or `cairn lab up`)", p.dir)
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, p.state); err != nil {
		return nil, fmt.Errorf("%s is damaged (%v)", p.statePath(), err)
	}
	return p, nil
}

func (p *PKI) now() time.Time { return p.opts.Now() }

// run runs cmd through Options.Run: every external command the PKI starts
// goes through here.
func (p *PKI) run(cmd *exec.Cmd) error {
	if p.opts.Run != nil {
		return p.opts.Run(cmd)
	}
	return cmd.Run()
}

func (p *PKI) logf(format string, args ...any) { fmt.Fprintf(p.opts.Log, format+"\n", args...) }

func (p *PKI) statePath() string { return filepath.Join(p.dir, "state.json") }

func (p *PKI) saveState() error {
	b, err := json.MarshalIndent(p.state, "", "  ")
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(p.statePath(), append(b, '\n'), 0o644)
}

// Layout of the PKI directory. root/ is the offline part: it holds the only
// copy of the root token and is never given to a site. sites/<name>/ and
// public/ are what a site receives.
func (p *PKI) rootDir() string            { return filepath.Join(p.dir, "root") }
func (p *PKI) infraDir() string           { return filepath.Join(p.dir, "infrastructure") }
func (p *PKI) siteDir(site string) string { return filepath.Join(p.dir, "sites", site) }
func (p *PKI) publicDir() string          { return filepath.Join(p.dir, "public") }
func (p *PKI) rootCert() string           { return filepath.Join(p.rootDir(), "root.cert.pem") }
func (p *PKI) rootCRL() string            { return filepath.Join(p.publicDir(), "root.crl.pem") }
func (p *PKI) rel(path string) string     { r, _ := filepath.Rel(p.dir, path); return r }
func (p *PKI) abs(rel string) string      { return filepath.Join(p.dir, rel) }
func (p *PKI) siteToken(s cluster.Site) token {
	return tokenFor(p.spec, s.HSM, filepath.Join(p.siteDir(s.Name), "softhsm"))
}
func (p *PKI) rootToken() token {
	return tokenFor(p.spec, p.spec.PKI.HSM.Root, filepath.Join(p.rootDir(), "softhsm"))
}
func (p *PKI) infraToken() token {
	return tokenFor(p.spec, p.spec.PKI.HSM.Infrastructure, filepath.Join(p.infraDir(), "softhsm"))
}

// RootCertFile is the root certificate (public).
func (p *PKI) RootCertFile() string { return filepath.Join(p.publicDir(), "root.cert.pem") }

// issuerKey is one intermediate's key and certificate.
type issuerKey struct {
	label   string // key label in the token, also the file stem: "a-e1"
	keyType string
	cn      string
	dir     string
	tok     token
}

func (k issuerKey) pubKey() string { return filepath.Join(k.dir, k.label+".pubkey.pem") }
func (k issuerKey) cert() string   { return filepath.Join(k.dir, k.label+".cert.pem") }

// siteKeys are the ECDSA and RSA intermediates of a site's generation.
func (p *PKI) siteKeys(s cluster.Site, gen int) []issuerKey {
	mk := func(letter, kt string) issuerKey {
		label := fmt.Sprintf("%s-%s%d", s.Name, letter, gen)
		// The subject is unique in the cluster (site name and generation),
		// so each issuer has its own NameID and so its own CRL paths.
		cn := fmt.Sprintf("%s %s %s%d", p.spec.PKI.Organization, s.Name, map[string]string{"e": "E", "r": "R"}[letter], gen)
		return issuerKey{label: label, keyType: kt, cn: cn, dir: p.siteDir(s.Name), tok: p.siteToken(s)}
	}
	return []issuerKey{
		mk("e", p.spec.PKI.Intermediates.ECDSAKeyType),
		mk("r", p.spec.PKI.Intermediates.RSAKeyType),
	}
}

func (p *PKI) infraKey() issuerKey {
	inf := p.spec.PKI.Infrastructure
	return issuerKey{label: "infra1", keyType: inf.KeyType, cn: inf.CommonName, dir: p.infraDir(), tok: p.infraToken()}
}

func (p *PKI) generation(site string) int {
	if g := p.state.Generations[site]; g > 0 {
		return g
	}
	return 1
}

// Init creates whatever is missing: root, infrastructure intermediate, each
// site's current intermediates, the root CRL. It never replaces a key or a
// certificate that exists.
func (p *PKI) Init(ctx context.Context) error {
	if err := p.checkSubjectsUnique(); err != nil {
		return err
	}
	if err := p.ensureRoot(ctx); err != nil {
		return err
	}
	if err := p.ensureIntermediate(ctx, p.infraKey(), "infrastructure"); err != nil {
		return err
	}
	for _, s := range p.spec.Sites {
		gen := p.generation(s.Name)
		for _, k := range p.siteKeys(s, gen) {
			if err := p.ensureIntermediate(ctx, k, "site "+s.Name); err != nil {
				return err
			}
		}
		if p.state.Generations[s.Name] == 0 {
			p.state.Generations[s.Name] = gen
			if err := p.saveState(); err != nil {
				return err
			}
		}
	}
	if !fsutil.Exists(p.rootCRL()) {
		if err := p.signRootCRL(ctx); err != nil {
			return err
		}
	}
	if err := p.publishRoot(); err != nil {
		return err
	}
	return p.checkNameIDs()
}

func (p *PKI) ensureRoot(ctx context.Context) error {
	if fsutil.Exists(p.rootCert()) {
		return nil
	}
	start := p.now()
	r := p.spec.PKI.Root
	tok := p.rootToken()
	slot, pin, err := p.open(ctx, tok)
	if err != nil {
		return err
	}
	c, err := p.newCeremony("root", tok.env())
	if err != nil {
		return err
	}
	cfg := rootCeremony{CeremonyType: "root", Key: keySpecFor(r.KeyType), SkipLints: rootSkipLints}
	cfg.PKCS11 = keyGenPKCS11{Module: tok.module, PIN: pin, Slot: slot, Label: "root"}
	cfg.Outputs.PublicKeyPath = c.output(filepath.Join(p.rootDir(), "root.pubkey.pem"))
	cfg.Outputs.CertificatePath = c.output(p.rootCert())
	nb, na := validity(p.now(), r.ValidityDays, time.Time{})
	cfg.CertProfile = certProfile{
		PolicyURL: rootPolicyURL, SignatureAlgorithm: signatureAlgorithm(r.KeyType),
		CommonName: r.CommonName, Organization: p.spec.PKI.Organization, Country: p.spec.PKI.Country,
		NotBefore: nb, NotAfter: na, KeyUsages: []string{"Cert Sign", "CRL Sign"},
	}
	if err := c.run(ctx, cfg, pin); err != nil {
		return fmt.Errorf("create root: %w", err)
	}
	p.logf("root: created %q (%s, key in token %q) in %.1fs", r.CommonName, r.KeyType, tok.label, p.now().Sub(start).Seconds())
	return nil
}

// open returns the token's slot and PIN.
func (p *PKI) open(ctx context.Context, t token) (uint, string, error) {
	pin, err := t.pin()
	if err != nil {
		return 0, "", err
	}
	slot, err := p.slot(ctx, t)
	if err != nil {
		return 0, "", err
	}
	return slot, pin, nil
}

// ensureIntermediate makes the key (in its holder's token) and then the
// certificate (signed by the root's token), each only if missing.
func (p *PKI) ensureIntermediate(ctx context.Context, k issuerKey, holder string) error {
	if fsutil.Exists(k.cert()) {
		return nil
	}
	start := p.now()
	if !fsutil.Exists(k.pubKey()) {
		slot, pin, err := p.open(ctx, k.tok)
		if err != nil {
			return fmt.Errorf("%s: %w", holder, err)
		}
		c, err := p.newCeremony(k.label+"-key", k.tok.env())
		if err != nil {
			return err
		}
		cfg := keyCeremony{CeremonyType: "key", Key: keySpecFor(k.keyType)}
		cfg.PKCS11 = keyGenPKCS11{Module: k.tok.module, PIN: pin, Slot: slot, Label: k.label}
		cfg.Outputs.PublicKeyPath = c.output(k.pubKey())
		if err := c.run(ctx, cfg, pin); err != nil {
			return fmt.Errorf("%s: create key %s: %w", holder, k.label, err)
		}
	}
	if k.dir != p.infraDir() && p.constrained() {
		return p.signConstrainedIntermediate(ctx, k, holder)
	}
	c, signing, rootCert, err := p.rootCeremony(ctx, k.label+"-cert")
	if err != nil {
		return err
	}
	pin := signing.PIN
	cfg := intermediateCeremony{CeremonyType: "intermediate", SkipLints: intermediateSkipLints}
	cfg.PKCS11 = signing
	cfg.Inputs.PublicKeyPath = k.pubKey()
	cfg.Inputs.IssuerCertificatePath = p.rootCert()
	cfg.Outputs.CertificatePath = c.output(k.cert())
	nb, na := validity(p.now(), p.validityDays(k), rootCert.NotAfter)
	cfg.CertProfile = certProfile{
		PolicyURL: subordinatePolicyURL, SignatureAlgorithm: signatureAlgorithm(p.spec.PKI.Root.KeyType),
		CommonName: k.cn, Organization: p.spec.PKI.Organization, Country: p.spec.PKI.Country,
		NotBefore: nb, NotAfter: na,
		CRLURL: p.spec.PKI.BaseURL + "root.crl", IssuerURL: p.spec.PKI.BaseURL + "root.der",
		Policies:  []policy{{OID: domainValidatedPolicy}},
		KeyUsages: []string{"Digital Signature", "Cert Sign", "CRL Sign"},
	}
	if err := c.run(ctx, cfg, pin); err != nil {
		return fmt.Errorf("%s: sign %s: %w", holder, k.label, err)
	}
	p.logf("%s: created intermediate %q (%s, key %q in token %q) in %.1fs", holder, k.cn, k.keyType, k.label, k.tok.label, p.now().Sub(start).Seconds())
	return nil
}

// rootCeremony prepares a ceremony signed by the root key: the staging
// area, the PKCS#11 signing settings (with the root token's PIN) and the
// root certificate.
func (p *PKI) rootCeremony(ctx context.Context, name string) (*ceremonyRun, signingPKCS11, *x509.Certificate, error) {
	root := p.rootToken()
	slot, pin, err := p.open(ctx, root)
	if err != nil {
		return nil, signingPKCS11{}, nil, err
	}
	rootCert, err := ReadCert(p.rootCert())
	if err != nil {
		return nil, signingPKCS11{}, nil, err
	}
	c, err := p.newCeremony(name, root.env())
	if err != nil {
		return nil, signingPKCS11{}, nil, err
	}
	return c, signingPKCS11{Module: root.module, PIN: pin, Slot: slot, Label: "root"}, rootCert, nil
}

func (p *PKI) validityDays(k issuerKey) int {
	if k.dir == p.infraDir() {
		return p.spec.PKI.Infrastructure.ValidityDays
	}
	return p.spec.PKI.Intermediates.ValidityDays
}

// publishRoot copies the root certificate to public/ as PEM and DER (the
// intermediates' AIA points at root.der).
func (p *PKI) publishRoot() error {
	pemBytes, err := os.ReadFile(p.rootCert())
	if err != nil {
		return err
	}
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return fmt.Errorf("%s holds no PEM certificate", p.rootCert())
	}
	if err := fsutil.WriteFileAtomic(p.RootCertFile(), pemBytes, 0o644); err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(filepath.Join(p.publicDir(), "root.der"), block.Bytes, 0o644)
}

// checkSubjectsUnique refuses a spec whose planned subjects collide: the
// issuer NameID (a hash of the subject) names CRL objects and DB rows.
func (p *PKI) checkSubjectsUnique() error {
	seen := map[string]string{p.spec.PKI.Root.CommonName: "the root"}
	add := func(cn, who string) error {
		if other, dup := seen[cn]; dup {
			return fmt.Errorf("subject %q of %s equals that of %s: subjects must be unique in the cluster (rename pki.infrastructure.commonName or the site)", cn, who, other)
		}
		seen[cn] = who
		return nil
	}
	if err := add(p.infraKey().cn, "the infrastructure CA"); err != nil {
		return err
	}
	for _, s := range p.spec.Sites {
		for g := 1; g <= p.generation(s.Name); g++ {
			for _, k := range p.siteKeys(s, g) {
				if err := add(k.cn, "intermediate "+k.label); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// checkNameIDs verifies on the certificates themselves that no two issuers
// share a Boulder NameID.
func (p *PKI) checkNameIDs() error {
	seen := map[issuance.NameID]string{}
	for _, c := range p.inventory() {
		cert, err := ReadCert(c.path)
		if err != nil {
			continue // not created yet
		}
		ic, err := issuance.NewCertificate(cert)
		if err != nil {
			return fmt.Errorf("%s: %w", c.path, err)
		}
		if other, dup := seen[ic.NameID()]; dup {
			return fmt.Errorf("%s and %s share issuer NameID %d: their CRLs would collide", p.rel(c.path), other, ic.NameID())
		}
		seen[ic.NameID()] = p.rel(c.path)
	}
	return nil
}

// entry is one certificate the PKI should hold.
type entry struct {
	role, site, label, token string
	gen                      int
	path                     string
}

// inventory lists every certificate of the spec: root, infrastructure, and
// every generation of every site, oldest first.
func (p *PKI) inventory() []entry {
	out := []entry{{role: RoleRoot, label: "root", token: p.rootToken().label, path: p.rootCert()}}
	ik := p.infraKey()
	out = append(out, entry{role: RoleInfrastructure, label: ik.label, token: ik.tok.label, gen: 1, path: ik.cert()})
	for _, s := range p.spec.Sites {
		for g := 1; g <= p.generation(s.Name); g++ {
			for _, k := range p.siteKeys(s, g) {
				out = append(out, entry{role: RoleIntermediate, site: s.Name, label: k.label, token: k.tok.label, gen: g, path: k.cert()})
			}
		}
	}
	return out
}

// ReadCert reads one PEM certificate.
func ReadCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return x509.ParseCertificate(block.Bytes)
}
