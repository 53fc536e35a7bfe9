package drill_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-pki/cairn/drill"
	"github.com/cairn-pki/cairn/failover"
	"github.com/cairn-pki/cairn/internal/labtest"
	"github.com/cairn-pki/cairn/internal/testenv"
	"github.com/cairn-pki/cairn/lab"
)

func TestBuiltinsParse(t *testing.T) {
	all, err := drill.Builtins()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"controller-crash", "deep-db-failure", "dns-primary-down", "flapping", "full-outage", "hsm-failure", "partition", "site-down", "slow-site"}
	var got []string
	for _, s := range all {
		got = append(got, s.Name)
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("built-ins %v, want %v", got, want)
	}
}

func TestScenarioErrorsNameTheField(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"name: x\nduration: 10s\ntimeline:\n  - at: 1s\n    fault: melt\n    site: a\n", "timeline[0].fault"},
		{"name: x\nduration: 10s\ntimeline:\n  - at: 1s\n    fault: crash\n    site: a\n", "timeline[0].component"},
		{"name: x\nduration: 10s\nworkload:\n  policies: [sometimes]\n", "workload.policies[0]"},
		{"name: x\nduration: 10s\ncolour: red\n", "field colour not found"},
		{"name: x\n", "duration"},
	} {
		_, err := drill.Parse([]byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want it to name %s", tc.yaml, err, tc.want)
		}
	}
}

const fastPolicy = "failover:\n  upAfter: 3\n  stablePeriod: 3s\n  holdDown: 15s\n"

func waitHealthy(t *testing.T, r *drill.Runner, l *lab.Lab) {
	t.Helper()
	testenv.WaitFor(t, "every site healthy", 90*time.Second, func() bool {
		st, err := drill.ControllerStatus(context.Background(), l.Spec)
		if err != nil {
			return false
		}
		for _, s := range st.Sites {
			if s.State != failover.Healthy {
				return false
			}
		}
		return true
	})
}

// site-down and deep-db-failure end to end on a 2-site lab, then a drill
// interrupted right after its fault restores it, and the HTML report
// renders in Chromium.
func TestDrillsInTheLab(t *testing.T) {
	spec := labtest.SpecWith(t, labtest.BlockDrill, fastPolicy, "a", "b")
	l := &lab.Lab{Spec: spec, Log: labtest.Log{T: t}, Cairn: labtest.CairnBinary(t)}
	ctx := context.Background()
	t.Cleanup(func() { l.Down(context.Background()) })
	if _, err := l.Up(ctx, lab.UpOptions{}); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	for _, name := range []string{"site-down", "deep-db-failure"} {
		sc, err := drill.Load(name)
		if err != nil {
			t.Fatal(err)
		}
		r := &drill.Runner{Lab: l, Scenario: sc, Log: labtest.Log{T: t}}
		waitHealthy(t, r, l)
		rep, err := r.Run(ctx)
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(out, name)
		if err := rep.Write(dir); err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(filepath.Join(dir, "report.json"))
		var raw map[string]any
		if err := json.Unmarshal(b, &raw); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"scenario", "passed", "timings", "clients"} {
			if _, ok := raw[k]; !ok {
				t.Errorf("report.json has no %q", k)
			}
		}
		t.Logf("%s:\n%s", name, rep.Markdown())
		if !rep.Passed {
			t.Errorf("%s failed: %v", name, rep.Failures)
		}
		if rep.Timings.Commit == nil || rep.Timings.Visible == nil || rep.Timings.FirstSuccess == nil {
			t.Errorf("%s: missing phase timings %+v", name, rep.Timings)
		}
		for _, c := range rep.Clients {
			if c.Issuances == 0 {
				t.Errorf("%s: policy %s issued nothing", name, c.Policy)
			}
		}
	}

	// The report renders, self-contained, in headless Chromium.
	html := filepath.Join(out, "site-down", "report.html")
	dom := testenv.Chromium(t, "--dump-dom", "file://"+html)
	for _, want := range []string{`id="timeline"`, "<rect", `id="clients"`, "site-down"} {
		if !strings.Contains(dom, want) {
			t.Errorf("rendered report lacks %s", want)
		}
	}
	png := filepath.Join(out, "report.png")
	testenv.Chromium(t, "--screenshot="+png, "--window-size=1200,900", "file://"+html)
	if fi, err := os.Stat(png); err != nil || fi.Size() < 10000 {
		t.Errorf("screenshot: %v", err)
	}

	// Interrupted right after the fault: the WFE it killed runs again.
	sc, err := drill.Parse([]byte("name: interrupted\nduration: 60s\ntimeline:\n  - at: 1s\n    fault: crash\n    site: active\n    component: wfe\n"))
	if err != nil {
		t.Fatal(err)
	}
	r := &drill.Runner{Lab: l, Scenario: sc, Log: labtest.Log{T: t}}
	waitHealthy(t, r, l)
	st, _ := drill.ControllerStatus(ctx, spec)
	ictx, cancel := context.WithCancel(ctx)
	go func() {
		testenv.WaitFor(t, "the WFE killed", 20*time.Second, func() bool { return !l.ComponentRunning(st.Active, "wfe") })
		cancel()
	}()
	rep, err := r.Run(ictx)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Interrupted || rep.Passed {
		t.Errorf("interrupted drill: interrupted %v passed %v", rep.Interrupted, rep.Passed)
	}
	if !l.ComponentRunning(st.Active, "wfe") {
		t.Fatalf("the interrupted drill left %s's WFE down", st.Active)
	}
}
