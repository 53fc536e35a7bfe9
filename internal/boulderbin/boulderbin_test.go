package boulderbin

import (
	"os"
	"regexp"
	"testing"
)

// The binaries must be built at the version whose config structs cairn
// compiles against.
func TestVersionMatchesGoMod(t *testing.T) {
	mod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*github\.com/letsencrypt/boulder (v\S+)`).FindSubmatch(mod)
	if m == nil {
		t.Fatal("boulder not required in go.mod")
	}
	if string(m[1]) != Version {
		t.Fatalf("go.mod pins boulder %s, boulderbin.Version is %s", m[1], Version)
	}
}

func TestDirOverride(t *testing.T) {
	t.Setenv(EnvDir, "/opt/boulder-bin")
	if d, _ := Dir(); d != "/opt/boulder-bin" {
		t.Fatalf("Dir() = %s", d)
	}
}

// Releases live side by side: the override directory holds the pinned
// one, any other goes next to it; a bad tag is refused by name.
func TestDirForVersions(t *testing.T) {
	t.Setenv(EnvDir, "/opt/cairn/boulder/bin")
	if d, _ := DirFor(Version); d != "/opt/cairn/boulder/bin" {
		t.Fatalf("DirFor(pinned) = %s", d)
	}
	if d, _ := DirFor("v0.20260908.0"); d != "/opt/cairn/boulder/boulder-v0.20260908.0/bin" {
		t.Fatalf("DirFor(other) = %s", d)
	}
	for _, bad := range []string{"", "latest", "v1.2.3", "v0.20260908.0/../x"} {
		if _, err := DirFor(bad); err == nil {
			t.Errorf("DirFor(%q) accepted", bad)
		}
	}
}
