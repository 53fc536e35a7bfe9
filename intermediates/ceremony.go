package intermediates

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/cairn-pki/cairn/internal/boulderbin/addition"
	"github.com/cairn-pki/cairn/internal/fsutil"
)

// The YAML documents of Boulder's ceremony tool (cmd/ceremony, package main,
// so its types cannot be imported). Field names follow its yaml tags.

type keyGenPKCS11 struct {
	Module string `yaml:"module"`
	PIN    string `yaml:"pin"`
	Slot   uint   `yaml:"store-key-in-slot"`
	Label  string `yaml:"store-key-with-label"`
}

type signingPKCS11 struct {
	Module string `yaml:"module"`
	PIN    string `yaml:"pin"`
	Slot   uint   `yaml:"signing-key-slot"`
	Label  string `yaml:"signing-key-label"`
}

type keySpec struct {
	Type         string `yaml:"type"`
	RSAModLength int    `yaml:"rsa-mod-length,omitempty"`
	ECDSACurve   string `yaml:"ecdsa-curve,omitempty"`
}

type policy struct {
	OID string `yaml:"oid"`
}

type certProfile struct {
	PolicyURL          string   `yaml:"policy-url"`
	SignatureAlgorithm string   `yaml:"signature-algorithm"`
	CommonName         string   `yaml:"common-name"`
	Organization       string   `yaml:"organization"`
	Country            string   `yaml:"country"`
	NotBefore          string   `yaml:"not-before"`
	NotAfter           string   `yaml:"not-after"`
	CRLURL             string   `yaml:"crl-url,omitempty"`
	IssuerURL          string   `yaml:"issuer-url,omitempty"`
	Policies           []policy `yaml:"policies,omitempty"`
	KeyUsages          []string `yaml:"key-usages"`
}

type rootCeremony struct {
	CeremonyType string       `yaml:"ceremony-type"`
	PKCS11       keyGenPKCS11 `yaml:"pkcs11"`
	Key          keySpec      `yaml:"key"`
	Outputs      struct {
		PublicKeyPath   string `yaml:"public-key-path"`
		CertificatePath string `yaml:"certificate-path"`
	} `yaml:"outputs"`
	CertProfile certProfile `yaml:"certificate-profile"`
	SkipLints   []string    `yaml:"skip-lints,omitempty"`
}

type keyCeremony struct {
	CeremonyType string       `yaml:"ceremony-type"`
	PKCS11       keyGenPKCS11 `yaml:"pkcs11"`
	Key          keySpec      `yaml:"key"`
	Outputs      struct {
		PublicKeyPath string `yaml:"public-key-path"`
	} `yaml:"outputs"`
}

type intermediateCeremony struct {
	CeremonyType string        `yaml:"ceremony-type"`
	PKCS11       signingPKCS11 `yaml:"pkcs11"`
	Inputs       struct {
		PublicKeyPath         string `yaml:"public-key-path"`
		IssuerCertificatePath string `yaml:"issuer-certificate-path"`
	} `yaml:"inputs"`
	Outputs struct {
		CertificatePath string `yaml:"certificate-path"`
	} `yaml:"outputs"`
	CertProfile certProfile `yaml:"certificate-profile"`
	SkipLints   []string    `yaml:"skip-lints,omitempty"`
}

type revokedEntry struct {
	CertificatePath  string `yaml:"certificate-path"`
	RevocationDate   string `yaml:"revocation-date"`
	RevocationReason string `yaml:"revocation-reason"`
}

type crlCeremony struct {
	CeremonyType string        `yaml:"ceremony-type"`
	PKCS11       signingPKCS11 `yaml:"pkcs11"`
	Inputs       struct {
		IssuerCertificatePath string `yaml:"issuer-certificate-path"`
	} `yaml:"inputs"`
	Outputs struct {
		CRLPath string `yaml:"crl-path"`
	} `yaml:"outputs"`
	CRLProfile struct {
		ThisUpdate          string         `yaml:"this-update"`
		NextUpdate          string         `yaml:"next-update"`
		Number              int64          `yaml:"number"`
		RevokedCertificates []revokedEntry `yaml:"revoked-certificates,omitempty"`
	} `yaml:"crl-profile"`
	SkipLints []string `yaml:"skip-lints,omitempty"`
}

// ceremony's policy-url must match Let's Encrypt's CP/CPS URL pattern; it
// is checked but never written into a certificate.
const (
	rootPolicyURL         = "https://github.com/letsencrypt/cp-cps/blob/v6.1/CP-CPS.md#root-ca-certificate-profile"
	subordinatePolicyURL  = "https://github.com/letsencrypt/cp-cps/blob/v6.1/CP-CPS.md#tls-subordinate-ca-certificate-profile"
	domainValidatedPolicy = "2.23.140.1.2.1"
)

// Lints that hard-code Let's Encrypt's own subjects (C=US, O=ISRG) or the
// 10-day subscriber CRL rule; they cannot apply to a private CA's root.
var (
	rootSkipLints         = []string{"n_ca_digital_signature_not_set", "e_root_ca_certificate_matches_cps_profile"}
	intermediateSkipLints = []string{"e_tls_subordinate_ca_certificate_matches_cps_profile"}
	crlSkipLints          = []string{"e_crl_next_update_invalid"}
)

