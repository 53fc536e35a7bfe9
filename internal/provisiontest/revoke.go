package provisiontest

import (
	"encoding/json"
	"net"
	"os/exec"
	"testing"
	"time"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/site"
)

// RevokeThroughTheController revokes cert for keyCompromise from the
// operator's vantage (the switch namespace) and waits until the
// controller on the DNS host has revoked it at its site and blocked its
// key at every one of the spec's sites through their agents: no site host
// is asked by the operator.
func RevokeThroughTheController(t *testing.T, cairn string, spec *cluster.Spec, switchNetns, cert string) {
	t.Helper()
	op := func(args ...string) ([]byte, error) {
		return operator(cairn, spec.File, switchNetns, args...).CombinedOutput()
	}
	if out, err := op("revoke", "--cert", cert, "--reason", "keyCompromise"); err != nil {
		t.Errorf("cairn revoke from the operator's vantage: %v\n%s", err, out)
		return
	}
	start := time.Now()
	for {
		out, err := op("-o", "json", "revoke", "status")
		var es []struct {
			Site, State, LastError string
			AppliedAt              time.Time
			KeyBlocked             map[string]time.Time
		}
		if err == nil && json.Unmarshal(out, &es) == nil && len(es) == 1 && !es[0].AppliedAt.IsZero() && len(es[0].KeyBlocked) == len(spec.Sites) {
			t.Logf("revoked at site %s and key blocked at all %d sites %.1fs after cairn revoke", es[0].Site, len(spec.Sites), time.Since(start).Seconds())
			return
		}
		if time.Since(start) > time.Minute {
			t.Errorf("revocation through the controller not applied after a minute: %s (%v)", out, err)
			return
		}
		time.Sleep(time.Second)
	}
}

// AgentRefusesTheOperator: a site agent's port (its way in: backups,
// revocations, key blocks) answers the controller's host alone; from the
// operator's namespace a connection to it is dropped, at every site.
func AgentRefusesTheOperator(t *testing.T, spec *cluster.Spec, switchNetns string) {
	t.Helper()
	for _, s := range spec.Sites {
		addr, err := site.AgentAddr(spec, s.Name)
		if err != nil {
			t.Fatal(err)
		}
		host, port, _ := net.SplitHostPort(addr)
		if out, err := exec.Command("ip", "netns", "exec", switchNetns, "timeout", "3", "bash", "-c", "exec 3<>/dev/tcp/"+host+"/"+port).CombinedOutput(); err == nil {
			t.Errorf("site %s's agent port %s took a connection from the operator's namespace (only the controller's host may): %s", s.Name, addr, out)
		}
	}
}
