package nspawntest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-pki/cairn/internal/provisiontest"
	"github.com/cairn-pki/cairn/provision"
)

// upgradeOnSystemdHosts: cairn upgrade apply --infra nspawn --sites X
// to another Boulder release, X the active site, so the name moves away
// from it (provisiontest.Upgrade: the site done, the controller sees the
// release, a second run changes nothing). On X's host systemd restarted
// the units that run Boulder (a new main PID each, active) and each runs
// the new release's binary; the other site's units kept theirs. One
// site, the one whose upgrade does the most (drain by a move, restart,
// gate, canary, undrain): a standby's upgrade is the same on hosts
// without the move, and the staggered order over every site is the
// upgrade package's test.
func upgradeOnSystemdHosts(t *testing.T, c *clusterUnderTest, cli func(...string) ([]byte, error)) {
	t.Helper()
	boulderUnits := map[string][]string{} // per site host: the units whose program is a Boulder binary
	before := map[string]string{}
	for _, s := range c.spec.Sites {
		for _, u := range c.units[s.Name] {
			exe := unitShow(t, c, s.Name, u, "ExecStart")
			if strings.Contains(exe, "boulder") {
				boulderUnits[s.Name] = append(boulderUnits[s.Name], u)
				before[s.Name+"/"+u] = unitShow(t, c, s.Name, u, "MainPID")
			}
		}
		if len(boulderUnits[s.Name]) < 5 {
			t.Fatalf("site %s: %d units run Boulder (%v), want wfe, ra, sa, ca, va and more", s.Name, len(boulderUnits[s.Name]), boulderUnits[s.Name])
		}
	}
	upgraded := provisiontest.Active(t, c.cairn, c.spec.File, operatorNetns(c.spec))
	st := provisiontest.Upgrade(t, cli, c.cairn, c.spec.File, "nspawn", operatorNetns(c.spec), []string{upgraded})
	if st.ActiveBefore != upgraded {
		t.Fatalf("the upgrade of %s began with %q active: the active site's upgrade was not tested", upgraded, st.ActiveBefore)
	}
	t.Logf("upgrade of the active site %s on its systemd host: the name moved away from it", upgraded)
	for host, units := range boulderUnits {
		for _, u := range units {
			pid, state := unitShow(t, c, host, u, "MainPID"), unitShow(t, c, host, u, "ActiveState")
			switch {
			case host != upgraded && pid != before[host+"/"+u]:
				t.Errorf("site %s (not upgraded): %s main PID %s, before %s", host, u, pid, before[host+"/"+u])
			case host == upgraded && (pid == before[host+"/"+u] || pid == "0" || state != "active"):
				t.Errorf("site %s: %s main PID %s (before %s), %s: systemd did not restart it on the new release", host, u, pid, before[host+"/"+u], state)
			}
		}
		if host != upgraded {
			continue
		}
		// The WFE runs the new release's binary: the one cairn built for
		// it (provision/bin-<release>/boulder).
		want, err := os.ReadFile(c.spec.Path(filepath.Join(provision.Dir, "bin-"+provisiontest.OtherBoulder, "boulder")))
		if err != nil {
			t.Fatalf("the release's binary on the operator's machine: %v", err)
		}
		sum := sha256.Sum256(want)
		for _, u := range units {
			if !strings.HasSuffix(u, "-wfe.service") {
				continue
			}
			pid := unitShow(t, c, host, u, "MainPID")
			out, err := c.hosts[host].Exec(context.Background(), "sha256sum", "/proc/"+pid+"/exe")
			if err != nil || !strings.HasPrefix(string(out), hex.EncodeToString(sum[:])) {
				t.Errorf("site %s: %s (pid %s) runs a binary other than %s's: %v %s", host, u, pid, provisiontest.OtherBoulder, err, out)
			}
		}
	}
}

// unitShow is one property of a unit on a host (systemctl show --value).
func unitShow(t *testing.T, c *clusterUnderTest, host, unit, prop string) string {
	t.Helper()
	out, err := c.hosts[host].Exec(context.Background(), "systemctl", "show", "--value", "-p", prop, unit)
	if err != nil {
		t.Fatalf("host %s: systemctl show %s %s: %v %s", host, prop, unit, err, out)
	}
	return strings.TrimSpace(string(out))
}