func keySpecFor(kt string) keySpec {
	switch kt {
	case "ecdsa-p256":
		return keySpec{Type: "ecdsa", ECDSACurve: "P-256"}
	case "ecdsa-p384":
		return keySpec{Type: "ecdsa", ECDSACurve: "P-384"}
	case "rsa-2048":
		return keySpec{Type: "rsa", RSAModLength: 2048}
	case "rsa-3072":
		return keySpec{Type: "rsa", RSAModLength: 3072}
	case "rsa-4096":
		return keySpec{Type: "rsa", RSAModLength: 4096}
	}
	panic("intermediates: key type not validated: " + kt)
}

// signatureAlgorithm is what a key of the issuer's type signs with.
func signatureAlgorithm(issuerKeyType string) string {
	switch issuerKeyType {
	case "ecdsa-p256":
		return "ECDSAWithSHA256"
	case "ecdsa-p384":
		return "ECDSAWithSHA384"
	}
	return "SHA256WithRSA"
}

const ceremonyTime = time.DateTime // "2006-01-02 15:04:05", UTC

// validity returns ceremony not-before/not-after strings for days of
// validity ending no later than limit (the issuer's notAfter), without the
// extra second zlint warns about.
func validity(now time.Time, days int, limit time.Time) (string, string) {
	nb := now.UTC().Truncate(time.Hour).Add(-time.Hour)
	na := nb.Add(time.Duration(days)*24*time.Hour - time.Second)
	if !limit.IsZero() && na.After(limit) {
		na = limit
	}
	return nb.Format(ceremonyTime), na.Format(ceremonyTime)
}

// ceremonyRun runs one ceremony in a private staging directory: the config
// (which holds the PIN) and the outputs are written there, and the outputs
// are renamed into place only when the ceremony succeeded, so a failure
// leaves no half-written file. A PIN-free copy of the config and the
// ceremony's log are kept in pki/ceremonies/ as the ceremony record.
type ceremonyRun struct {
	p       *PKI
	name    string // e.g. "root", "a-e1-key"
	env     []string
	staging string
	outputs [][2]string // staged path, final path; renamed in this order
}

func (p *PKI) newCeremony(name string, env []string) (*ceremonyRun, error) {
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		return nil, err
	}
	staging, err := os.MkdirTemp(p.dir, ".staging-"+name+"-")
	if err != nil {
		return nil, err
	}
	// Boulder's ceremony lints the AIA and CRL hosts against the public
	// suffix list: with cairn's addition they may end in a private suffix.
	env = append(slices.Clip(env), addition.Env(p.spec.Policy.PrivateSuffixes, nil, false)...)
	return &ceremonyRun{p: p, name: name, env: env, staging: staging}, nil
}

// output returns a staged path that becomes final on success. Outputs are
// moved in the order declared: declare the file that marks a step done
// (the certificate) last.
func (c *ceremonyRun) output(final string) string {
	staged := filepath.Join(c.staging, filepath.Base(final))
	c.outputs = append(c.outputs, [2]string{staged, final})
	return staged
}

// run executes the ceremony with cfg (pin is the PIN inside cfg, redacted
// in the kept copy) and moves the outputs into place.
func (c *ceremonyRun) run(ctx context.Context, cfg any, pin string) error {
	defer os.RemoveAll(c.staging)
	doc, err := yaml.Marshal(cfg)
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(c.staging, c.name+".yaml")
	if err := os.WriteFile(cfgPath, doc, 0o600); err != nil {
		return err
	}
	stamp := c.p.now().UTC().Format("20060102T150405Z")
	recordDir := filepath.Join(c.p.dir, "ceremonies")
	if err := os.MkdirAll(recordDir, 0o755); err != nil {
		return err
	}
	redacted := bytes.ReplaceAll(doc, []byte(pin), []byte("REDACTED"))
	if err := fsutil.WriteFileAtomic(filepath.Join(recordDir, stamp+"-"+c.name+".yaml"), redacted, 0o644); err != nil {
		return err
	}

	cmd := exec.CommandContext(ctx, c.p.opts.Ceremony, "-config", cfgPath)
	cmd.Env = c.env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	runErr := c.p.run(cmd)
	log := bytes.ReplaceAll(out.Bytes(), []byte(pin), []byte("REDACTED"))
	if err := fsutil.WriteFileAtomic(filepath.Join(recordDir, stamp+"-"+c.name+".log"), log, 0o644); err != nil {
		return err
	}
	if runErr != nil {
		return fmt.Errorf("ceremony %s failed: %v: %s (full log in %s)", c.name, runErr, lastLine(log), filepath.Join(recordDir, stamp+"-"+c.name+".log"))
	}
	for _, o := range c.outputs {
		staged, final := o[0], o[1]
		if err := os.MkdirAll(filepath.Dir(final), 0o755); err != nil {
			return err
		}
		if err := os.Chmod(staged, 0o644); err != nil {
			return fmt.Errorf("ceremony %s did not write %s: %w", c.name, filepath.Base(final), err)
		}
		if err := os.Rename(staged, final); err != nil {
			return err
		}
	}
	return nil
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}
