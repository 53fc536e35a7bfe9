// Package monitoring holds what operators load into their own monitoring:
// cairn's Prometheus alert rules (cairn-rules.yml, tested with promtool in
// tests/) and the Grafana dashboard (cairn-dashboard.json). They are
// embedded so that the lab's Prometheus loads the very same rules and
// tests can check the dashboard against a running controller.
package monitoring

import (
	_ "embed"
	"encoding/json"
	"regexp"
	"sort"
	"strings"
)

// Rules is cairn-rules.yml.
//
//go:embed cairn-rules.yml
var Rules []byte

// Dashboard is cairn-dashboard.json (Grafana's dashboard model, for
// import: its datasource is the input DS_PROMETHEUS).
//
//go:embed cairn-dashboard.json
var Dashboard []byte

// Panel is the part of a dashboard panel the checks read.
type Panel struct {
	ID      int    `json:"id"`
	Type    string `json:"type"`
	Title   string `json:"title"`
	GridPos struct {
		X, Y, W, H int
	} `json:"gridPos"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
}

// Model is the part of the dashboard model the checks read.
type Model struct {
	Title         string  `json:"title"`
	UID           string  `json:"uid"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []Panel `json:"panels"`
	Inputs        []struct {
		Name, Type, PluginID string
	} `json:"__inputs"`
	Templating struct {
		List []struct {
			Name, Type string
		} `json:"list"`
	} `json:"templating"`
	Annotations struct {
		List []struct {
			Expr string `json:"expr"`
		} `json:"list"`
	} `json:"annotations"`
}

// DashboardModel decodes Dashboard.
func DashboardModel() (*Model, error) {
	var m Model
	if err := json.Unmarshal(Dashboard, &m); err != nil {
		return nil, err
	}
	return &m, nil
}

// Exprs are every PromQL expression of the dashboard (panel targets and
// annotations).
func (m *Model) Exprs() []string {
	var out []string
	for _, p := range m.Panels {
		for _, t := range p.Targets {
			out = append(out, t.Expr)
		}
	}
	for _, a := range m.Annotations.List {
		if a.Expr != "" {
			out = append(out, a.Expr)
		}
	}
	return out
}

var metricRE = regexp.MustCompile(`\bcairn_[a-z0-9_]+`)

// Metrics are the metric families the dashboard's expressions name
// (histogram series as their family).
func (m *Model) Metrics() []string {
	seen := map[string]bool{}
	for _, e := range m.Exprs() {
		for _, name := range metricRE.FindAllString(e, -1) {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				name = strings.TrimSuffix(name, suffix)
			}
			seen[name] = true
		}
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
