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
	if s.Intervals[KindNonce] != spec.Failover.Probes.Nonce.Duration || s.Intervals[KindIssuance] != spec.Failover.Probes.Issuance.Duration ||
		s.Intervals[KindReplication] != 10*time.Second {
		t.Errorf("schedule %v", s.Intervals)
	}
	// Deadlines: half the interval, never less than the kind's least.
	for name, every := range s.Intervals {
		k, _ := KindOf(name)
		if got, want := s.deadline(name, every), max(every/2, k.MinDeadline); got != want {
			t.Errorf("%s: deadline %s, want %s", name, got, want)
		}
	}
	if s.deadline(KindIssuance, s.Intervals[KindIssuance]) <= s.Intervals[KindIssuance]/2 {
		t.Errorf("issuance deadline %s at a %s interval: a busy host's slow issuance would fail it", s.deadline(KindIssuance, s.Intervals[KindIssuance]), s.Intervals[KindIssuance])
	}
	if _, ok := s.Intervals[KindRevocation]; ok {
		t.Error("revocation is scheduled")
	}
	if one := DefaultSchedule(cluster.Default([]string{"a"})); one.Intervals[KindReplication] != 0 {
		t.Error("replication probed with one site")
	}
	if got := KindsIn(false); len(got) != 5 {
		t.Errorf("quick set %v", got)
	}
	if _, ok := KindFunc("nope"); ok {
		t.Error("unknown kind found")
	}
}
