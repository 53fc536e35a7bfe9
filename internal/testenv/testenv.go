// Package testenv gives integration tests the real tools they need. A
// missing tool fails the test (CI must install it), except under -short,
// where integration tests are skipped so the unit loop stays fast.
package testenv

import (
	"context"
	"os"
	"os/exec"
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
