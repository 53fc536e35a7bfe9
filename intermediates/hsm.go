package intermediates

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
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

// slot returns the slot of the token, creating the SoftHSM token first if
// the backend is softhsm and it does not exist yet.
func (t token) slot(ctx context.Context) (uint, error) {
	if t.softhsmDir == "" {
		return pkcs11SlotByLabel(t.module, t.label)
	}
	if err := t.ensureSoftHSMDir(); err != nil {
		return 0, err
	}
	slots, err := t.softhsmSlots(ctx)
	if err != nil {
		return 0, err
	}
	if s, ok := slots[t.label]; ok {
		return s, nil
	}
	pin, err := t.pin()
	if err != nil {
		return 0, err
	}
	soPIN, err := fsutil.EnsureSecret(strings.TrimSuffix(t.pinFile, ".pin")+".so-pin", 16)
	if err != nil {
		return 0, err
	}
	out, err := t.softhsmUtil(ctx, "--init-token", "--free", "--label", t.label, "--pin", pin, "--so-pin", soPIN)
	if err != nil {
		return 0, fmt.Errorf("create SoftHSM token %q: %w", t.label, err)
	}
	// "The token has been initialized and is reassigned to slot 123"
	i := strings.LastIndex(out, "slot ")
	if i < 0 {
		return 0, fmt.Errorf("create SoftHSM token %q: no slot in %q", t.label, out)
	}
	s, err := strconv.ParseUint(strings.TrimSpace(out[i+5:]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("create SoftHSM token %q: no slot in %q", t.label, out)
	}
	return uint(s), nil
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

func (t token) softhsmUtil(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "softhsm2-util", args...)
	cmd.Env = t.env()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		if _, lookErr := exec.LookPath("softhsm2-util"); lookErr != nil {
			return "", fmt.Errorf("softhsm2-util not found: install the softhsm2 package (make deps)")
		}
		return "", fmt.Errorf("softhsm2-util %s: %w: %s", args[0], err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// softhsmSlots maps token label -> slot for initialized tokens.
func (t token) softhsmSlots(ctx context.Context) (map[string]uint, error) {
	out, err := t.softhsmUtil(ctx, "--show-slots")
	if err != nil {
		return nil, err
	}
	return parseSoftHSMSlots(out), nil
}

// parseSoftHSMSlots maps label -> slot of the initialized tokens in the
// output of `softhsm2-util --show-slots`.
func parseSoftHSMSlots(out string) map[string]uint {
	slots := map[string]uint{}
	var cur uint
	var initialized bool
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if rest, ok := strings.CutPrefix(line, "Slot "); ok {
			if n, err := strconv.ParseUint(strings.TrimSpace(rest), 10, 64); err == nil {
				cur, initialized = uint(n), false
			}
		}
		if rest, ok := strings.CutPrefix(line, "Initialized:"); ok {
			initialized = strings.TrimSpace(rest) == "yes"
		}
		if rest, ok := strings.CutPrefix(line, "Label:"); ok && initialized {
			if l := strings.TrimSpace(rest); l != "" {
				slots[l] = cur
			}
		}
	}
	return slots
}

// pkcs11SlotByLabel finds the slot of an existing token through the module.
func pkcs11SlotByLabel(module, label string) (uint, error) {
	p := pkcs11.New(module)
	if p == nil {
		return 0, fmt.Errorf("cannot load PKCS#11 module %s (check pki.hsm.module)", module)
	}
	defer p.Destroy()
	if err := p.Initialize(); err != nil {
		return 0, fmt.Errorf("initialize PKCS#11 module %s: %w", module, err)
	}
	defer p.Finalize()
	slots, err := p.GetSlotList(true)
	if err != nil {
		return 0, fmt.Errorf("list slots of %s: %w", module, err)
	}
	var seen []string
	for _, s := range slots {
		info, err := p.GetTokenInfo(s)
		if err != nil {
			continue
		}
		l := strings.TrimRight(info.Label, " \x00")
		if l == label {
			return s, nil
		}
		seen = append(seen, strconv.Quote(l))
	}
	return 0, fmt.Errorf("no token labelled %q in %s (tokens present: %s); create it with your HSM's tools first",
		label, module, strings.Join(seen, ", "))
}

// tokenFor builds the token of a holder from the spec.
func tokenFor(spec *cluster.Spec, tok cluster.Token, softhsmDir string) token {
	t := token{module: spec.PKI.HSM.Module, label: tok.Label, pinFile: spec.Path(tok.PINFile)}
	if spec.PKI.HSM.Backend == cluster.BackendSoftHSM {
		t.softhsmDir = softhsmDir
	}
	return t
}
