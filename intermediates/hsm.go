package intermediates

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/miekg/pkcs11"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/internal/fsutil"
)

// token is one PKCS#11 token holding keys of one holder: the root, the
// infrastructure CA, or one site. Every holder has its own token (and, with
// SoftHSM, its own token directory), so nothing given to a site can contain
// root key material.
type token struct {
	module  string
	label   string
	pinFile string
	// softhsmDir is the holder's SoftHSM directory (softhsm backend only);
	// its softhsm2.conf points at its own tokens/ directory.
	softhsmDir string
}

func (t token) softhsmConf() string { return filepath.Join(t.softhsmDir, "softhsm2.conf") }

// soPINFile holds the security officer PIN of a SoftHSM token cairn made.
func (t token) soPINFile() string { return strings.TrimSuffix(t.pinFile, ".pin") + ".so-pin" }

// env is the environment for processes that use the token.
func (t token) env() []string {
	env := os.Environ()
	if t.softhsmDir != "" {
		env = append(env, "SOFTHSM2_CONF="+t.softhsmConf())
	}
	return env
}

func (t token) pin() (string, error) {
	if t.softhsmDir != "" {
		return fsutil.EnsureSecret(t.pinFile, 16)
	}
	pin, err := fsutil.ReadSecret(t.pinFile)
	if err != nil {
		return "", fmt.Errorf("PIN of token %q: %w", t.label, err)
	}
	return pin, nil
}

// slot returns the slot of the token. With the softhsm backend it first
// creates the token if it does not exist yet: in `cairn pki token`, a
// child with the token's SOFTHSM2_CONF in its environment, through
// PKCS#11 itself (softhsm2-util would want both PINs on its command line,
// where every user of the machine can read them).
func (p *PKI) slot(ctx context.Context, t token) (uint, error) {
	if t.softhsmDir == "" {
		r, err := EnsureToken(TokenRequest{Module: t.module, Label: t.label})
		return r.Slot, err
	}
	if err := t.ensureSoftHSMDir(); err != nil {
		return 0, err
	}
	out, err := p.inChild(ctx, t, "token", TokenRequest{Module: t.module, Label: t.label, PINFile: t.pinFile, SOPINFile: t.soPINFile()})
	if err != nil {
		return 0, fmt.Errorf("SoftHSM token %q: %w", t.label, err)
	}
	var r TokenReply
	if err := json.Unmarshal(out, &r); err != nil {
		return 0, fmt.Errorf("SoftHSM token %q: cairn pki token answered %q: %w", t.label, out, err)
	}
	return r.Slot, nil
}

func (t token) ensureSoftHSMDir() error {
	tokens := filepath.Join(t.softhsmDir, "tokens")
	if err := os.MkdirAll(tokens, 0o700); err != nil {
		return err
	}
	conf := fmt.Sprintf("# SoftHSM2 for token %s, written by cairn\ndirectories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", t.label, tokens)
	if b, err := os.ReadFile(t.softhsmConf()); err == nil && string(b) == conf {
		return nil
	}
	return fsutil.WriteFileAtomic(t.softhsmConf(), []byte(conf), 0o644)
}

// TokenRequest is what `cairn pki token` reads on its standard input: the
// token labelled Label in Module, to be found or, when PINFile and
// SOPINFile are set, created in a free slot. It names the PIN files; the
// PINs themselves never leave them but into the module.
type TokenRequest struct {
	Module    string `json:"module"`
	Label     string `json:"label"`
	PINFile   string `json:"pinFile,omitempty"`   // the user PIN (must exist)
	SOPINFile string `json:"soPinFile,omitempty"` // the SO PIN (created with the token)
}

// TokenReply is what `cairn pki token` writes: the token's slot and the
// labels of every initialised token the module shows.
type TokenReply struct {
	Slot    uint     `json:"slot"`
	Created bool     `json:"created,omitempty"`
	Tokens  []string `json:"tokens"`
}

// TokenFromStdin is `cairn pki token`: a TokenRequest in (JSON), a
// TokenReply out (JSON).
func TokenFromStdin(in io.Reader, out io.Writer) error {
	var req TokenRequest
	if err := json.NewDecoder(io.LimitReader(in, 1<<20)).Decode(&req); err != nil {
		return fmt.Errorf("token request: %w", err)
	}
	r, err := EnsureToken(req)
	if err != nil {
		return err
	}
	return json.NewEncoder(out).Encode(r)
}

