package provision

import (
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/cairn-pki/cairn/internal/testenv"
)

// The playbook and every role pass ansible-lint's production profile, and
// the playbook parses.
func TestAnsibleLintProductionProfile(t *testing.T) {
	testenv.Integration(t, "ansible-lint", "ansible-playbook")
	dir := filepath.Join("..", "ansible")
	cmd := exec.Command("ansible-lint", "--offline", "--nocolor", "--profile", "production", "site.yml", "destroy.yml", "roles")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	t.Logf("ansible-lint:\n%s", out)
	if err != nil {
		t.Errorf("ansible-lint --profile production: %v", err)
	}
	syntax := exec.Command("ansible-playbook", "--syntax-check", "-i", "localhost,", "site.yml")
	syntax.Dir = dir
	if out, err := syntax.CombinedOutput(); err != nil {
		t.Errorf("ansible-playbook --syntax-check: %v\n%s", err, out)
	}
}
