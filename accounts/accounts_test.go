package accounts

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/site"
)

type fakeReader map[string]Raw

func (f fakeReader) Read(_ context.Context, s string) (Raw, error) {
	raw, ok := f[s]
	if !ok {
		return Raw{}, errors.New("connection refused")
	}
	return raw, nil
}

// conn is a healthy connection from a site of cluster.Default's a, b, c
// (GTID domains 1, 2, 3).
func conn(name, pos string) Connection {
	zero := int64(0)
	domain := map[string]string{"a": "1", "b": "2", "c": "3"}[name]
	return Connection{Name: name, IORunning: "Yes", SQLRunning: "Yes", DoTable: site.ReplicationFilter(), DoDomainIDs: domain, UsingGTID: "Slave_Pos", SecondsBehind: &zero, GTIDSlavePos: pos}
}

// guarded is a site whose triggers check every peer row (none refused yet).
func guarded(raw Raw) Raw {
	raw.RunTriggersForRBR, raw.SkipErrors, raw.ForeignWrites = "ENFORCE", "1032,1062,1644", map[int64]ForeignWrite{}
	return raw
}

// A healthy 3-site mesh, then each way it can go wrong, each named in one
// problem line.
func TestCheckJudgesConnectionsAndDiff(t *testing.T) {
	spec := cluster.Default([]string{"a", "b", "c"}) // prefixes 1, 2, 3: account IDs ≡ prefix mod 128
	rows := []Account{{1, "k1", "valid"}, {2, "k2", "valid"}, {3, "k3", "valid"}, {129, "k4", "valid"}}
	healthy := func() fakeReader {
		return fakeReader{
			"a": guarded(Raw{BinlogPos: "1-1-50", Connections: []Connection{conn("b", "2-2-40,3-3-30"), conn("c", "2-2-40,3-3-30")}, Accounts: rows}),
			"b": guarded(Raw{BinlogPos: "2-2-40", Connections: []Connection{conn("a", "1-1-50,3-3-30"), conn("c", "1-1-50,3-3-30")}, Accounts: rows}),
			"c": guarded(Raw{BinlogPos: "3-3-30", Connections: []Connection{conn("a", "1-1-50,2-2-40"), conn("b", "1-1-50,2-2-40")}, Accounts: rows}),
		}
	}
	st := Check(context.Background(), spec, healthy())
	if !st.OK || len(st.Connections) != 6 {
		t.Fatalf("healthy mesh: ok %v, %d connections, problems %q", st.OK, len(st.Connections), st.Problems)
	}
	for _, c := range st.Connections {
		if c.LagTransactions == nil || *c.LagTransactions != 0 || !c.FilterOK || !c.Running || c.ForeignWrites == nil || c.ForeignWrites.Count != 0 {
			t.Errorf("%s from %s: %+v", c.Site, c.Peer, c)
		}
	}

	for _, tc := range []struct {
		name   string
		break_ func(f fakeReader)
		want   string
	}{
		{"lagging", func(f fakeReader) {
			r := f["b"]
			r.Connections[0].GTIDSlavePos = "1-1-45,3-3-30"
			r.Accounts = rows[1:]
			f["b"] = r
		},
			"1 accounts missing at some site (first: id 1 missing at b)"},
		{"stopped", func(f fakeReader) {
			r := f["c"]
			r.Connections[1].IORunning, r.Connections[1].LastIOError = "Connecting", "error connecting to master 'repl_c@127.0.32.1:3306'"
			f["c"] = r
		}, "site c: replication from b not running: error connecting to master"},
		{"no filter", func(f fakeReader) { f["a"].Connections[0].DoTable = "" }, `site a: connection from b replicates "", not exactly boulder_sa.registrations,cairn.eab_keys`},
		{"no domain filter", func(f fakeReader) { f["a"].Connections[1].DoDomainIDs = "" }, `site a: connection from c takes GTID domains "", not only c's 3`},
		{"triggers off", func(f fakeReader) { r := f["b"]; r.RunTriggersForRBR = "YES"; f["b"] = r },
			"site b: replicated account rows are not checked for their origin (slave_run_triggers_for_rbr YES, not ENFORCE)"},
		{"refusals stop replication", func(f fakeReader) { r := f["c"]; r.SkipErrors = "1032,1062"; f["c"] = r },
			"site c: a refused foreign account row would stop replication"},
		{"missing connection", func(f fakeReader) { r := f["a"]; r.Connections = r.Connections[:1]; f["a"] = r }, `site a: no replication connection "c" from c`},
		{"unexpected connection", func(f fakeReader) { r := f["a"]; r.Connections = append(r.Connections, conn("old", "")); f["a"] = r },
			"site a: replication connections no site of the spec explains: old"},
		{"peer unreachable", func(f fakeReader) { delete(f, "c") }, "site c: database unreachable: connection refused"},
		{"conflict", func(f fakeReader) {
			// The same key registered at a (id 257) and b (id 130) during a
			// partition: each site skipped the other's row.
			for s, extra := range map[string][]Account{"a": {{257, "kx", "valid"}}, "b": {{130, "kx", "valid"}}, "c": {{257, "kx", "valid"}, {130, "kx", "valid"}}} {
				r := f[s]
				r.Accounts = append(append([]Account{}, rows...), extra...)
				if s != "c" {
					r.SkippedErrors = 1
				}
				f[s] = r
			}
		}, "1 keys registered under several IDs"},
		{"conflict rows are not missing", func(f fakeReader) {
			for s, extra := range map[string][]Account{"a": {{257, "kx", "valid"}}, "b": {{130, "kx", "valid"}}, "c": {{257, "kx", "valid"}}} {
				r := f[s]
				r.Accounts = append(append([]Account{}, rows...), extra...)
				f[s] = r
			}
		}, "^1 keys registered under several IDs$"},
		{"status differs", func(f fakeReader) {
			r := f["c"]
			r.Accounts = append([]Account{}, rows...)
			r.Accounts[0].Status = "deactivated"
			f["c"] = r
		}, "1 accounts differ between sites (first: id 1, status)"},
	} {
		f := healthy()
		tc.break_(f)
		st := Check(context.Background(), spec, f)
		if exact, ok := strings.CutPrefix(tc.want, "^"); ok {
			// The only problem, exactly.
			if want := strings.TrimSuffix(exact, "$"); len(st.Problems) != 1 || !strings.HasPrefix(st.Problems[0], want) {
				t.Errorf("%s: problems %q, want only %q", tc.name, st.Problems, want)
			}
			continue
		}
		if st.OK || !strings.Contains(strings.Join(st.Problems, "\n"), tc.want) {
			t.Errorf("%s: ok %v, problems %q, want one containing %q", tc.name, st.OK, st.Problems, tc.want)
		}
	}
}