// EnsureToken finds the token of req through its module, in this process
// (a SoftHSM configuration must be in this process's environment), and
// creates it if it is missing and req names its PIN files: C_InitToken
// with the SO PIN in the first free slot, then C_InitPIN as the SO.
func EnsureToken(req TokenRequest) (TokenReply, error) {
	p := pkcs11.New(req.Module)
	if p == nil {
		return TokenReply{}, fmt.Errorf("cannot load PKCS#11 module %s: check pki.hsm.module (SoftHSM: install the softhsm2 package, make deps)", req.Module)
	}
	defer p.Destroy()
	if err := p.Initialize(); err != nil {
		return TokenReply{}, fmt.Errorf("initialize PKCS#11 module %s: %w", req.Module, err)
	}
	defer func() { p.Finalize() }()
	r, free, err := findToken(p, req.Label)
	if err != nil || r.Slot != noSlot {
		return r, err
	}
	if req.PINFile == "" || req.SOPINFile == "" {
		quoted := make([]string, len(r.Tokens))
		for i, l := range r.Tokens {
			quoted[i] = strconv.Quote(l)
		}
		return r, fmt.Errorf("no token labelled %q in %s (tokens present: %s); create it with your HSM's tools first",
			req.Label, req.Module, strings.Join(quoted, ", "))
	}
	if free == noSlot {
		return r, fmt.Errorf("no free slot in %s to create token %q", req.Module, req.Label)
	}
	if len(req.Label) > 32 {
		return r, fmt.Errorf("token label %q is longer than the 32 bytes PKCS#11 allows", req.Label)
	}
	pin, err := fsutil.ReadSecret(req.PINFile)
	if err != nil {
		return r, err
	}
	soPIN, err := fsutil.EnsureSecret(req.SOPINFile, 16)
	if err != nil {
		return r, err
	}
	if err := initToken(p, free, req.Label, pin, soPIN); err != nil {
		return r, fmt.Errorf("create token %q in %s: %w", req.Label, req.Module, err)
	}
	// SoftHSM gives an initialised token a slot ID of its own, seen only
	// after the module is loaded again.
	if err := p.Finalize(); err != nil {
		return r, err
	}
	if err := p.Initialize(); err != nil {
		return r, err
	}
	r, _, err = findToken(p, req.Label)
	if err == nil && r.Slot == noSlot {
		err = fmt.Errorf("token %q was created but %s does not show it", req.Label, req.Module)
	}
	r.Created = true
	return r, err
}

const noSlot = ^uint(0)

// findToken returns the slot of the token labelled label (noSlot if none)
// with the labels of every initialised token, and the first slot holding
// an uninitialised token.
func findToken(p *pkcs11.Ctx, label string) (TokenReply, uint, error) {
	r, free := TokenReply{Slot: noSlot, Tokens: []string{}}, noSlot
	slots, err := p.GetSlotList(false)
	if err != nil {
		return r, free, fmt.Errorf("list slots: %w", err)
	}
	for _, s := range slots {
		info, err := p.GetTokenInfo(s)
		if err != nil {
			continue // no token in the slot
		}
		if info.Flags&pkcs11.CKF_TOKEN_INITIALIZED == 0 {
			if free == noSlot {
				free = s
			}
			continue
		}
		l := strings.TrimRight(info.Label, " \x00")
		if l == label && r.Slot == noSlot {
			r.Slot = s
		}
		r.Tokens = append(r.Tokens, l)
	}
	return r, free, nil
}

// initToken initialises the token in slot with the SO PIN and sets its
// user PIN as the SO.
func initToken(p *pkcs11.Ctx, slot uint, label, pin, soPIN string) error {
	if err := p.InitToken(slot, soPIN, label); err != nil {
		return fmt.Errorf("C_InitToken: %w", err)
	}
	sess, err := p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return fmt.Errorf("C_OpenSession: %w", err)
	}
	defer p.CloseSession(sess)
	if err := p.Login(sess, pkcs11.CKU_SO, soPIN); err != nil {
		return fmt.Errorf("C_Login as SO: %w", err)
	}
	defer p.Logout(sess)
	if err := p.InitPIN(sess, pin); err != nil {
		return fmt.Errorf("C_InitPIN: %w", err)
	}
	return nil
}

// tokenFor builds the token of a holder from the spec.
func tokenFor(spec *cluster.Spec, tok cluster.Token, softhsmDir string) token {
	t := token{module: spec.PKI.HSM.Module, label: tok.Label, pinFile: spec.Path(tok.PINFile)}
	if spec.PKI.HSM.Backend == cluster.BackendSoftHSM {
		t.softhsmDir = softhsmDir
	}
	return t
}
