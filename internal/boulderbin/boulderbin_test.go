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
