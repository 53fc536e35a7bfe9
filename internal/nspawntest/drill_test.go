package nspawntest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cairn-pki/cairn/drill"
	"github.com/cairn-pki/cairn/internal/labtest"
	"github.com/cairn-pki/cairn/provision"
	"github.com/cairn-pki/cairn/site"
)

// crashScenario is site-down made lighter for the shared 2 cores (the
// built-in one, every 2 s for three retry policies and four real
// clients for 75 s, passes here too: docs/drill.md), then the loss of the
// same site's host and disk: the active site's WFE unit crashes and
// stays down; at 20 s that host is switched off and its disk replaced by
// a blank one (while it is off its CRL front black-holes connections:
// relying parties get the site's CRLs once the controller has withdrawn
// that front from the CRL names); 10 s later the site is rebuilt from
// the controller's newest backup (cairn site rebuild on the host). The
// built-in client issues every 5 s; lego with HTTP-01 and with
// TLS-ALPN-01, each on a client host of its own, and lego v5 with
// DNS-01 renew at the other site.
const crashScenario = `name: wfe-crash-site-lost
description: The active site's WFE unit crashes on its systemd host and stays down, then the host and its disk are lost and the site is rebuilt from its backup; the name must move, lego on client hosts (HTTP-01, TLS-ALPN-01) and lego v5 (DNS-01) renew at the other site with their accounts, and relying parties keep getting the site's CRLs.
timeline:
  - at: 3s
    fault: crash
    site: active
    component: wfe
  - at: 20s
    fault: destroy
    site: active
    for: 10s
duration: 50s
workload:
  every: 5s
  policies: [30s]
  clients: [lego-http, lego-tls, lego5]
pass:
  moved: true
  firstSuccessWithin: 30s
  maxLost: {30s: 0}
  clientsRenew: true
  crlsAvailable: true
`

