// Package testenv gives integration tests the real tools they need. A
// missing tool fails the test (CI must install it), except under -short,
// where integration tests are skipped so the unit loop stays fast.
package testenv

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-pki/cairn/internal/boulderbin"
)

// Integration marks t as an integration test: skipped with -short,
// otherwise every named tool must be on PATH.
func Integration(t testing.TB, tools ...string) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test; run without -short (make test)")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: run `make deps` (scripts/deps.sh) to install the integration test dependencies", tool)
		}
	}
}

// Boulder returns the pinned Boulder binaries, building them if needed.
func Boulder(t testing.TB, names ...string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	paths, err := boulderbin.Ensure(ctx, os.Stderr, names...)
	if err != nil {
		t.Fatalf("Boulder binaries: %v", err)
	}
	return paths
}

// Tool returns the path of a tool installed by scripts/deps.sh into the
// repository's .tools/bin (or found on PATH); missing fails the test.
func Tool(t testing.TB, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err == nil {
		p := filepath.Join(filepath.Dir(strings.TrimSpace(string(out))), ".tools", "bin", name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	t.Fatalf("%s not found in .tools/bin or on PATH: run `make deps` (scripts/deps.sh)", name)
	return ""
}

// Chromium runs headless Chromium with args (e.g. --dump-dom URL,
// --screenshot=F URL) and returns its standard output.
func Chromium(t testing.TB, args ...string) string {
	t.Helper()
	Integration(t, "chromium")
	argv := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--user-data-dir=" + t.TempDir()}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "chromium", argv...).Output()
	if err != nil {
		t.Fatalf("chromium %v: %v", args, err)
	}
	return string(out)
}

// WaitFor polls cond every 50 ms until it holds and says how long that
// took; the test fails after timeout.
func WaitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < timeout {
		if cond() {
			return time.Since(start)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("not within %s: %s", timeout, what)
	return 0
}
