package healthcheck

import (
	"testing"
	"time"

	"github.com/cairn-pki/cairn/cluster"
)

// The table is the one place a kind is described: every row is complete,
// a deep kind votes, and the schedule and `cairn probe` sets come from it.
func TestKindTable(t *testing.T) {
	seen := map[string]bool{}
	for _, k := range Kinds {
		if k.Name == "" || k.Probe == nil || k.Every == nil || seen[k.Name] {
			t.Fatalf("incomplete or repeated row: %+v", k)
		}
		seen[k.Name] = true
		if k.Deep && !k.Votes {
			t.Errorf("%s is deep but does not vote", k.Name)
		}
		switch k.Set {
		case SetQuick, SetDeep, SetExplicit:
		default:
			t.Errorf("%s: set %q", k.Name, k.Set)
		}
	}
	spec := cluster.Default([]string{"a", "b"})
	s := DefaultSchedule(spec)
	if s.Intervals[KindNonce] != 2*time.Second || s.Intervals[KindIssuance] != 15*time.Second || s.Intervals[KindReplication] != 10*time.Second {
		t.Errorf("schedule %v", s.Intervals)
	}
	if _, ok := s.Intervals[KindRevocation]; ok {
		t.Error("revocation is scheduled")
	}
	if one := DefaultSchedule(cluster.Default([]string{"a"})); one.Intervals[KindReplication] != 0 {
		t.Error("replication probed with one site")
	}
	if got := KindsIn(false); len(got) != 4 {
		t.Errorf("quick set %v", got)
	}
	if _, ok := KindFunc("nope"); ok {
		t.Error("unknown kind found")
	}
}
