package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/cairn-pki/cairn/internal/labtest"
	"github.com/cairn-pki/cairn/internal/testenv"
)

// cairnBin is the CLI built once for these tests.
func cairnBin(t *testing.T) string { return labtest.CairnBinary(t) }

// run runs cairn in dir and returns stdout, stderr and the exit code.
func run(t *testing.T, bin, dir string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

func TestValidateReportsEveryProblemWithoutStackTrace(t *testing.T) {
	bin := cairnBin(t)
	dir := t.TempDir()
	spec := "name: lab\nsites:\n  - name: a\n    serialPrefix: 0x11\n  - name: b\n    serialPrefix: 0x11\nwibble: 1\n"
	os.WriteFile(filepath.Join(dir, "cairn.yaml"), []byte(spec), 0o644)
	_, stderr, code := run(t, bin, dir, "validate")
	if code != 1 {
		t.Fatalf("exit %d, want 1; stderr:\n%s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	want := []string{
		"cairn: line 6: sites[1].serialPrefix: 0x11 already used by sites[0]",
		"cairn: line 7: wibble: unknown field",
	}
	if len(lines) != 2 || lines[0] != want[0] || !strings.HasPrefix(lines[1], want[1]) {
		t.Fatalf("stderr:\n%s\nwant lines starting:\n%s", stderr, strings.Join(want, "\n"))
	}
	if strings.Contains(stderr, "goroutine") || strings.Contains(stderr, "Usage:") {
		t.Errorf("stack trace or usage printed:\n%s", stderr)
	}

	// Boulder's own limit: serial prefix 0x80 is refused before anything starts.
	os.WriteFile(filepath.Join(dir, "cairn.yaml"), []byte(strings.Replace(spec, "0x11\nwibble: 1", "0x80", 1)), 0o644)
	if _, stderr, code := run(t, bin, dir, "validate", "-o", "json"); code != 1 || strings.Contains(stderr, "goroutine") {
		t.Fatalf("0x80: exit %d\n%s", code, stderr)
	}
	if _, stderr, code := run(t, bin, dir, "validate", "-o", "yaml"); code != 1 || !strings.Contains(stderr, "-o \"yaml\"") {
		t.Errorf("bad -o: exit %d %s", code, stderr)
	}
}

func TestInitRefusesToClobber(t *testing.T) {
	bin := cairnBin(t)
	dir := t.TempDir()
	if _, stderr, code := run(t, bin, dir, "init", "--sites", "a,b"); code != 0 {
		t.Fatal(stderr)
	}
	if out, _, code := run(t, bin, dir, "init", "--sites", "a,b"); code != 0 || !strings.Contains(out, "up to date") {
		t.Fatalf("re-init same: %d %s", code, out)
	}
	if _, stderr, code := run(t, bin, dir, "init", "--sites", "a,b,c"); code != 1 || !strings.Contains(stderr, "--force") {
		t.Fatalf("re-init different: %d %s", code, stderr)
	}
	if _, stderr, code := run(t, bin, dir, "init", "--dir", "x", "--sites", "A_1"); code != 1 || !strings.Contains(stderr, "sites[0].name") {
		t.Fatalf("bad site name: %d %s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "x", "cairn.yaml")); err == nil {
		t.Error("invalid spec written")
	}
}

// The acceptance path of a new user: init, pki init, status, init again,
// revoke a site, verify with openssl.
func TestPKIAcceptance(t *testing.T) {
	testenv.Integration(t, "softhsm2-util", "openssl")
	testenv.Boulder(t, "ceremony")
	bin := cairnBin(t)
	top := t.TempDir()
	if _, stderr, code := run(t, bin, top, "init", "--dir", "X", "--sites", "a,b,c"); code != 0 {
		t.Fatal(stderr)
	}
	dir := filepath.Join(top, "X")
	if _, stderr, code := run(t, bin, dir, "pki", "init"); code != 0 {
		t.Fatal(stderr)
	}
	out, stderr, code := run(t, bin, dir, "pki", "status", "-o", "json")
	if code != 0 {
		t.Fatal(stderr)
	}
	var st struct {
		RootCRL      string `json:"rootCRL"`
		Certificates []struct {
			Role, Site, KeyType, Subject, CertFile string
			Revoked                                bool
		} `json:"certificates"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	roles := map[string]int{}
	keyTypes := map[string]bool{}
	var rootFile string
	for _, c := range st.Certificates {
		roles[c.Role]++
		if c.Role == "intermediate" {
			keyTypes[c.Site+"/"+c.KeyType] = true
		}
		if c.Role == "root" {
			rootFile = c.CertFile
		}
	}
	if roles["root"] != 1 || roles["intermediate"] != 6 || len(keyTypes) != 6 || st.RootCRL == "" {
		t.Fatalf("status: roles %v, key types %v, rootCRL %q", roles, keyTypes, st.RootCRL)
	}
	for _, s := range []string{"a", "b", "c"} {
		if !keyTypes[s+"/ecdsa-p384"] || !keyTypes[s+"/rsa-2048"] {
			t.Errorf("site %s lacks an ECDSA or RSA intermediate: %v", s, keyTypes)
		}
	}

	keyFiles := func() map[string]string {
		m := map[string]string{}
		filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
			if err == nil && !info.IsDir() && (strings.Contains(p, "/tokens/") || strings.Contains(p, "/secrets/")) && !strings.HasSuffix(p, ".lock") {
				b, _ := os.ReadFile(p)
				m[p] = string(b)
				if info.Mode().Perm() != 0o600 {
					t.Errorf("key material %s has mode %o", p, info.Mode().Perm())
				}
			}
			return nil
		})
		return m
	}
	before := keyFiles()
	if len(before) == 0 {
		t.Fatal("no key files found")
	}
	if _, stderr, code := run(t, bin, dir, "pki", "init"); code != 0 {
		t.Fatal(stderr)
	}
	after := keyFiles()
	for p, b := range before {
		if after[p] != b {
			t.Errorf("second pki init changed %s", p)
		}
	}
	if len(after) != len(before) {
		t.Errorf("second pki init added key files: %d -> %d", len(before), len(after))
	}

	if _, stderr, code := run(t, bin, dir, "pki", "revoke-site", "b"); code != 0 {
		t.Fatal(stderr)
	}
	for _, c := range st.Certificates {
		if c.Role != "intermediate" {
			continue
		}
		out, err := exec.Command("openssl", "verify", "-crl_check", "-CAfile", rootFile, "-CRLfile", st.RootCRL, c.CertFile).CombinedOutput()
		if c.Site == "b" && (err == nil || !strings.Contains(string(out), "certificate revoked")) {
			t.Errorf("%s still verifies after revoke-site b: %s", c.CertFile, out)
		}
		if c.Site != "b" && err != nil {
			t.Errorf("%s fails after revoke-site b: %s", c.CertFile, out)
		}
	}
	if _, stderr, code := run(t, bin, dir, "pki", "revoke-site", "zz"); code != 1 || !strings.Contains(stderr, `no site "zz"`) {
		t.Errorf("unknown site: %d %s", code, stderr)
	}
}

// cairn dns key: add writes a 0600 key named after its host, list shows
// it, bad input is one line naming --name, remove deletes it.
func TestDNSKeyCommands(t *testing.T) {
	bin := cairnBin(t)
	dir := t.TempDir()
	if _, stderr, code := run(t, bin, dir, "init", "--sites", "a"); code != 0 {
		t.Fatal(stderr)
	}
	const host = "web.lab.home.arpa"
	out, stderr, code := run(t, bin, dir, "dns", "key", "add", "--name", host)
	if code != 0 || !strings.Contains(out, "may write only _acme-challenge."+host+" TXT") {
		t.Fatalf("add: exit %d\n%s%s", code, out, stderr)
	}
	file := filepath.Join(dir, "secrets", "tsig-clients", host+".key")
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %v", file, err)
	}
	out, _, code = run(t, bin, dir, "dns", "key", "list", "-o", "json")
	var keys []struct{ Name, File string }
	if err := json.Unmarshal([]byte(out), &keys); code != 0 || err != nil || len(keys) != 1 || keys[0].Name != host || keys[0].File != file {
		t.Fatalf("list: exit %d, %v: %s", code, err, out)
	}
	b, _ := os.ReadFile(file)
	secret := strings.Split(strings.SplitN(string(b), "secret \"", 2)[1], "\"")[0]
	if strings.Contains(out, secret) {
		t.Fatalf("list prints the secret: %s", out)
	}
	for _, bad := range [][]string{{"add", "--name", host}, {"add", "--name", "web.example.org"}, {"remove", "--name", "nope.lab.home.arpa"}} {
		_, stderr, code := run(t, bin, dir, append([]string{"dns", "key"}, bad...)...)
		if code != 1 || !strings.HasPrefix(stderr, "cairn: --name ") || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("%v: exit %d, stderr %q", bad, code, stderr)
		}
	}
	if _, stderr, code := run(t, bin, dir, "dns", "key", "remove", "--name", host); code != 0 {
		t.Fatal(stderr)
	}
	if _, err := os.Stat(file); err == nil {
		t.Fatal("remove left the key file")
	}
}

// -o json either prints JSON or is refused: every runnable command not in
// jsonCommands refuses it before doing anything, naming itself; every
// name in jsonCommands is a command.
func TestJSONOutputWorksOrIsRefused(t *testing.T) {
	root := newRoot()
	seen := map[string]bool{}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			if sub.Name() == "help" || sub.Name() == "completion" {
				continue
			}
			walk(sub)
		}
		if !c.Runnable() || c == root {
			return
		}
		path := strings.TrimPrefix(c.CommandPath(), "cairn ")
		seen[path] = true
		if jsonCommands[path] {
			return
		}
		try := func(args ...string) error {
			r := newRoot()
			r.SetArgs(append(append(strings.Fields(path), args...), "-o", "json"))
			r.SetOut(io.Discard)
			r.SetErr(io.Discard)
			return r.Execute()
		}
		err := try()
		if err != nil && strings.Contains(err.Error(), "arg(s)") {
			err = try("x") // a command that needs an argument checks it first
		}
		if err == nil || !strings.Contains(err.Error(), "`cairn "+path+"` has no JSON output") {
			t.Errorf("cairn %s -o json: %v, want the refusal", path, err)
		}
	}
	walk(root)
	for path := range jsonCommands {
		if !seen[path] {
			t.Errorf("jsonCommands names %q, which is not a command", path)
		}
	}
	if len(seen) < 40 {
		t.Fatalf("walked %d commands", len(seen))
	}
}
