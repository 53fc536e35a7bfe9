package rfc2136

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadKey(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "k.key")
	os.WriteFile(p, []byte("key \"lab-controller\" {\n\talgorithm hmac-sha256;\n\tsecret \"c2VjcmV0\";\n};\n"), 0o600)
	k, err := ReadKey(p)
	if err != nil || k != (Key{Name: "lab-controller", Algorithm: "hmac-sha256", Secret: "c2VjcmV0"}) {
		t.Fatalf("%+v %v", k, err)
	}
	os.Chmod(p, 0o644)
	if _, err := ReadKey(p); err == nil {
		t.Error("a key others can read was accepted")
	}
	os.WriteFile(p, []byte("not a key"), 0o600)
	os.Chmod(p, 0o600)
	if _, err := ReadKey(p); err == nil || !strings.Contains(err.Error(), "tsig-keygen format") {
		t.Errorf("not a key: %v", err)
	}
}

func TestSplit(t *testing.T) {
	s := strings.Repeat("x", 600)
	parts := Split(s)
	if len(parts) != 3 || len(parts[0]) != 255 || len(parts[2]) != 90 || strings.Join(parts, "") != s {
		t.Fatalf("%d parts", len(parts))
	}
	if p := Split(""); len(p) != 1 || p[0] != "" {
		t.Fatalf("empty: %q", p)
	}
}
