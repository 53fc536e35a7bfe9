package revocation

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairn-pki/cairn/cluster"
)

// A site that is down keeps its revocation pending and is gated; once it
// is back the revocation is applied, its CRLs published, and the gate
// lifts only when the serial is in a published CRL.
func TestReplayerGatesAReturningSite(t *testing.T) {
	ctx := context.Background()
	clock := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	down := map[string]bool{"b": true}
	revoked, published, crl := map[string]bool{}, map[string]int{}, map[string]bool{}
	r := &Replayer{Journal: &MemJournal{}, Now: func() time.Time { return clock },
		Revoke: func(_ context.Context, site, serial, _ string) error {
			if down[site] {
				return errors.New("connection refused")
			}
			revoked[serial] = true
			return nil
		},
		InCRL:   func(_ context.Context, site, serial string) (bool, error) { return crl[serial], nil },
		Publish: func(_ context.Context, site string) error { published[site]++; return nil },
	}
	// One revocation at a live site (a), one at a dead one (b).
	for _, e := range []Entry{{Serial: "01aa", Site: "a", Reason: "superseded"}, {Serial: "02bb", Site: "b", Reason: "keyCompromise"}} {
		if _, err := r.Submit(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if again, _ := r.Submit(ctx, Entry{Serial: "02bb", Site: "b", Reason: "unspecified"}); again.Reason != "keyCompromise" {
		t.Fatalf("a second request replaced the first: %+v", again)
	}
	if err := r.Step(ctx); err != nil {
		t.Fatal(err)
	}
	state := func() map[string]string {
		es, _ := r.Journal.List(ctx)
		out := map[string]string{}
		for _, e := range es {
			out[e.Serial] = e.State()
		}
		return out
	}
	if s := state(); s["01aa"] != "revoked" || s["02bb"] != "pending" {
		t.Fatalf("after the first step: %v", s)
	}
	if b := r.Blocked(); len(b) != 1 || b["b"] == "" {
		t.Fatalf("blocked %v: want b only (a revoked at once is not gated)", b)
	}
	if p := r.Pending(); p["a"] != 1 || p["b"] != 1 {
		t.Fatalf("pending %v: want one at a (not yet in its CRL) and one at b", p)
	}
	// b is back: applied, CRLs published at once, still gated until seen.
	down["b"] = false
	clock = clock.Add(time.Minute)
	r.Step(ctx)
	if !revoked["02bb"] || published["b"] != 1 || state()["02bb"] != "revoked" || r.Blocked()["b"] == "" {
		t.Fatalf("b back: revoked %v, published %v, state %v, blocked %v", revoked, published, state(), r.Blocked())
	}
	crl["02bb"], crl["01aa"] = true, true
	r.Step(ctx)
	if s := state(); s["02bb"] != "in-crl" || s["01aa"] != "in-crl" || len(r.Blocked()) != 0 {
		t.Fatalf("in the CRLs: %v, blocked %v", s, r.Blocked())
	}
	es, _ := r.Journal.List(ctx)
	for _, e := range es {
		if e.Serial == "02bb" && (!e.InCRLAt.Equal(clock) || !e.RequestedAt.Equal(clock.Add(-time.Minute)) || !e.Deferred) {
			t.Errorf("entry times: %+v", e)
		}
	}
}

// A compromised key is blocked at every live site at once; a site that is
// down is gated until it has blocked it too.
func TestReplayerBlocksACompromisedKeyEverywhere(t *testing.T) {
	ctx := context.Background()
	down := map[string]bool{"c": true}
	blockedAt := map[string]int{}
	r := &Replayer{Journal: &MemJournal{}, Sites: []string{"a", "b", "c"},
		Revoke: func(context.Context, string, string, string) error { return nil },
		InCRL:  func(context.Context, string, string) (bool, error) { return true, nil },
		BlockKey: func(_ context.Context, site, spki, _ string) error {
			if down[site] {
				return errors.New("site " + site + ": connection refused")
			}
			blockedAt[site]++
			return nil
		}}
	r.Submit(ctx, Entry{Serial: "02aa", Site: "b", Reason: "keyCompromise", SPKIHash: strings.Repeat("ab", 32)})
	r.Submit(ctx, Entry{Serial: "01bb", Site: "a", Reason: "superseded", SPKIHash: ""})
	r.Step(ctx)
	if blockedAt["a"] != 1 || blockedAt["b"] != 1 || blockedAt["c"] != 0 {
		t.Fatalf("blocked at %v", blockedAt)
	}
	if b := r.Blocked(); len(b) != 1 || b["c"] == "" {
		t.Fatalf("gated %v: want c only", b)
	}
	down["c"] = false
	r.Step(ctx)
	r.Step(ctx) // nothing left to do: no second block anywhere
	if blockedAt["c"] != 1 || blockedAt["a"] != 1 || len(r.Blocked()) != 0 {
		t.Fatalf("c back: blocked at %v, gated %v", blockedAt, r.Blocked())
	}
	es, _ := r.Journal.List(ctx)
	for _, e := range es {
		if e.Serial == "02aa" && len(e.KeyBlocked) != 3 {
			t.Errorf("key blocked at %v", e.KeyBlocked)
		}
	}
}

// The journal lives in etcd: an entry the controller would not have
// written (another site's serial, an unknown reason or site, a key hash
// that is not one) is refused before any call to a site, counted, marked
// for `cairn revoke status`, and gates no site; a valid entry next to
// them is applied.
func TestReplayerRefusesEntriesItWouldNotHaveWritten(t *testing.T) {
	ctx := context.Background()
	spec := cluster.Default([]string{"a", "b"})
	var calls []string
	j := &MemJournal{}
	r := &Replayer{Journal: j, Sites: spec.SiteNames(), Route: func(serial string) (string, error) { return Route(spec, serial) },
		Revoke: func(_ context.Context, site, serial, _ string) error {
			calls = append(calls, "revoke "+site+" "+serial)
			return errors.New("down")
		},
		BlockKey: func(_ context.Context, site, _, _ string) error { calls = append(calls, "block "+site); return nil },
		InCRL:    func(context.Context, string, string) (bool, error) { return false, nil }}
	pa, pb := spec.Sites[0].SerialPrefix.Value(), spec.Sites[1].SerialPrefix.Value()
	serial := func(prefix byte, fill string) string { return fmt.Sprintf("%02x", prefix) + strings.Repeat(fill, 17) }
	bad := []Entry{
		{Serial: serial(pb, "11"), Site: "a", Reason: "superseded"},                            // b's serial sent to a
		{Serial: serial(pa, "12"), Site: "a", Reason: "removeFromCRL"},                         // not a reason cairn passes
		{Serial: serial(pa, "13"), Site: "a", Reason: "keyCompromise", SPKIHash: "not-a-hash"}, // bad key hash
		{Serial: "zz", Site: "a", Reason: "superseded"},                                        // not hex
		{Serial: serial(0x7e, "14"), Site: "x", Reason: "superseded"},                          // no such site
	}
	for _, e := range bad {
		if err := j.Put(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	good := Entry{Serial: serial(pa, "22"), Site: "a", Reason: "superseded"}
	if err := j.Put(ctx, good); err != nil {
		t.Fatal(err)
	}
	r.Step(ctx)
	if len(calls) != 1 || calls[0] != "revoke a "+good.Serial {
		t.Fatalf("calls to sites: %q, want only the valid entry's revocation", calls)
	}
	if n := r.Refused(); n != len(bad) {
		t.Errorf("refused %d, want %d", n, len(bad))
	}
	if b := r.Blocked(); b["b"] != "" || b["x"] != "" {
		t.Errorf("refused entries gate sites: %v", b)
	}
	es, _ := j.List(ctx)
	marked := 0
	for _, e := range es {
		if strings.HasPrefix(e.LastError, refusedPrefix) {
			marked++
		}
	}
	if marked != len(bad) {
		t.Errorf("%d entries marked refused, want %d: %+v", marked, len(bad), es)
	}
}

// A site rebuilt from a backup: its entries are pending again and its key
// blocks due again (the others' stay done); one whose certificate the
// backup lacks is done once the serial is in the site's CRLs (the rebuild
// put it back from the archived ones), else it stays pending and gates
// the site, saying why.
func TestReplayerReopensARestoredSite(t *testing.T) {
	ctx := context.Background()
	known := map[string]bool{"02aa": true}
	inCRL := map[string]bool{"02cc": true, "01bb": true}
	var revoked, blocks []string
	r := &Replayer{Journal: &MemJournal{}, Sites: []string{"a", "b"},
		Revoke: func(_ context.Context, site, serial, _ string) error {
			if site == "b" && !known[serial] {
				return fmt.Errorf("site b: %w", ErrNotFound)
			}
			revoked = append(revoked, serial)
			return nil
		},
		InCRL: func(_ context.Context, _, serial string) (bool, error) {
			return inCRL[serial] || slices.Contains(revoked, serial), nil
		},
		BlockKey: func(_ context.Context, site, _, _ string) error {
			blocks = append(blocks, site)
			return nil
		}}
	for _, e := range []Entry{
		{Serial: "02aa", Site: "b", Reason: "keyCompromise", SPKIHash: strings.Repeat("ab", 32)},
		{Serial: "02cc", Site: "b", Reason: "superseded"},
		{Serial: "02dd", Site: "b", Reason: "superseded"},
		{Serial: "01bb", Site: "a", Reason: "superseded"},
	} {
		r.Submit(ctx, e)
	}
	known["02cc"], known["02dd"] = true, true
	r.Step(ctx)
	if len(r.Blocked()) != 0 || len(r.Pending()) != 0 {
		t.Fatalf("before the loss: gated %v, pending %v", r.Blocked(), r.Pending())
	}
	// b is rebuilt from a backup that has 02aa only.
	known = map[string]bool{"02aa": true}
	revoked, blocks = nil, nil
	n, err := r.Reopen(ctx, "b")
	if err != nil || n != 3 {
		t.Fatalf("reopen: %d %v, want b's 3 entries", n, err)
	}
	r.Step(ctx)
	es, _ := r.Journal.List(ctx)
	state := map[string]string{}
	for _, e := range es {
		state[e.Serial] = e.State()
		if e.Serial == "02dd" && !strings.Contains(e.LastError, "revoke-site") {
			t.Errorf("02dd: %q, want the reason and the way out", e.LastError)
		}
	}
	want := map[string]string{"02aa": "in-crl", "02cc": "in-crl", "02dd": "pending", "01bb": "in-crl"}
	if fmt.Sprint(state) != fmt.Sprint(want) {
		t.Errorf("after the rebuild: %v, want %v", state, want)
	}
	if strings.Join(revoked, ",") != "02aa" || strings.Join(blocks, ",") != "b" {
		t.Errorf("revoked again %q (want 02aa), key blocked again at %q (want b)", revoked, blocks)
	}
	if b := r.Blocked(); len(b) != 1 || b["b"] == "" {
		t.Errorf("gated %v: want b (02dd cannot be listed)", b)
	}
}
