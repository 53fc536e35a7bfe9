package drill

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A scenario's real client that is not installed is skipped with a line
// saying so (and how to get it); the installed ones still run, and the
// report shows the line.
func TestMissingRealClientIsSkippedWithALine(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("real clients need root; this checks the split as root runs it")
	}
	bin := t.TempDir()
	for _, n := range []string{"unshare", "nsupdate", "certbot"} {
		if err := os.WriteFile(filepath.Join(bin, n), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", bin)
	have, skipped, err := checkRealClients([]string{"certbot", "lego5"})
	if err != nil {
		t.Fatal(err)
	}
	if len(have) != 1 || have[0] != "certbot" {
		t.Errorf("clients run: %v, want [certbot]", have)
	}
	if len(skipped) != 1 || !strings.HasPrefix(skipped[0], "lego5: skipped") || !strings.Contains(skipped[0], "make test") {
		t.Errorf("skipped: %q", skipped)
	}
	rep := &Report{Scenario: "x", SkippedClients: skipped}
	if md := rep.Markdown(); !strings.Contains(md, "Real clients not run") || !strings.Contains(md, "lego5: skipped") {
		t.Errorf("the report does not say lego5 was skipped:\n%s", md)
	}

	// Only the clients that ran are judged.
	rep.summarizeReal([]string{"certbot", "lego5"}, time.Now())
	rep.judge(&Scenario{Pass: Pass{ClientsRenew: true}})
	if len(rep.Real) != 1 || rep.Real[0].Client != "certbot" {
		t.Errorf("judged %+v, want certbot alone", rep.Real)
	}
	for _, f := range rep.Failures {
		if strings.Contains(f, "lego5") {
			t.Errorf("the skipped client is judged: %s", f)
		}
	}

	// What every real client needs is still an error.
	os.Remove(filepath.Join(bin, "unshare"))
	if _, _, err := checkRealClients([]string{"certbot"}); err == nil || !strings.Contains(err.Error(), "unshare") {
		t.Errorf("without unshare: %v", err)
	}
}
