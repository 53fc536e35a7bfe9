package cluster

import (
	"os"
	"path/filepath"
	"testing"
)

// The same spec reached through a symlinked directory loads with the
// directory's own path: rendered paths (and so `lab up`'s restart
// decisions) do not depend on the way the user reached it.
func TestLoadResolvesSymlinks(t *testing.T) {
	real := filepath.Join(t.TempDir(), "lab")
	if err := os.Mkdir(real, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := Template([]string{"a", "b"})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(real, "cairn.yaml"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "linked")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	direct, err := Load(filepath.Join(real, "cairn.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	viaLink, err := Load(filepath.Join(link, "cairn.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := filepath.EvalSymlinks(real)
	if direct.Dir != want || viaLink.Dir != want || viaLink.File != filepath.Join(want, "cairn.yaml") {
		t.Fatalf("Dir %q and %q (file %q), want both %q", direct.Dir, viaLink.Dir, viaLink.File, want)
	}
}
