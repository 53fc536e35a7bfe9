// Package revocation revokes a certificate of the cluster wherever it was
// issued. A site revokes (and lists in its CRLs) only what its own
// database holds, and no other site may sign its CRLs, so a request is
// routed to the issuing site, found from the serial's first byte (each
// site's serialPrefix is unique).
package revocation

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cairn-pki/cairn/agent"
	"github.com/cairn-pki/cairn/cluster"
)

// Reasons are the CRL reason codes an operator may give (RFC 5280; the
// ones Boulder's admin tool takes).
// They are the ones the site agent passes on.
var Reasons = agent.Reasons

// CheckReason returns an error naming --reason unless r is one of Reasons.
func CheckReason(r string) error {
	if !slices.Contains(Reasons, r) {
		return fmt.Errorf("--reason %q: use one of %s", cluster.Excerpt(r), strings.Join(Reasons, ", "))
	}
	return nil
}

// ParseSerial reads a hex serial ("0x", colons and spaces allowed) and
// returns it in Boulder's form: lower-case hex of the 18-byte serial.
func ParseSerial(s string) (string, error) {
	clean := strings.NewReplacer(":", "", " ", "").Replace(strings.TrimPrefix(strings.ToLower(strings.TrimSpace(s)), "0x"))
	if len(clean)%2 == 1 {
		clean = "0" + clean // a number printed without its leading zero (Go's %x, cairn probe's serial fact)
	}
	b, err := hex.DecodeString(clean)
	if err != nil || len(b) == 0 || len(b) > 20 {
		return "", fmt.Errorf("--serial %q is not a certificate serial in hex (e.g. 01ab…, as `openssl x509 -serial` prints it)", cluster.Excerpt(s))
	}
	return serialHex(new(big.Int).SetBytes(b)), nil
}

func serialHex(n *big.Int) string { return fmt.Sprintf("%036x", n) }

// ReadCert reads a PEM certificate file (--cert).
func ReadCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--cert: %w", err)
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("--cert %s: no PEM CERTIFICATE in it", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("--cert %s: %w", path, err)
	}
	return c, nil
}

// Serial is a certificate's serial in Boulder's form.
func Serial(c *x509.Certificate) string { return serialHex(c.SerialNumber) }

// Route returns the site whose serial prefix is the serial's first byte.
func Route(spec *cluster.Spec, serial string) (string, error) {
	n, ok := new(big.Int).SetString(serial, 16)
	if !ok || n.Sign() <= 0 {
		return "", fmt.Errorf("serial %q is not hex", cluster.Excerpt(serial))
	}
	// Boulder serials are the prefix byte and 17 random bytes.
	b := n.Bytes()
	for _, s := range spec.Sites {
		if s.SerialPrefix.Value() == b[0] {
			return s.Name, nil
		}
	}
	return "", fmt.Errorf("serial %s starts with %02x, the serial prefix of no site in the spec: not issued by this cluster", serial, b[0])
}

// ErrAlreadyRevoked means the site had already revoked the certificate.
var ErrAlreadyRevoked = agent.ErrAlreadyRevoked

// ErrNotFound means the site holds no certificate with that serial.
var ErrNotFound = agent.ErrNotFound

// Admin revokes at a site with Boulder's admin tool and the site's own
// admin credential (the bundle's admin.json): what the site agent does on
// the site's host (hostrun.AgentBackend). Everyone else goes through the
// agent (Agents).
type Admin struct {
	Binary string                          // Boulder's admin tool
	Config func(site string) string        // the site's admin.json
	Run    func(*exec.Cmd) ([]byte, error) // nil: CombinedOutput (tests fake it)
}

// Revoke revokes serial at site with reason.
func (a Admin) Revoke(ctx context.Context, site, serial, reason string) error {
	if err := CheckReason(reason); err != nil {
		return err
	}
	cmd := a.command(ctx, site, "revoke-cert", "-serial", serial, "-reason", reason)
	run := a.Run
	if run == nil {
		run = (*exec.Cmd).CombinedOutput
	}
	out, err := run(cmd)
	if err == nil {
		return nil
	}
	text := string(out)
	switch {
	case strings.Contains(text, "already revoked") || strings.Contains(text, "AlreadyRevoked"):
		return ErrAlreadyRevoked
	case strings.Contains(text, "not found") || strings.Contains(text, "NotFound"):
		return fmt.Errorf("site %s: %w (%s)", site, ErrNotFound, lastLine(text))
	}
	return fmt.Errorf("site %s: admin revoke-cert: %v: %s", site, err, lastLine(text))
}

// BlockKey blocks issuance for the public key whose SPKI SHA-256 is
// spkiHash (hex) at site (Boulder's admin block-key); a key already
// blocked there is success.
func (a Admin) BlockKey(ctx context.Context, site, spkiHash, comment string) error {
	f, err := os.CreateTemp("", "cairn-spki-*.txt")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	fmt.Fprintln(f, spkiHash)
	f.Close()
	cmd := a.command(ctx, site, "block-key", "-spki-file", f.Name(), "-comment", comment)
	run := a.Run
	if run == nil {
		run = (*exec.Cmd).CombinedOutput
	}
	out, err := run(cmd)
	// Boulder's two ways of saying it had the key already ("checking if key
	// is already blocked: …" is a failure to reach the SA, not that).
	if err == nil || strings.Contains(string(out), "already exists in the 'blockedKeys' table") || strings.Contains(string(out), ": already blocked") {
		return nil
	}
	return fmt.Errorf("site %s: admin block-key: %v: %s", site, err, lastLine(string(out)))
}

// SPKIHash is the SHA-256 of a certificate's public key, in hex (what
// Boulder's blockedKeys table holds).
func SPKIHash(c *x509.Certificate) string {
	h := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(h[:])
}

// command is the admin tool for one subcommand at site, run in its
// config's directory (the controller's admin.json names its files
// relative to it).
func (a Admin) command(ctx context.Context, site, sub string, args ...string) *exec.Cmd {
	config := a.Config(site)
	cmd := exec.CommandContext(ctx, a.Binary, append([]string{"-config", config, "-dry-run=false", sub}, args...)...)
	cmd.Dir = filepath.Dir(config)
	return cmd
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	l := lines[len(lines)-1]
	if len(l) > 300 {
		l = l[:300]
	}
	return l
}
