package intermediates

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/pkcs11"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/internal/fsutil"
	"github.com/cairn-pki/cairn/internal/testenv"
)

// TestMain lets the test binary stand in for the cairn executable
// (Options.Signer): run as `<test binary> pki token|sign-infra`, it is
// that child.
func TestMain(m *testing.M) {
	if len(os.Args) == 3 && os.Args[1] == "pki" {
		os.Exit(pkiChild(os.Args[2]))
	}
	os.Exit(m.Run())
}

func pkiChild(sub string) int {
	var err error
	switch sub {
	case "token":
		err = TokenFromStdin(os.Stdin, os.Stdout)
	case "sign-infra":
		err = SignFromStdin(os.Stdin, os.Stdout)
	default:
		err = fmt.Errorf("no pki child %q", sub)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func testExecutable(t testing.TB) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// commands records every command a PKI starts (Options.Run), then runs it.
type commands struct {
	mu   sync.Mutex
	argv [][]string
	env  [][]string
}

func (c *commands) run(cmd *exec.Cmd) error {
	c.mu.Lock()
	c.argv = append(c.argv, slices.Clone(cmd.Args))
	c.env = append(c.env, slices.Clone(cmd.Env))
	c.mu.Unlock()
	return cmd.Run()
}

// count is how many commands ran prog.
func (c *commands) count(prog string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, a := range c.argv {
		if a[0] == prog {
			n++
		}
	}
	return n
}

// find says where secret appears in a recorded command line or
// environment (the secret itself replaced), "" if nowhere.
func (c *commands) find(secret string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if secret == "" {
		return "an empty secret file"
	}
	for i, a := range c.argv {
		line := strings.Join(a, " ")
		if strings.Contains(line, secret) {
			return "the command line " + strings.ReplaceAll(line, secret, "<secret>")
		}
		for _, e := range c.env[i] {
			if strings.Contains(e, secret) {
				name, _, _ := strings.Cut(e, "=")
				return "variable " + name + " in the environment of " + a[0]
			}
		}
	}
	return ""
}

// Finding and creating a SoftHSM token runs in a child of the cairn
// executable whose command line and environment hold no PIN: the request
// on its standard input names the PIN files.
func TestTokenChildGetsNoPIN(t *testing.T) {
	spec := cluster.Default([]string{"a"})
	spec.Dir = t.TempDir()
	var argv, env []string
	var stdin []byte
	fake := func(cmd *exec.Cmd) error {
		argv, env = cmd.Args, cmd.Env
		stdin, _ = io.ReadAll(cmd.Stdin)
		_, err := io.WriteString(cmd.Stdout, `{"slot":7,"created":true,"tokens":["lab-a"]}`+"\n")
		return err
	}
	p, unlock, err := Open(spec, Options{Signer: "/opt/cairn", Run: fake})
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	tok := p.siteToken(spec.Sites[0])
	slot, pin, err := p.open(context.Background(), tok)
	if err != nil || slot != 7 {
		t.Fatalf("open = %d, %v", slot, err)
	}
	if want := []string{"/opt/cairn", "pki", "token"}; !slices.Equal(argv, want) {
		t.Errorf("argv %q, want %q", argv, want)
	}
	if !slices.Contains(env, "SOFTHSM2_CONF="+tok.softhsmConf()) {
		t.Errorf("the child's environment has no SOFTHSM2_CONF=%s", tok.softhsmConf())
	}
	var req TokenRequest
	if err := json.Unmarshal(stdin, &req); err != nil {
		t.Fatal(err)
	}
	if want := (TokenRequest{Module: tok.module, Label: tok.label, PINFile: tok.pinFile, SOPINFile: tok.soPINFile()}); req != want {
		t.Errorf("request %+v, want %+v", req, want)
	}
	if pin == "" || strings.Contains(strings.Join(argv, " ")+strings.Join(env, "\n")+string(stdin), pin) {
		t.Errorf("the PIN (%d bytes) reached the child other than through its file", len(pin))
	}
	p.opts.Signer = ""
	if _, _, err := p.open(context.Background(), tok); err == nil || !strings.Contains(err.Error(), "Options.Signer") {
		t.Errorf("no cairn executable: %v", err)
	}
}

// A SoftHSM token is created through PKCS#11 (C_InitToken, C_InitPIN) in
// the child, once, and both PINs it was given work.
func TestSoftHSMTokenCreatedThroughPKCS11(t *testing.T) {
	testenv.Integration(t, "softhsm2-util") // the softhsm2 package
	spec := cluster.Default([]string{"a"})
	spec.Dir = t.TempDir()
	rec := &commands{}
	p, unlock, err := Open(spec, Options{Signer: testExecutable(t), Run: rec.run})
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	ctx := context.Background()
	tok := p.siteToken(spec.Sites[0])
	slot, pin, err := p.open(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	if again, _, err := p.open(ctx, tok); err != nil || again != slot {
		t.Fatalf("second open: slot %d (first %d), %v", again, slot, err)
	}
	if got := tokensIn(t, p, tok); !slices.Equal(got, []string{tok.label}) {
		t.Fatalf("tokens %q, want only %q", got, tok.label)
	}
	soPIN, err := fsutil.ReadSecret(tok.soPINFile()) // refuses a file others may read
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{pin, soPIN} {
		if where := rec.find(secret); where != "" {
			t.Errorf("a PIN is in %s", where)
		}
	}
	if n := rec.count(p.opts.Signer); n != 3 {
		t.Errorf("%d token children, want 3", n)
	}

	// Log in with each PIN through the module, in this process, with the
	// token's configuration.
	t.Setenv("SOFTHSM2_CONF", tok.softhsmConf())
	m := pkcs11.New(tok.module)
	if m == nil {
		t.Fatalf("cannot load %s", tok.module)
	}
	defer m.Destroy()
	if err := m.Initialize(); err != nil {
		t.Fatal(err)
	}
	defer m.Finalize()
	info, err := m.GetTokenInfo(slot)
	if err != nil {
		t.Fatal(err)
	}
	if l := strings.TrimRight(info.Label, " "); l != tok.label || info.Flags&pkcs11.CKF_USER_PIN_INITIALIZED == 0 {
		t.Errorf("token %q, flags %#x", l, info.Flags)
	}
	sess, err := m.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION) // the SO logs in read-write only
	if err != nil {
		t.Fatal(err)
	}
	defer m.CloseSession(sess)
	for _, c := range []struct {
		who  uint
		pin  string
		good bool
	}{{pkcs11.CKU_USER, pin, true}, {pkcs11.CKU_USER, pin + "0", false}, {pkcs11.CKU_SO, soPIN, true}, {pkcs11.CKU_SO, pin, false}} {
		err := m.Login(sess, c.who, c.pin)
		if (err == nil) != c.good {
			t.Errorf("login as %s with the %s PIN: %v", map[uint]string{pkcs11.CKU_USER: "user", pkcs11.CKU_SO: "SO"}[c.who], map[bool]string{true: "right", false: "wrong"}[c.good], err)
		}
		if err == nil {
			m.Logout(sess)
		}
	}
}

// The child answers a request it cannot read, or a module it cannot
// load, with one line naming what to fix.
func TestTokenChildRefusals(t *testing.T) {
	var out bytes.Buffer
	if err := TokenFromStdin(strings.NewReader("{"), &out); err == nil || !strings.HasPrefix(err.Error(), "token request") || out.Len() != 0 {
		t.Errorf("bad request: %v, wrote %q", err, out.String())
	}
	if _, err := EnsureToken(TokenRequest{Module: "/nonexistent/libpkcs11.so", Label: "x"}); err == nil || !strings.Contains(err.Error(), "pki.hsm.module") {
		t.Errorf("missing module: %v", err)
	}
}