// drillOnHosts: `cairn drill run FILE --infra nspawn` from this machine
// (it runs itself again from the operator's vantage) crashes the active
// site's WFE unit and holds it down, then loses that host's disk (its
// CRL front withdrawn from the CRL names, the relying party's checks
// passing) and rebuilds the site from its backup: the name moves and the real
// clients renew at the other site, two of them on client hosts the drill
// makes on the cluster's bridge. The report passes, says it ran on the
// nspawn hosts, skips no client, and has the phases the lab's reports
// have (the first failed probe read from the controller's history on its
// host); the unit is active again after the drill and the controller sees
// every site healthy. Provision destroy removes the client hosts
// (nothingLeft).
func (c *clusterUnderTest) drillOnHosts(t *testing.T, active, standby string) {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "wfe-crash.yaml")
	if err := os.WriteFile(file, []byte(crashScenario), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "report")
	h, ctx := c.hosts[active], context.Background()
	oldBoot, err := h.Exec(ctx, "cat", "/proc/sys/kernel/random/boot_id")
	if err != nil {
		t.Fatalf("host %s: boot ID: %v %s", active, err, oldBoot)
	}
	start := time.Now()
	cmd := exec.Command(c.cairn, "-f", c.spec.File, "drill", "run", file, "--infra", "nspawn", "--out", out)
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
	if len(rep.SkippedClients) > 0 || len(rep.Real) != 3 {
		t.Errorf("real clients: %d judged, skipped %v; want 3", len(rep.Real), rep.SkippedClients)
	}
	for _, rc := range rep.Real {
		if (rc.Host == "") != (rc.Client == "lego5") || rc.Failed > 0 || !rc.AccountKept {
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
	// The lost disk: the host booted again, blank, and the site was
	// rebuilt from its backup; its CRL front was withdrawn from every CRL
	// name meanwhile (the relying party's checks passed) and is listed
	// again.
	if boot, err := h.Exec(ctx, "cat", "/proc/sys/kernel/random/boot_id"); err != nil || bytes.Equal(boot, oldBoot) {
		t.Errorf("host %s after its disk was lost: boot ID %s (%v), before %s", active, bytes.TrimSpace(boot), err, bytes.TrimSpace(oldBoot))
	}
	rebuilt := ""
	for _, e := range rep.Events {
		if e.Kind == "fault-restored" && strings.Contains(e.Detail, "rebuilt from the backup") {
			rebuilt = e.Detail
		}
	}
	if rebuilt == "" {
		t.Errorf("no rebuild in the drill's events: %+v", rep.Events)
	}
	if rv := rep.Revocation; rv.CRLChecks == 0 || len(rv.CRLFailures) > 0 {
		t.Errorf("relying-party CRL checks: %d, failed %v", rv.CRLChecks, rv.CRLFailures)
	}
	names := len(site.CRLNames(c.spec))
	waitUntil(t, "every CRL front listed again after the power cut", hostLimit, func() (bool, string) {
		st, seen := c.failoverStatus()
		withdrawn := 0
		for _, f := range st.CRLFronts {
			if f.Withdrawn {
				withdrawn++
			}
		}
		return len(st.CRLFronts) == names && withdrawn == 0, fmt.Sprintf("%s; CRL fronts %+v", seen, st.CRLFronts)
	})
	rewrites, _ := c.hosts["dns"].Exec(ctx, "sh", "-c", "cat /opt/cairn/*/var/logs/controller.log | grep -c 'CRL name rewritten'")
	if n, _ := strconv.Atoi(strings.TrimSpace(string(rewrites))); n < 2*names {
		tail, _ := c.hosts["dns"].Exec(ctx, "sh", "-c", "tail -n 30 /opt/cairn/*/var/logs/controller.log")
		t.Errorf("the controller rewrote the CRL names %d times, want at least %d (%s's front out, then back)\n%s", n, 2*names, active, tail)
	}
	c.hostsKeyBounded(t)
	if s := unitShow(t, c, active, "cairn-wfe.service", "ActiveState"); s != "active" {
		t.Errorf("site %s: cairn-wfe.service %s after the drill restored it", active, s)
	}
	waitUntil(t, "every site healthy after the drill", hostLimit, c.allHealthy)
	t.Logf("drill on the systemd hosts: %s's WFE crashed, moved to %s: first failed probe %.1fs, committed %.1fs, new client %.1fs; host and disk lost: %d CRL checks, slowest %.1fs, %d retried; %s; %.1fs in all",
		active, standby, *tm.FirstFailedProbe, *tm.Commit, *tm.FirstSuccess, rep.Revocation.CRLChecks, rep.Revocation.CRLSlowestMS/1000, rep.Revocation.CRLRetried, rebuilt, time.Since(start).Seconds())
}

// hostsKeyBounded: the hosts key an nspawn cluster gets (the drill's
// client hosts' names) writes A records of names below the zone, and
// nothing else: a stranger holding it cannot take the ACME name, the
// DNS-01 records or the zone's apex (REFUSED by the primary, asked from
// the operator's vantage with nsupdate).
func (c *clusterUnderTest) hostsKeyBounded(t *testing.T) {
	t.Helper()
	key := filepath.Join(c.spec.Path(provision.Dir), "bundles", "cluster", "secrets", "hosts.key")
	if info, err := os.Stat(key); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("the hosts key %s: %v (want mode 0600)", key, err)
	}
	primary := c.spec.PrimaryDNS().Addr().String()
	zone := c.spec.ACME.Zone
	update := func(rr string) string {
		cmd := exec.Command("ip", "netns", "exec", operatorNetns(c.spec), "nsupdate", "-k", key)
		cmd.Stdin = strings.NewReader(fmt.Sprintf("server %s\nzone %s\nupdate add %s\nsend\n", primary, zone, rr))
		out, err := cmd.CombinedOutput()
		if err != nil {
			return strings.TrimSpace(string(out))
		}
		return "ok"
	}
	if got := update("stranger." + zone + " 5 A 10.78.83.9"); got != "ok" {
		t.Errorf("the hosts key writing a client host's name: %s", got)
	}
	for _, rr := range []string{c.spec.ACME.Name + " 5 A 10.78.83.9", "_acme-challenge.x." + zone + " 5 TXT stolen", zone + " 5 A 10.78.83.9"} {
		if got := update(rr); !strings.Contains(got, "REFUSED") {
			t.Errorf("the hosts key writing %s: %q, want REFUSED", rr, got)
		}
	}
}
