package boulderbin

import (
	"bytes"
	"context"
	"debug/elf"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairn-pki/cairn/internal/boulderbin/addition"
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

// A binary is rebuilt when it is missing, not executable, or was built
// without this addition (no marker, or another digest).
func TestStale(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("boulder", "#!/bin/true\n", 0o755)                      // built before the addition
	write("ceremony", "#!/bin/true\n", 0o755)                     // built with another addition
	write(".ceremony.addition", "0123456789abcdef\n", 0o644)      //
	write("admin", "#!/bin/true\n", 0o755)                        // current
	write(".admin.addition", addition.Digest()+"\n", 0o644)       //
	write("ct-test-srv", "not executable", 0o644)                 //
	write(".ct-test-srv.addition", addition.Digest()+"\n", 0o644) //
	got := stale(dir, []string{"boulder", "ceremony", "admin", "ct-test-srv", "s3-test-srv"})
	if want := []string{"boulder", "ceremony", "ct-test-srv", "s3-test-srv"}; !slices.Equal(got, want) {
		t.Fatalf("stale = %v, want %v", got, want)
	}
}

// The pinned release takes the addition: its iana package, built with
// it, accepts names under a private suffix and connects to an allowed
// network only with the environment set, and refuses the rest as before.
func TestCheckAdditionPinned(t *testing.T) {
	if testing.Short() {
		t.Skip("builds Boulder's iana package")
	}
	start := time.Now()
	if err := CheckAddition(context.Background(), Version); err != nil {
		t.Fatal(err)
	}
	t.Logf("checked in %s", time.Since(start).Round(time.Millisecond))
}

// A release that renamed what the addition names fails with one line that
// names the release and what no longer applies.
func TestCheckAdditionRenamed(t *testing.T) {
	if testing.Short() {
		t.Skip("builds Boulder's iana package")
	}
	patchIP(t, func(b []byte) []byte {
		return bytes.ReplaceAll(b, []byte("reservedPrefixes"), []byte("reservedBlocks"))
	})
	err := CheckAddition(context.Background(), Version)
	if err == nil {
		t.Fatal("a release without reservedPrefixes passed the check")
	}
	msg := err.Error()
	t.Log(msg)
	for _, want := range []string{"Boulder " + Version, "no longer applies", "reservedPrefixes"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not say %q", msg, want)
		}
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("error is not one line: %q", msg)
	}
}

// A release whose iana package no longer consults the reserved blocks
// builds but fails the self-check.
func TestCheckAdditionNoEffect(t *testing.T) {
	if testing.Short() {
		t.Skip("builds Boulder's iana package")
	}
	patchIP(t, func(b []byte) []byte {
		// IsReservedAddr walks a copy taken before the addition runs.
		b = bytes.Replace(b, []byte("for _, rpx := range reservedPrefixes {\n\t\tif rpx.addressBlock.Contains(ip)"),
			[]byte("for _, rpx := range frozen {\n\t\tif rpx.addressBlock.Contains(ip)"), 1)
		return append(b, []byte("\nvar frozen []reservedPrefix\n\nfunc init() { frozen = slices.Clone(reservedPrefixes) }\n")...)
	})
	err := CheckAddition(context.Background(), Version)
	if err == nil || !strings.Contains(err.Error(), "builds with Boulder "+Version+" but does not work: the addition with its environment: 10.1.2.3 is refused") {
		t.Fatalf("err = %v", err)
	}
}

// The boulder binary cairn runs carries the addition (its iana package
// has the addition's functions) and records which addition it was built
// with; the lab tests check what it does.
func TestEnsureBuildsWithAddition(t *testing.T) {
	if testing.Short() {
		t.Skip("builds Boulder")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	paths, err := Ensure(ctx, os.Stderr, "boulder")
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.Open(paths["boulder"])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(syms, func(s elf.Symbol) bool { return s.Name == Module+"/iana.cairnApply" }) {
		t.Fatalf("%s has no %s/iana.cairnApply: built without the addition", paths["boulder"], Module)
	}
	if got := stale(filepath.Dir(paths["boulder"]), []string{"boulder"}); len(got) != 0 {
		t.Fatalf("boulder is still stale after Ensure")
	}
}

// patchIP has the check copy Boulder's source with iana/ip.go changed by
// edit, until the test ends.
func patchIP(t *testing.T, edit func([]byte) []byte) {
	patchSource = func(dir string) error {
		f := filepath.Join(dir, "iana", "ip.go")
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		return os.WriteFile(f, edit(b), 0o644)
	}
	t.Cleanup(func() { patchSource = nil })
}
