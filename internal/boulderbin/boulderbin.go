// Package boulderbin finds, or builds, the Boulder binaries at exactly the
// version pinned in cairn's go.mod (or a release an upgrade names), so
// that the configs cairn renders from Boulder's structs and the binaries
// agree. It builds each release from its module's source with cairn's
// policy addition (package addition, docs/policy.md) added at build time
// with `go build -overlay`; the module itself is not modified.
package boulderbin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/internal/boulderbin/addition"
	"github.com/cairn-pki/cairn/internal/fsutil"
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
// says; the error says so when it is not. Every binary is built with
// cairn's policy addition (docs/policy.md): one built without it, or with
// another version of it, is built again.
func EnsureVersion(ctx context.Context, w io.Writer, version string, names ...string) (map[string]string, error) {
	dir, err := DirFor(version)
	if err != nil {
		return nil, err
	}
	paths := map[string]string{}
	for _, n := range names {
		if _, ok := packages[n]; !ok {
			return nil, fmt.Errorf("boulderbin: unknown binary %q", n)
		}
		paths[n] = filepath.Join(dir, n)
	}
	if len(stale(dir, names)) == 0 {
		return paths, nil
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return nil, fmt.Errorf("no Boulder binaries built with cairn's policy addition in %s and no Go toolchain on PATH to build them: install Go 1.26 or set %s to a directory holding %s built by cairn",
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
	missing := stale(dir, names) // another process may have built them meanwhile
	if len(missing) == 0 {
		return paths, nil
	}
	src, err := newSource(ctx, goBin, version)
	if err != nil {
		return nil, err
	}
	defer src.remove()
	if err := src.selfCheck(ctx); err != nil {
		return nil, err
	}
	fmt.Fprintf(w, "building Boulder %s with cairn's policy addition: %s (first time only; about a minute per binary on 2 cores)\n", version, strings.Join(missing, ", "))
	start := time.Now()
	var pkgs []string
	for _, n := range missing {
		pkgs = append(pkgs, "./"+packages[n])
	}
	if err := src.build(ctx, dir+string(filepath.Separator), pkgs...); err != nil {
		return nil, err
	}
	for _, n := range missing {
		if _, err := os.Stat(paths[n]); err != nil {
			return nil, errors.New("go build finished but " + paths[n] + " is missing")
		}
		if err := fsutil.WriteFileAtomic(marker(dir, n), []byte(addition.Digest()+"\n"), 0o644); err != nil {
			return nil, err
		}
	}
	fmt.Fprintf(w, "built in %.0fs into %s\n", time.Since(start).Seconds(), dir)
	return paths, nil
}

// marker records which addition binary name in dir was built with.
func marker(dir, name string) string { return filepath.Join(dir, "."+name+".addition") }

// stale are the names whose binary is missing in dir or was not built
// with this addition.
func stale(dir string, names []string) []string {
	var out []string
	for _, n := range names {
		st, err := os.Stat(filepath.Join(dir, n))
		m, merr := os.ReadFile(marker(dir, n))
		if err != nil || !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 || merr != nil || strings.TrimSpace(string(m)) != addition.Digest() {
			out = append(out, n)
		}
	}
	return out
}

// CheckAddition says whether cairn's policy addition applies to a Boulder
// release: it builds the release's iana package with the addition and a
// small program that asks it about names and addresses, with and without
// the addition's environment. An upgrade runs it before anything else.
func CheckAddition(ctx context.Context, version string) error {
	if err := CheckVersion(version); err != nil {
		return err
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return errors.New("the Go toolchain is needed to check a Boulder release: install Go 1.26")
	}
	src, err := newSource(ctx, goBin, version)
	if err != nil {
		return err
	}
	defer src.remove()
	return src.selfCheck(ctx)
}

// source is a copy of one release's module (the module cache refuses
// overlays) with the overlay file that adds cairn's files to it.
type source struct {
	goBin, version, dir, overlay string
}

func newSource(ctx context.Context, goBin, version string) (*source, error) {
	mod, err := SourceDirFor(ctx, version)
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "cairn-boulder-")
	if err != nil {
		return nil, err
	}
	s := &source{goBin: goBin, version: version, dir: filepath.Join(tmp, "src"), overlay: filepath.Join(tmp, "overlay.json")}
	err = copyTree(mod, s.dir)
	if err == nil && patchSource != nil {
		err = patchSource(s.dir)
	}
	if err != nil {
		s.remove()
		return nil, fmt.Errorf("copying Boulder %s's source: %w", version, err)
	}
	ov := map[string]map[string]string{"Replace": {}}
	for name, content := range addition.Files() {
		f := filepath.Join(tmp, "addition", filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			s.remove()
			return nil, err
		}
		if err := os.WriteFile(f, []byte(content), 0o644); err != nil {
			s.remove()
			return nil, err
		}
		ov["Replace"][filepath.Join(s.dir, filepath.FromSlash(name))] = f
	}
	b, _ := json.Marshal(ov)
	if err := os.WriteFile(s.overlay, b, 0o644); err != nil {
		s.remove()
		return nil, err
	}
	return s, nil
}

// patchSource, set by tests, changes the copy as a later release might.
var patchSource func(dir string) error

func (s *source) remove() { os.RemoveAll(filepath.Dir(s.dir)) }

// build builds pkgs of the copy, with the addition, into out (a
// directory when it ends in a separator), with Boulder's own go.mod, as
// `go install pkg@version` would.
func (s *source) build(ctx context.Context, out string, pkgs ...string) error {
	cmd := exec.CommandContext(ctx, s.goBin, append([]string{"build", "-trimpath", "-overlay", s.overlay, "-o", out}, pkgs...)...)
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local", "GOFLAGS=-buildvcs=false", "GOWORK=off")
	cmd.Dir = s.dir
	b, err := cmd.CombinedOutput()
	if err == nil {
		return nil
	}
	if m := goTooOld.FindSubmatch(b); m != nil {
		return fmt.Errorf("building Boulder %s needs Go %s or newer (this toolchain: %s): pick a release built with it, or install that Go", s.version, m[1], runtime.Version())
	}
	for _, line := range strings.Split(string(b), "\n") {
		if i := strings.Index(line, "zz_cairn_"); i >= 0 || strings.Contains(line, addition.SelfCheckPackage+"/") {
			if i >= 0 { // from the package directory on: iana/zz_cairn_glue.go:47:9: …
				line = line[strings.LastIndex(line[:max(0, strings.LastIndex(line[:i], "/"))], "/")+1:]
			}
			return fmt.Errorf("cairn's policy addition (private suffixes, validation networks) no longer applies to Boulder %s: %s; cairn cannot run this release: keep the current one or update cairn (docs/policy.md)",
				s.version, cluster.FirstLine(line))
		}
	}
	return fmt.Errorf("go build %s of Boulder %s failed: %w\n%s", strings.Join(pkgs, " "), s.version, err, tail(b, 20))
}

// selfCheck builds the self-check program and runs it with and without
// the addition's environment.
func (s *source) selfCheck(ctx context.Context) error {
	bin := filepath.Join(filepath.Dir(s.dir), "cairn-policycheck")
	if err := s.build(ctx, bin, "./"+addition.SelfCheckPackage); err != nil {
		return err
	}
	for _, withEnv := range []bool{true, false} {
		cmd := exec.CommandContext(ctx, bin, addition.SelfCheck.Args...)
		cmd.Env = []string{"PATH=/usr/bin:/bin"}
		if withEnv {
			cmd.Env = append(cmd.Env, addition.SelfCheck.Env...)
		}
		out, err := cmd.Output()
		if err == nil {
			err = addition.CheckSelfCheck(out, withEnv)
		} else if ee, ok := err.(*exec.ExitError); ok {
			err = errors.New(cluster.FirstLine(string(ee.Stderr)))
		}
		if err != nil {
			return fmt.Errorf("cairn's policy addition builds with Boulder %s but does not work: %v; cairn cannot run this release: keep the current one or update cairn (docs/policy.md)", s.version, err)
		}
	}
	return nil
}

// copyTree copies the regular files under from into to, writable (the
// module cache's are read-only).
func copyTree(from, to string) error {
	return filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(from, p)
		if err != nil {
			return err
		}
		dst := filepath.Join(to, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
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
