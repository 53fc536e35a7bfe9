// Package boulderbin finds, or builds with `go install`, the Boulder
// binaries at exactly the version pinned in cairn's go.mod, so that the
// configs cairn renders from Boulder's structs and the binaries agree.
package boulderbin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/cairn-pki/cairn/cluster"
)

// Module and Version are the pinned Boulder module; a test keeps Version
// equal to go.mod.
const (
	Module  = "github.com/letsencrypt/boulder"
	Version = "v0.20260921.0"
)

// Binaries cairn uses, by name, with their package inside the module.
var packages = map[string]string{
	"boulder":     "cmd/boulder",
	"ceremony":    "cmd/ceremony",
	"admin":       "cmd/admin",
	"ct-test-srv": "test/ct-test-srv",
	"s3-test-srv": "test/s3-test-srv",
}

// EnvDir overrides where the binaries live.
const EnvDir = "CAIRN_BOULDER_BIN"

// Dir is where the pinned binaries are kept: $CAIRN_BOULDER_BIN, or a
// per-version directory in the user's cache, shared by every cluster.
func Dir() (string, error) { return DirFor(Version) }

// DirFor is where one Boulder release's binaries are kept: a directory
// per version, so several releases live side by side (sites upgrade one
// at a time). $CAIRN_BOULDER_BIN holds the pinned release's; other
// releases go next to it, in boulder-<version>/bin.
func DirFor(version string) (string, error) {
	if err := CheckVersion(version); err != nil {
		return "", err
	}
	if d := os.Getenv(EnvDir); d != "" {
		d, err := filepath.Abs(d)
		if err != nil || version == Version {
			return d, err
		}
		return filepath.Join(filepath.Dir(d), "boulder-"+version, "bin"), nil
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache directory for Boulder binaries (set %s): %w", EnvDir, err)
	}
	return filepath.Join(cache, "cairn", "boulder-"+version, "bin"), nil
}

var goTooOld = regexp.MustCompile(`requires go >= ([0-9.]+)`)

var versionRE = regexp.MustCompile(`^v0\.20[0-9]{6}\.[0-9]+$`)

// CheckVersion accepts a Boulder release tag (v0.YYYYMMDD.N).
func CheckVersion(version string) error {
	if !versionRE.MatchString(version) {
		return fmt.Errorf("%q is not a Boulder release tag like %s", cluster.Excerpt(version), Version)
	}
	return nil
}

// Ensure returns the paths of the named binaries at the pinned version,
// building the missing ones with the Go toolchain. Progress goes to w.
func Ensure(ctx context.Context, w io.Writer, names ...string) (map[string]string, error) {
	return EnsureVersion(ctx, w, Version, names...)
}

// EnsureVersion is Ensure for any Boulder release (each in its own
// directory). A release needs a Go toolchain at least as new as its go.mod
// says; the error says so when it is not.
func EnsureVersion(ctx context.Context, w io.Writer, version string, names ...string) (map[string]string, error) {
	dir, err := DirFor(version)
	if err != nil {
		return nil, err
	}
	paths := map[string]string{}
	var missing []string
	for _, n := range names {
		pkg, ok := packages[n]
		if !ok {
			return nil, fmt.Errorf("boulderbin: unknown binary %q", n)
		}
		p := filepath.Join(dir, n)
		paths[n] = p
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0 {
			continue
		}
		missing = append(missing, Module+"/"+pkg+"@"+version)
	}
	if len(missing) == 0 {
		return paths, nil
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return nil, fmt.Errorf("no Boulder binaries in %s and no Go toolchain on PATH to build them: install Go 1.26 or set %s to a directory holding %s",
			dir, EnvDir, strings.Join(names, ", "))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	// Several cairn processes (or test packages) may build at once.
	lock, err := os.OpenFile(filepath.Join(dir, ".build.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return nil, err
	}
	fmt.Fprintf(w, "building Boulder %s: %s (first time only; about a minute per binary on 2 cores)\n", version, shortNames(missing))
	start := time.Now()
	cmd := exec.CommandContext(ctx, goBin, append([]string{"install"}, missing...)...)
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOTOOLCHAIN=local", "GOFLAGS=-buildvcs=false")
	cmd.Dir = os.TempDir() // outside any module: `go install pkg@version` builds with Boulder's own go.mod
	out, err := cmd.CombinedOutput()
	if m := goTooOld.FindSubmatch(out); err != nil && m != nil {
		return nil, fmt.Errorf("building Boulder %s needs Go %s or newer (this toolchain: %s): pick a release built with it, or install that Go", version, m[1], runtime.Version())
	}
	if err != nil {
		return nil, fmt.Errorf("go install %s failed: %w\n%s", strings.Join(missing, " "), err, tail(out, 20))
	}
	fmt.Fprintf(w, "built in %.0fs into %s\n", time.Since(start).Seconds(), dir)
	for _, n := range names {
		if _, err := os.Stat(paths[n]); err != nil {
			return nil, errors.New("go install finished but " + paths[n] + " is missing")
		}
	}
	return paths, nil
}

func shortNames(pkgs []string) string {
	names := make([]string, len(pkgs))
	for i, p := range pkgs {
		p, _, _ = strings.Cut(p, "@")
		names[i] = filepath.Base(p)
	}
	return strings.Join(names, ", ")
}

func tail(b []byte, lines int) string {
	s := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(s) > lines {
		s = s[len(s)-lines:]
	}
	return strings.Join(s, "\n")
}

// SourceDir returns the pinned Boulder module's source directory in the Go
// module cache, downloading it if needed (for sa/db/*.sql).
func SourceDir(ctx context.Context) (string, error) { return SourceDirFor(ctx, Version) }

// SourceDirFor is SourceDir for any Boulder release.
func SourceDirFor(ctx context.Context, version string) (string, error) {
	if err := CheckVersion(version); err != nil {
		return "", err
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", errors.New("the Go toolchain is needed to fetch Boulder's database schema: install Go 1.26")
	}
	cmd := exec.CommandContext(ctx, goBin, "mod", "download", "-json", Module+"@"+version)
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local")
	cmd.Dir = os.TempDir()
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go mod download %s@%s: %w", Module, version, err)
	}
	var info struct{ Dir, Error string }
	if err := json.Unmarshal(out, &info); err != nil {
		return "", fmt.Errorf("go mod download: %w", err)
	}
	if info.Error != "" || info.Dir == "" {
		return "", fmt.Errorf("go mod download %s@%s: %s", Module, version, info.Error)
	}
	return info.Dir, nil
}
