package healthcheck

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/cairn-pki/cairn/accounts"
	"github.com/cairn-pki/cairn/site"
)

type fakeRepl struct {
	raw accounts.Raw
	err error
}

func (f fakeRepl) Read(context.Context, string) (accounts.Raw, error) { return f.raw, f.err }

// A step for the ownership guard and one per peer; each way a connection
// or the guard breaks fails its own step with the replication class, and
// lag, skipped and refused rows become facts.
func TestProbeReplication(t *testing.T) {
	lag := int64(3)
	domains := map[string]string{"b": "2", "c_east": "3"}
	far := int64(MaxReplicationLagSeconds + 1)
	ok := func(name string, behind *int64) accounts.Connection {
		return accounts.Connection{Name: name, IORunning: "Yes", SQLRunning: "Yes", DoTable: site.ReplicationFilter(), DoDomainIDs: domains[name], UsingGTID: "Slave_Pos", SecondsBehind: behind}
	}
	// A site whose triggers check every peer row and skip the refused ones;
	// it refused 4 rows from c-east, none from b.
	guarded := func(raw accounts.Raw) accounts.Raw {
		raw.RunTriggersForRBR, raw.SkipErrors = "ENFORCE", "1032,1062,1644"
		raw.ForeignWrites = map[int64]accounts.ForeignWrite{3: {Count: 4, LastID: 130, LastOp: "update"}}
		return raw
	}
	for _, tc := range []struct {
		name   string
		reader fakeRepl
		fail   string // the failed step's detail, "" for success
	}{
		{"healthy", fakeRepl{raw: guarded(accounts.Raw{SkippedErrors: 2, Connections: []accounts.Connection{ok("b", &lag), ok("c_east", &lag)}})}, ""},
		{"unreachable", fakeRepl{err: errors.New("dial tcp: connection refused")}, "connection refused"},
		{"missing", fakeRepl{raw: guarded(accounts.Raw{Connections: []accounts.Connection{ok("b", &lag)}})}, "no replication connection from c-east"},
		{"stopped", fakeRepl{raw: guarded(accounts.Raw{Connections: []accounts.Connection{ok("b", &lag),
			{Name: "c_east", IORunning: "Connecting", SQLRunning: "Yes", DoTable: site.ReplicationFilter(), DoDomainIDs: "3", UsingGTID: "Slave_Pos", LastIOError: "error connecting to master"}}})},
			"replication from c-east not running: error connecting to master"},
		{"unfiltered", fakeRepl{raw: guarded(accounts.Raw{Connections: []accounts.Connection{ok("b", &lag), {Name: "c_east", IORunning: "Yes", SQLRunning: "Yes"}}})}, `replicates ""`},
		{"any domain", fakeRepl{raw: guarded(accounts.Raw{Connections: []accounts.Connection{ok("b", &lag), {Name: "c_east", IORunning: "Yes", SQLRunning: "Yes", DoTable: site.ReplicationFilter(), UsingGTID: "Slave_Pos"}}})},
			`connection from c-east takes GTID domains "", not only c-east's 3`},
		{"lagging", fakeRepl{raw: guarded(accounts.Raw{Connections: []accounts.Connection{ok("b", &far), ok("c_east", &lag)}})}, "replication from b is 301 s behind"},
		{"triggers off", fakeRepl{raw: func() accounts.Raw {
			r := guarded(accounts.Raw{Connections: []accounts.Connection{ok("b", &lag), ok("c_east", &lag)}})
			r.RunTriggersForRBR = "NO"
			return r
		}()}, "replicated account rows are not checked for their origin (slave_run_triggers_for_rbr NO, not ENFORCE)"},
		{"refusal not skipped", fakeRepl{raw: func() accounts.Raw {
			r := guarded(accounts.Raw{Connections: []accounts.Connection{ok("b", &lag), ok("c_east", &lag)}})
			r.SkipErrors = "1032,1062"
			return r
		}()}, "a refused foreign account row would stop replication (slave_skip_errors 1032,1062 lacks 1644)"},
		{"no guard table", fakeRepl{raw: func() accounts.Raw {
			r := guarded(accounts.Raw{Connections: []accounts.Connection{ok("b", &lag), ok("c_east", &lag)}})
			r.ForeignWrites, r.ForeignWritesErr = nil, "Error 1146 (42S02): Table 'cairn.foreign_writes' doesn't exist"
			return r
		}()}, "no ownership guard (cairn.foreign_writes: Error 1146"},
	} {
		r := ProbeReplication(context.Background(), &Target{Site: "a", Replication: tc.reader, ReplicationPeers: []accounts.Peer{{Name: "b", Domain: 2}, {Name: "c-east", Domain: 3}}})
		f := r.FailedStep()
		switch {
		case tc.fail == "" && (!r.OK || len(r.Steps) != 4 || r.Facts["skippedRows"] != "2" || r.Facts["lagSeconds.b"] != "3" ||
			r.Facts["foreignWrites.b"] != "0" || r.Facts["foreignWrites.c-east"] != "4"):
			t.Errorf("%s: %+v", tc.name, r)
		case tc.fail != "" && (r.OK || f == nil || !strings.Contains(f.Detail, tc.fail)):
			t.Errorf("%s: ok %v, failed step %+v, want %q", tc.name, r.OK, f, tc.fail)
		case tc.fail != "" && tc.name != "unreachable" && f.ErrorClass != ClassReplication:
			t.Errorf("%s: class %q", tc.name, f.ErrorClass)
		}
	}
}
