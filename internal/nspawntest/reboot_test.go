package nspawntest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cairn-pki/cairn/accounts"
	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/failover"
	"github.com/cairn-pki/cairn/provision"
)

// Reboots and crashes on the systemd hosts (docs/provision.md, "Reboots
// and crashes"): a host that reboots comes back with every unit of its
// bundle active, in the bundle's order, by itself; a unit whose main
// process dies is started again by systemd; the controller's host reboots
// and the controller resumes from its probe history and still acts.

// clusterUnderTest is what the reboot and crash checks act on and watch.
type clusterUnderTest struct {
	spec  *cluster.Spec
	cairn string
	hosts map[string]provision.NspawnHost
	// units: each host's bundle as units, in the bundle's (start) order.
	units map[string][]string
}

// hostLimit bounds a host's reboot until its units are active again and
// the controller's verdicts that follow: measured at well under a minute.
const hostLimit = 3 * time.Minute

// monoNow is this machine's monotonic clock: a container's systemd
// stamps its units' state changes with the same clock.
func monoNow() time.Duration {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return time.Duration(ts.Nano())
}

// secs formats a monotonic interval.
func secs(d time.Duration) string { return fmt.Sprintf("%.1fs", d.Seconds()) }

// waitUntil asks cond every 200 ms until it holds (true) or limit passed
// (false, and a test error with what cond saw last).
func waitUntil(t *testing.T, what string, limit time.Duration, cond func() (bool, string)) bool {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		ok, seen := cond()
		if ok {
			return true
		}
		if time.Now().After(deadline) {
			t.Errorf("%s: not within %s; last seen: %s", what, limit, seen)
			return false
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// showUnits is `systemctl show` of some properties of units, one map per
// unit in their order.
func showUnits(h provision.NspawnHost, units []string, props ...string) ([]map[string]string, error) {
	argv := append([]string{"systemctl", "show", "-p", strings.Join(append([]string{"Id"}, props...), ",")}, units...)
	out, err := h.Exec(context.Background(), argv...)
	if err != nil {
		return nil, fmt.Errorf("systemctl show: %v %s", err, out)
	}
	var res []map[string]string
	for _, block := range strings.Split(strings.TrimSpace(string(out)), "\n\n") {
		m := map[string]string{}
		for _, line := range strings.Split(block, "\n") {
			if k, v, ok := strings.Cut(line, "="); ok {
				m[k] = v
			}
		}
		res = append(res, m)
	}
	if len(res) != len(units) {
		return nil, fmt.Errorf("systemctl show of %d units gave %d: %s", len(units), len(res), out)
	}
	for i, u := range units {
		if res[i]["Id"] != u {
			return nil, fmt.Errorf("systemctl show: unit %d is %q, want %s", i, res[i]["Id"], u)
		}
	}
	return res, nil
}

// usec reads a systemd monotonic timestamp property (µs).
func usec(v string) time.Duration {
	n, _ := strconv.ParseInt(v, 10, 64)
	return time.Duration(n) * time.Microsecond
}

// operator runs cairn from the operator's vantage (the switch namespace)
// and decodes its JSON output into v.
func (c *clusterUnderTest) operator(v any, args ...string) error {
	argv := append([]string{"netns", "exec", operatorNetns(c.spec), c.cairn, "-f", c.spec.File, "-o", "json"}, args...)
	out, err := exec.Command("ip", argv...).Output()
	if err != nil {
		return fmt.Errorf("cairn %s: %v %s", strings.Join(args, " "), err, out)
	}
	return json.Unmarshal(out, v)
}

// failoverStatus is `cairn failover status` from the operator's vantage.
func (c *clusterUnderTest) failoverStatus() (failover.Status, string) {
	var st failover.Status
	if err := c.operator(&st, "failover", "status"); err != nil {
		return st, err.Error()
	}
	b, _ := json.Marshal(st.Sites)
	return st, fmt.Sprintf("leading %v, active %s, sites %s", st.Leading, st.Active, b)
}

// siteState is one site's health in a status.
func siteState(st failover.Status, name string) failover.SiteStatus {
	for _, s := range st.Sites {
		if s.Name == name {
			return s
		}
	}
	return failover.SiteStatus{}
}

// allHealthy: the controller leads and sees every site healthy.
func (c *clusterUnderTest) allHealthy() (bool, string) {
	st, seen := c.failoverStatus()
	return c.allHealthyIn(st), seen
}

// allHealthyIn: in st the controller leads and sees every site healthy.
func (c *clusterUnderTest) allHealthyIn(st failover.Status) bool {
	ok := st.Leading && len(st.Sites) == len(c.spec.Sites)
	for _, s := range st.Sites {
		ok = ok && s.State == failover.Healthy
	}
	return ok
}

// acmeNameSite is the site the ACME name resolves to at the primary DNS
// server, from the operator's vantage.
func (c *clusterUnderTest) acmeNameSite() (string, string) {
	p := c.spec.PrimaryDNS()
	out, err := exec.Command("ip", "netns", "exec", operatorNetns(c.spec), "dig", "+short", "+norecurse",
		"-p", strconv.Itoa(int(p.Port())), "@"+p.Addr().String(), c.spec.ACME.Name, "A").CombinedOutput()
	addrs := strings.Fields(string(out))
	if err != nil || len(addrs) != 1 {
		return "", fmt.Sprintf("dig %s: %v %q", c.spec.ACME.Name, err, out)
	}
	return c.spec.SiteAt(addrs...), addrs[0]
}

// reboot has a host reboot itself (systemctl reboot inside it) and waits
// until its new boot (another PID 1, another boot ID) has finished
// booting. It returns when the reboot was asked (monotonic) and when the
// host was seen booted.
func (c *clusterUnderTest) reboot(t *testing.T, name string) (asked, booted time.Duration) {
	t.Helper()
	h, ctx := c.hosts[name], context.Background()
	oldPID, _ := h.LeaderPID()
	oldBoot, err := h.Exec(ctx, "cat", "/proc/sys/kernel/random/boot_id")
	if err != nil {
		t.Fatalf("host %s: boot ID: %v %s", name, err, oldBoot)
	}
	asked = monoNow()
	if out, err := h.Exec(ctx, "systemctl", "--no-block", "reboot"); err != nil {
		t.Fatalf("host %s: systemctl reboot: %v %s", name, err, out)
	}
	waitUntil(t, "host "+name+" back after its reboot", hostLimit, func() (bool, string) {
		if pid, up := h.LeaderPID(); !up || pid == oldPID {
			return false, "no new boot"
		}
		boot, err := h.Exec(ctx, "cat", "/proc/sys/kernel/random/boot_id")
		if err != nil || bytes.Equal(boot, oldBoot) {
			return false, fmt.Sprintf("boot ID %s (%v)", bytes.TrimSpace(boot), err)
		}
		out, _ := h.Exec(ctx, "systemctl", "is-system-running")
		state := strings.TrimSpace(string(out))
		if state == "degraded" {
			failed, _ := h.Exec(ctx, "systemctl", "--failed", "--no-legend", "--plain")
			t.Logf("host %s booted degraded: %s", name, bytes.TrimSpace(failed))
		}
		return state == "running" || state == "degraded", "systemd " + state
	})
	return asked, monoNow()
}

// unitsBack waits until every unit of the host's bundle is active in
// its new boot (after since), and checks that they came up by themselves
// in their declared order: each is ordered After= the one before it in
// the bundle, became active no earlier than it, and was never restarted
// on the way. It returns when the last one became active (monotonic).
func (c *clusterUnderTest) unitsBack(t *testing.T, name string, since time.Duration) time.Duration {
	t.Helper()
	h, units := c.hosts[name], c.units[name]
	var props []map[string]string
	if !waitUntil(t, "host "+name+": every unit active after the reboot", hostLimit, func() (bool, string) {
		var err error
		props, err = showUnits(h, units, "ActiveState", "ActiveEnterTimestampMonotonic", "NRestarts", "After")
		if err != nil {
			return false, err.Error()
		}
		var notYet []string
		for _, p := range props {
			if p["ActiveState"] != "active" || usec(p["ActiveEnterTimestampMonotonic"]) < since {
				notYet = append(notYet, p["Id"]+" "+p["ActiveState"])
			}
		}
		return len(notYet) == 0, strings.Join(notYet, ", ")
	}) {
		return 0
	}
	last := time.Duration(0)
	for i, p := range props {
		at := usec(p["ActiveEnterTimestampMonotonic"])
		if i > 0 {
			prev := props[i-1]
			if !slices.Contains(strings.Fields(p["After"]), prev["Id"]) {
				t.Errorf("host %s: %s is not ordered after %s (After=%s)", name, p["Id"], prev["Id"], p["After"])
			}
			if at < usec(prev["ActiveEnterTimestampMonotonic"]) {
				t.Errorf("host %s: %s became active %s before %s, which it is ordered after", name, p["Id"],
					secs(usec(prev["ActiveEnterTimestampMonotonic"])-at), prev["Id"])
			}
		}
		if p["NRestarts"] != "0" {
			t.Errorf("host %s: %s was restarted %s times on its way up after the reboot (its log: %s)", name, p["Id"], p["NRestarts"],
				c.unitLog(name, p["Id"]))
		}
		last = max(last, at)
	}
	return last
}

// unitLog is the tail of a unit's log file in the bundle (what it wrote
// last), for error messages.
func (c *clusterUnderTest) unitLog(host, unit string) string {
	kind := "site"
	if host == "dns" {
		kind = "cluster"
	}
	log := "/opt/cairn/" + kind + "/var/logs/" + strings.TrimSuffix(strings.TrimPrefix(unit, "cairn-"), ".service") + ".log"
	b, _ := c.hosts[host].Exec(context.Background(), "tail", "-c", "1500", log)
	return string(b)
}

// controllerReboot: the DNS host (its primary and secondary and the
// failover controller) reboots; the controller comes back leading, warm
// (each site healthy again from its probe history plus a few fresh
// probes, not from scratch), and the ACME name still resolves to the
// active site, which is healthy. It returns the active site.
func (c *clusterUnderTest) controllerReboot(t *testing.T) string {
	t.Helper()
	waitUntil(t, "before the controller's reboot: every site healthy", hostLimit, c.allHealthy)
	before, _ := c.failoverStatus()
	asked, booted := c.reboot(t, "dns")
	active := c.unitsBack(t, "dns", asked)
	var st failover.Status
	waitUntil(t, "the controller after its host's reboot: leading, the same active site, every site healthy from its history",
		hostLimit, func() (bool, string) {
			var seen string
			st, seen = c.failoverStatus()
			ok := st.Leading && st.Active == before.Active && len(st.Sites) == len(c.spec.Sites)
			for _, s := range st.Sites {
				// The warm start: healthy "in history until … before the
				// start", confirmed by resumeConfirm fresh deep probes.
				ok = ok && s.State == failover.Healthy && strings.Contains(s.Reason, "in history")
			}
			return ok, seen
		})
	resumed := monoNow()
	if n := len(before.Moves); n > 0 && (len(st.Moves) == 0 || st.Moves[len(st.Moves)-1].Epoch != before.Moves[n-1].Epoch) {
		t.Errorf("the controller after its reboot does not know the last move (epoch %d): %+v", before.Moves[n-1].Epoch, st.Moves)
	}
	site, seen := c.acmeNameSite()
	if site == "" || site != st.Active || siteState(st, site).State != failover.Healthy {
		t.Errorf("after the controller's reboot the ACME name resolves to %s (site %q), want the active site %s, healthy", seen, site, st.Active)
	}
	t.Logf("controller host reboot: booted %s, every unit active %s, controller leading with every site healthy from its history %s (active %s, %s)",
		secs(booted-asked), secs(active-asked), secs(resumed-asked), st.Active, siteState(st, st.Active).Reason)
	return st.Active
}

// crashRestarts kills a unit's main process (SIGKILL) and waits until
// systemd started the unit again: another main process, active, one
// more restart counted. The unit must declare that it is restarted
// (Restart=always or on-failure) after a short delay, and that systemd
// never gives up on it (no start limit). It returns kill → active.
func (c *clusterUnderTest) crashRestarts(t *testing.T, name, unit string) time.Duration {
	t.Helper()
	h := c.hosts[name]
	props := []string{"ActiveState", "MainPID", "NRestarts", "ActiveEnterTimestampMonotonic", "Restart", "RestartUSec", "StartLimitIntervalUSec"}
	p, err := showUnits(h, []string{unit}, props...)
	if err != nil {
		t.Fatalf("host %s: %v", name, err)
	}
	before := p[0]
	if r := before["Restart"]; r != "always" && r != "on-failure" {
		t.Errorf("host %s: %s has Restart=%s, want always or on-failure", name, unit, r)
	}
	if d, err := time.ParseDuration(before["RestartUSec"]); err != nil || d < 100*time.Millisecond || d > 10*time.Second {
		t.Errorf("host %s: %s restarts after %q (%v), want 0.1-10 s: soon, not a busy loop", name, unit, before["RestartUSec"], err)
	}
	if before["StartLimitIntervalUSec"] != "0" {
		t.Errorf("host %s: %s gives up after repeated failures (StartLimitIntervalSec=%s), want never (0)", name, unit, before["StartLimitIntervalUSec"])
	}
	if before["ActiveState"] != "active" || before["MainPID"] == "0" {
		t.Fatalf("host %s: %s is %s with main process %s before the kill", name, unit, before["ActiveState"], before["MainPID"])
	}
	killed := monoNow()
	if out, err := h.Exec(context.Background(), "kill", "-KILL", before["MainPID"]); err != nil {
		t.Fatalf("host %s: kill -9 %s (%s): %v %s", name, before["MainPID"], unit, err, out)
	}
	var after map[string]string
	waitUntil(t, fmt.Sprintf("host %s: %s started again after kill -9 of its main process", name, unit), time.Minute, func() (bool, string) {
		p, err := showUnits(h, []string{unit}, props...)
		if err != nil {
			return false, err.Error()
		}
		after = p[0]
		n, _ := strconv.Atoi(after["NRestarts"])
		m, _ := strconv.Atoi(before["NRestarts"])
		return after["ActiveState"] == "active" && after["MainPID"] != "0" && after["MainPID"] != before["MainPID"] && n > m &&
			usec(after["ActiveEnterTimestampMonotonic"]) > killed, fmt.Sprint(after)
	})
	back := usec(after["ActiveEnterTimestampMonotonic"]) - killed
	t.Logf("host %s: kill -9 of %s's main process %s: active again %s later (main process %s)", name, unit, before["MainPID"], secs(back), after["MainPID"])
	return back
}

// crashes kills wfe's and MariaDB's main processes at a site, and waits
// until the controller sees the site healthy again.
func (c *clusterUnderTest) crashes(t *testing.T, site string) {
	t.Helper()
	start := monoNow()
	for _, u := range []string{"cairn-wfe.service", "cairn-mariadb.service"} {
		c.crashRestarts(t, site, u)
	}
	waitUntil(t, "site "+site+" healthy again after the crashes", hostLimit, c.allHealthy)
	t.Logf("site %s: healthy again (the controller's verdict) %s after the first kill", site, secs(monoNow()-start))
}

// siteReboot: a site's host reboots. It comes back with every unit
// active in order, its agent's firewall loaded, account replication runs
// again between the sites, the controller re-admits the site (healthy
// again) and the ACME name is on a healthy site (the controller moves it
// if it saw the site down for downAfter probes; a quicker reboot may pass
// as a few failures), and every probe of the site passes.
func (c *clusterUnderTest) siteReboot(t *testing.T, site string) {
	t.Helper()
	asked, booted := c.reboot(t, site)
	active := c.unitsBack(t, site, asked)
	if out, err := c.hosts[site].Exec(context.Background(), "nft", "list", "table", "inet", "cairn_agent"); err != nil {
		t.Errorf("host %s: the agent's firewall is not loaded after the reboot: %v %s", site, err, out)
	}
	waitUntil(t, "account replication between the sites after site "+site+"'s reboot", hostLimit, func() (bool, string) {
		var st accounts.Status
		if err := c.operator(&st, "accounts", "status"); err != nil {
			return false, err.Error()
		}
		ok := st.OK && len(st.Sites) == len(c.spec.Sites) && len(st.Connections) > 0
		for _, s := range st.Sites {
			ok = ok && s.Reachable && s.Accounts == st.Sites[0].Accounts
		}
		b, _ := json.Marshal(st)
		return ok, string(b)
	})
	replicating := monoNow() - asked
	var st failover.Status
	waitUntil(t, "the controller re-admits site "+site+" after its reboot, the ACME name on a healthy site", hostLimit, func() (bool, string) {
		var seen string
		st, seen = c.failoverStatus()
		name, addr := c.acmeNameSite()
		return st.Leading && siteState(st, site).State == failover.Healthy && siteState(st, site).Blocked == "" &&
			name == st.Active && siteState(st, name).State == failover.Healthy, seen + "; the ACME name: " + addr
	})
	readmitted := monoNow() - asked
	// The controller's verdict does not include CRLs: cairn's deep probe
	// (every step, its CRLs too) from the operator's vantage.
	waitUntil(t, "site "+site+" passes cairn probe --deep again (its CRLs too) after its reboot", hostLimit, func() (bool, string) {
		out, err := exec.Command("ip", "netns", "exec", operatorNetns(c.spec), c.cairn, "-f", c.spec.File, "probe", site, "--deep").CombinedOutput()
		return err == nil, fmt.Sprintf("%v %s", err, out)
	})
	probed := monoNow() - asked
	t.Logf("site %s reboot: booted %s, every unit active %s, accounts replicating %s, healthy again (controller) %s with the ACME name on %s, every probe passes %s",
		site, secs(booted-asked), secs(active-asked), secs(replicating), secs(readmitted), st.Active, secs(probed))
}

// rebootsAndCrashes: the controller's host reboots; two units of the
// standby site crash; a drill crashes the active site's WFE unit, the
// name moves to the standby, and the faulted site's host loses its disk
// and is rebuilt from its backup (drill_test.go); then the host of the
// site now active reboots.
func rebootsAndCrashes(t *testing.T, c *clusterUnderTest) {
	t.Helper()
	start := time.Now()
	active := c.controllerReboot(t)
	standby := ""
	for _, s := range c.spec.Sites {
		if s.Name != active {
			standby = s.Name
		}
	}
	c.crashes(t, standby)
	c.drillOnHosts(t, active, standby)
	c.siteReboot(t, standby) // active now
	t.Logf("reboots and crashes: %.1fs", time.Since(start).Seconds())
}