// Rows a site refused from a peer show on that connection, by the peer's
// domain; they are counted, not a problem (the alert is on increases).
func TestCheckForeignWrites(t *testing.T) {
	spec := cluster.Default([]string{"a", "b"})
	rows := []Account{{1, "k1", "valid"}, {2, "k2", "valid"}}
	b := guarded(Raw{BinlogPos: "2-2-4", Connections: []Connection{conn("a", "1-1-9")}, Accounts: rows})
	b.ForeignWrites = map[int64]ForeignWrite{1: {Count: 3, LastID: 2, LastOp: "update"}}
	st := Check(context.Background(), spec, fakeReader{
		"a": guarded(Raw{BinlogPos: "1-1-9", Connections: []Connection{conn("b", "2-2-4")}, Accounts: rows}), "b": b})
	if !st.OK {
		t.Errorf("problems %q", st.Problems)
	}
	for _, c := range st.Connections {
		want := int64(0)
		if c.Site == "b" {
			want = 3
		}
		if c.ForeignWrites == nil || c.ForeignWrites.Count != want {
			t.Errorf("%s from %s: foreign writes %+v, want %d", c.Site, c.Peer, c.ForeignWrites, want)
		}
	}
}

// With replication off there are no connections to judge.
func TestCheckReplicationOff(t *testing.T) {
	spec := cluster.Default([]string{"a", "b"})
	spec.Accounts.Replication = cluster.ReplicationOff
	st := Check(context.Background(), spec, fakeReader{"a": {Accounts: []Account{{1, "k1", "valid"}}}, "b": {}})
	if !st.OK || len(st.Connections) != 0 || len(st.Missing) != 0 {
		t.Errorf("off: %+v", st)
	}
}

func TestParseGTIDPos(t *testing.T) {
	got := ParseGTIDPos("1-1-28, 2-2-20,bad,3-7-5")
	if got[1] != 28 || got[2] != 20 || got[3] != 5 || len(got) != 3 {
		t.Errorf("%v", got)
	}
}
