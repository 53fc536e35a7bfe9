package nspawntest

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-pki/cairn/drill"
	"github.com/cairn-pki/cairn/internal/labtest"
)

// drillOnHosts: `cairn drill run site-down --infra nspawn` from this
// machine (it runs itself again from the operator's vantage) crashes the
// active site's WFE unit and holds it down: the name moves, and the
// real clients, each on a client host of its own on the cluster's bridge
// (certbot and lego with HTTP-01, lego with TLS-ALPN-01, lego v5 with
// DNS-01 and profile shortlived), renew at the other site with their
// accounts. The report passes, says it ran on the nspawn hosts, skips no
// client, and has the phases the lab's reports have (the first failed
// probe read from the controller's history on its host); the unit is
// active again after the drill and the controller sees every site
// healthy. Provision destroy removes the client hosts (nothingLeft).
func (c *clusterUnderTest) drillOnHosts(t *testing.T, active, standby string) {
	t.Helper()
	dir := t.TempDir()
	out := filepath.Join(dir, "report")
	start := time.Now()
	cmd := exec.Command(c.cairn, "-f", c.spec.File, "drill", "run", "site-down", "--infra", "nspawn", "--out", out)
	cmd.Stderr = labtest.Log{T: t}
	stdout, err := cmd.Output()
	var rep drill.Report
	b, rerr := os.ReadFile(filepath.Join(out, "report.json"))
	if rerr == nil {
		rerr = json.Unmarshal(b, &rep)
	}
	if err != nil || rerr != nil || !rep.Passed {
		md, _ := os.ReadFile(filepath.Join(out, "report.md"))
		t.Fatalf("drill run --infra nspawn: %v %v\n%s\n%s", err, rerr, stdout, md)
	}
	if rep.Infra != "nspawn" || rep.FaultedSite != active || rep.ActiveAfter != standby {
		t.Errorf("report: infra %q, faulted %q (want %s), active after %q (want %s)", rep.Infra, rep.FaultedSite, active, rep.ActiveAfter, standby)
	}
	if len(rep.SkippedClients) > 0 || len(rep.Real) != 4 {
		t.Errorf("real clients: %d judged, skipped %v; want the 4 of site-down", len(rep.Real), rep.SkippedClients)
	}
	for _, rc := range rep.Real {
		if rc.Host == "" || rc.Failed > 0 || !rc.AccountKept {
			t.Errorf("real client %s: host %q, %d of %d runs failed, account kept %v", rc.Client, rc.Host, rc.Failed, rc.Runs, rc.AccountKept)
		}
	}
	tm := rep.Timings
	if tm.FirstFailedProbe == nil || tm.Commit == nil || tm.FirstSuccess == nil {
		t.Fatalf("report phases: first failed probe %v, committed %v, new client %v; not checked: %v", tm.FirstFailedProbe, tm.Commit, tm.FirstSuccess, rep.NotChecked)
	}
	for _, line := range rep.NotChecked {
		if !strings.HasPrefix(line, "alerts:") {
			t.Errorf("not checked on the hosts: %s", line)
		}
	}
	if s := unitShow(t, c, active, "cairn-wfe.service", "ActiveState"); s != "active" {
		t.Errorf("site %s: cairn-wfe.service %s after the drill restored it", active, s)
	}
	waitUntil(t, "every site healthy after the drill", hostLimit, c.allHealthy)
	t.Logf("site-down drill on the systemd hosts: %s's WFE crashed, moved to %s: first failed probe %.1fs, committed %.1fs, new client %.1fs; %.1fs in all",
		active, standby, *tm.FirstFailedProbe, *tm.Commit, *tm.FirstSuccess, time.Since(start).Seconds())
}
