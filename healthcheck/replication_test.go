package healthcheck

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/cairn-pki/cairn/accounts"
)

type fakeRepl struct {
	raw accounts.Raw
	err error
}

func (f fakeRepl) Read(context.Context, string) (accounts.Raw, error) { return f.raw, f.err }

// One step per peer; each way a connection breaks fails its own step with
// the replication class, and lag and skipped rows become facts.
func TestProbeReplication(t *testing.T) {
	lag := int64(3)
	far := int64(MaxReplicationLagSeconds + 1)
	ok := func(name string, behind *int64) accounts.Connection {
		return accounts.Connection{Name: name, IORunning: "Yes", SQLRunning: "Yes", DoTable: "boulder_sa.registrations", UsingGTID: "Slave_Pos", SecondsBehind: behind}
	}
	for _, tc := range []struct {
		name   string
		reader fakeRepl
		fail   string // the failed step's detail, "" for success
	}{
		{"healthy", fakeRepl{raw: accounts.Raw{SkippedErrors: 2, Connections: []accounts.Connection{ok("b", &lag), ok("c_east", &lag)}}}, ""},
		{"unreachable", fakeRepl{err: errors.New("dial tcp: connection refused")}, "connection refused"},
		{"missing", fakeRepl{raw: accounts.Raw{Connections: []accounts.Connection{ok("b", &lag)}}}, "no replication connection from c-east"},
		{"stopped", fakeRepl{raw: accounts.Raw{Connections: []accounts.Connection{ok("b", &lag),
			{Name: "c_east", IORunning: "Connecting", SQLRunning: "Yes", DoTable: "boulder_sa.registrations", UsingGTID: "Slave_Pos", LastIOError: "error connecting to master"}}}},
			"replication from c-east not running: error connecting to master"},
		{"unfiltered", fakeRepl{raw: accounts.Raw{Connections: []accounts.Connection{ok("b", &lag), {Name: "c_east", IORunning: "Yes", SQLRunning: "Yes"}}}}, `replicates ""`},
		{"lagging", fakeRepl{raw: accounts.Raw{Connections: []accounts.Connection{ok("b", &far), ok("c_east", &lag)}}}, "replication from b is 301 s behind"},
	} {
		r := ProbeReplication(context.Background(), &Target{Site: "a", Replication: tc.reader, ReplicationPeers: []string{"b", "c-east"}})
		f := r.FailedStep()
		switch {
		case tc.fail == "" && (!r.OK || len(r.Steps) != 3 || r.Facts["skippedRows"] != "2" || r.Facts["lagSeconds.b"] != "3"):
			t.Errorf("%s: %+v", tc.name, r)
		case tc.fail != "" && (r.OK || f == nil || !strings.Contains(f.Detail, tc.fail)):
			t.Errorf("%s: ok %v, failed step %+v, want %q", tc.name, r.OK, f, tc.fail)
		case tc.fail != "" && tc.name != "unreachable" && f.ErrorClass != ClassReplication:
			t.Errorf("%s: class %q", tc.name, f.ErrorClass)
		}
	}
}
