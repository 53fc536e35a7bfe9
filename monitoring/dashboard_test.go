package monitoring

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/cairn-pki/cairn/internal/testenv"
)

// The dashboard is a dashboard model Grafana imports: unique panel ids on
// a 24-column grid, known panel types, every query with a refId and an
// expression on the imported datasource, every variable defined.
func TestDashboardIsAValidModel(t *testing.T) {
	m, err := DashboardModel()
	if err != nil {
		t.Fatal(err)
	}
	if m.Title == "" || m.UID == "" || m.SchemaVersion < 36 || len(m.Panels) < 10 {
		t.Fatalf("model %q %q schema %d, %d panels", m.Title, m.UID, m.SchemaVersion, len(m.Panels))
	}
	if len(m.Inputs) != 1 || m.Inputs[0].Name != "DS_PROMETHEUS" || m.Inputs[0].PluginID != "prometheus" {
		t.Errorf("__inputs %+v: want one Prometheus datasource input", m.Inputs)
	}
	vars := map[string]bool{"__rate_interval": true, "__range": true, "__interval": true}
	for _, v := range m.Templating.List {
		vars[v.Name] = true
	}
	types := map[string]bool{"row": true, "timeseries": true, "state-timeline": true, "stat": true, "bargauge": true, "table": true}
	ids := map[int]bool{}
	varRE := regexp.MustCompile(`\$(\w+)`)
	for _, p := range m.Panels {
		name := fmt.Sprintf("panel %d %q", p.ID, p.Title)
		if ids[p.ID] || p.ID == 0 {
			t.Errorf("%s: id not unique", name)
		}
		ids[p.ID] = true
		if !types[p.Type] {
			t.Errorf("%s: type %q", name, p.Type)
		}
		g := p.GridPos
		if g.W < 1 || g.H < 1 || g.X < 0 || g.X+g.W > 24 {
			t.Errorf("%s: gridPos %+v off the 24-column grid", name, g)
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${DS_PROMETHEUS}" || len(p.Targets) == 0 {
			t.Errorf("%s: datasource %+v, %d targets", name, p.Datasource, len(p.Targets))
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if tg.RefID == "" || refs[tg.RefID] || strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("%s: target %+v", name, tg)
			}
			refs[tg.RefID] = true
			for _, v := range varRE.FindAllStringSubmatch(tg.Expr, -1) {
				if !vars[v[1]] {
					t.Errorf("%s: $%s is not a variable of the dashboard", name, v[1])
				}
			}
		}
	}
}

// Every expression parses, by Prometheus's own parser (promtool, the
// version the lab runs), with the variables as Grafana fills them.
func TestDashboardQueriesParse(t *testing.T) {
	testenv.Integration(t, "promtool")
	m, err := DashboardModel()
	if err != nil {
		t.Fatal(err)
	}
	fill := strings.NewReplacer("$__rate_interval", "1m", "$__range", "6h", "$__interval", "15s", "$site", ".+", "$range", "24h")
	type rule struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	var rules []rule
	for i, e := range m.Exprs() {
		rules = append(rules, rule{Record: fmt.Sprintf("cairn_dashboard_query_%d", i), Expr: fill.Replace(e)})
	}
	b, _ := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	file := filepath.Join(t.TempDir(), "dashboard-queries.yml")
	os.WriteFile(file, b, 0o644)
	if out, err := exec.Command("promtool", "check", "rules", file).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules (every dashboard query as a recording rule): %v\n%s", err, out)
	}
	if len(m.Metrics()) < 10 {
		t.Errorf("metrics named: %v", m.Metrics())
	}
}
