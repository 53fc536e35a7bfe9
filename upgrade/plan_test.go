package upgrade

import (
	"slices"
	"testing"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/site"
)

// Standbys first, least preferred first; the active site last, whichever
// its priority.
func TestOrderTakesTheActiveSiteLast(t *testing.T) {
	spec := cluster.Default([]string{"a", "b", "c"}) // priorities 1, 2, 3
	for _, c := range []struct {
		active string
		want   []string
	}{{"a", []string{"c", "b", "a"}}, {"b", []string{"c", "a", "b"}}, {"", []string{"c", "b", "a"}}} {
		plans := []SitePlan{{Site: "a"}, {Site: "b"}, {Site: "c"}}
		order(plans, spec, c.active)
		var got []string
		for i, p := range plans {
			got = append(got, p.Site)
			if p.Step != i+1 || p.Active != (i == len(plans)-1) {
				t.Errorf("active %q: %+v", c.active, p)
			}
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("active %q: order %v, want %v", c.active, got, c.want)
		}
	}
}

// A process restarts when its program, arguments or environment change,
// or a file it reads does.
func TestRestartsAreTheChangedProcesses(t *testing.T) {
	va := site.Process{Name: "va", Program: "boulder", Args: []string{"boulder-va", "--config", "/lab/sites/a/etc/va.json"}}
	a := &site.Bundle{Processes: []site.Process{{Name: "sa", Program: "boulder", Args: []string{"boulder-sa"}}, {Name: "wfe", Program: "boulder"}, {Name: "old"}, va}}
	b := &site.Bundle{Processes: []site.Process{{Name: "sa", Program: "boulder", Args: []string{"boulder-sa"}}, {Name: "wfe", Program: "boulder", Env: []string{"GOGC=50"}}, {Name: "new"}, va}}
	got := restarts(a, b, []string{"etc/va.json"})
	slices.Sort(got)
	if want := []string{"new", "old (removed)", "va", "wfe"}; !slices.Equal(got, want) {
		t.Errorf("restarts %v, want %v", got, want)
	}
}
