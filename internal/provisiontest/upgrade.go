// Package provisiontest holds what the end-to-end tests of provisioned
// clusters share (--infra local in provision, --infra nspawn in
// internal/nspawntest): revocation through the controller, the agents'
// ports refusing the operator, the active site asked of the controller,
// and a provisioned upgrade.
package provisiontest

import (
	"encoding/json"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairn-pki/cairn/failover"
)

// OtherBoulder is the release the provisioned upgrade goes to (the
// pinned one is v0.20260921.0).
const OtherBoulder = "v0.20260908.0"

// operator is cairn run from the operator's vantage (the switch
// namespace) with the cluster's spec.
func operator(cairn, specFile, switchNetns string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", switchNetns, cairn, "-f", specFile}, args...)...)
}

// Active asks the controller (from the operator's vantage, the switch
// namespace) which site has the ACME name, and logs every move it made
// so far with its cause: a test that acts on the active site says why
// that site is the one.
func Active(t *testing.T, cairn, specFile, switchNetns string) string {
	t.Helper()
	b, err := operator(cairn, specFile, switchNetns, "-o", "json", "failover", "status").Output()
	var st failover.Status
	if err == nil {
		err = json.Unmarshal(b, &st)
	}
	if err != nil || st.Active == "" {
		t.Fatalf("failover status: %v %s", err, b)
	}
	for _, m := range st.Moves {
		t.Logf("the controller moved the name %s → %s at %s (%s: %s)", m.From, m.To, m.At.Format(time.TimeOnly), m.Cause, m.Reason)
	}
	return st.Active
}

// UpgradeState is what upgrade apply -o json says.
type UpgradeState struct {
	Finished     time.Time
	ActiveBefore string
	Sites        map[string]struct {
		Phase, ToBoulder string
		Phases           []struct{ Phase, Detail string }
	}
}

// MovedAway reports whether the upgrade moved the ACME name away from
// site (its drained phase says so; a standby is only out of rotation).
func (st UpgradeState) MovedAway(site string) bool {
	for _, e := range st.Sites[site].Phases {
		if e.Phase == "drained" && strings.Contains(e.Detail, "the name moved away") {
			return true
		}
	}
	return false
}

// Upgrade: cairn upgrade apply --infra INFRA --to OtherBoulder --sites
// SITES; every one of sites done on that release, the name moved away
// from the active site only (standbys need no move), the controller
// (asked from the operator's vantage, the switch namespace) sees that
// release at each of them, and a second run changes nothing. It returns
// the first run's state.
func Upgrade(t *testing.T, cli func(...string) ([]byte, error), cairn, specFile, infra, switchNetns string, sites []string) UpgradeState {
	t.Helper()
	args := []string{"-o", "json", "upgrade", "apply", "--infra", infra, "--to", OtherBoulder, "--sites", strings.Join(sites, ","), "--gate", "3"}
	start := time.Now()
	out, err := cli(append(args, "--canary", "2s")...)
	if err != nil {
		t.Fatalf("upgrade apply --infra %s: %v\n%s", infra, err, out)
	}
	t.Logf("provisioned upgrade (--infra %s) of %s to %s: %.1fs", infra, strings.Join(sites, ", "), OtherBoulder, time.Since(start).Seconds())
	var st UpgradeState
	if err := json.Unmarshal(out, &st); err != nil || st.Finished.IsZero() || len(st.Sites) != len(sites) {
		t.Fatalf("upgrade state %s: %v", out, err)
	}
	for name, s := range st.Sites {
		if s.Phase != "done" || s.ToBoulder != OtherBoulder {
			t.Errorf("site %s: %+v", name, s)
		}
		if st.MovedAway(name) != (name == st.ActiveBefore) {
			t.Errorf("site %s (active before: %s): the name moved away %v, want only from the active site: %+v", name, st.ActiveBefore, st.MovedAway(name), s.Phases)
		}
	}
	b, err := operator(cairn, specFile, switchNetns, "-o", "json", "failover", "status").CombinedOutput()
	var status struct {
		Sites []struct {
			Name    string
			Release *struct {
				Boulder string `json:"boulderVersion"`
			}
		}
	}
	if err != nil || json.Unmarshal(b, &status) != nil {
		t.Fatalf("failover status after the upgrade: %v %s", err, b)
	}
	seen := 0
	for _, s := range status.Sites {
		if !slices.Contains(sites, s.Name) {
			continue
		}
		seen++
		if s.Release == nil || s.Release.Boulder != OtherBoulder {
			t.Errorf("the controller sees site %s on %+v, want %s", s.Name, s.Release, OtherBoulder)
		}
	}
	if seen != len(sites) {
		t.Errorf("failover status after the upgrade shows %d of the sites %v: %s", seen, sites, b)
	}
	out, err = cli(append(args, "--canary", "0s")...)
	var again UpgradeState
	if err != nil || json.Unmarshal(out, &again) != nil || len(again.Sites) != len(sites) {
		t.Fatalf("a second upgrade run: %v %s", err, out)
	}
	for name, s := range again.Sites {
		if s.Phase != "unchanged" {
			t.Errorf("a second upgrade run: site %s %s, want unchanged", name, s.Phase)
		}
	}
	return st
}
