package healthcheck

import (
	"context"
	"fmt"
	"strconv"
)

// MaxReplicationLagSeconds: a connection further behind fails the probe.
const MaxReplicationLagSeconds = 300

// Facts of the replication probe, each followed by the peer's name: the
// connection's lag, and the account rows from that peer the site has
// refused, ever (their ID is not in the peer's range).
const (
	FactLagSeconds    = "lagSeconds."
	FactForeignWrites = "foreignWrites."
)

// ProbeReplication reads the site's account replication (the monitor user
// over TLS): a step for the ownership guard, failing when the site would
// apply a peer's rows outside the peer's range, then one step per peer it
// must pull from, failing when that connection is missing, has lost a
// filter, is not running, or lags more than MaxReplicationLagSeconds
// (accounts.Connection.Problem judges the rest, as cairn accounts status
// does). The rows refused from each peer become facts. The kind never
// votes on failover: a site whose replication is broken still issues
// (docs/accounts.md).
func ProbeReplication(ctx context.Context, t *Target) Result {
	r := newRecorder(t.Site, KindReplication)
	if t.Replication == nil {
		r.step("configure", probeError{ClassInternal, "no account replication reader for this site"})
		return r.done()
	}
	raw, err := t.Replication.Read(ctx, t.Site)
	if r.step("read", err) != nil {
		return r.done()
	}
	r.fact("skippedRows", strconv.FormatInt(raw.SkippedErrors, 10))
	var guard error
	if g := raw.GuardProblem(); g != "" {
		guard = probeError{ClassReplication, g}
	}
	r.step("ownership guard", guard)
	for _, peer := range t.ReplicationPeers {
		c, ok := raw.Connection(peer.Name)
		var err error
		switch {
		case !ok:
			err = probeError{ClassReplication, "no replication connection from " + peer.Name}
		case c.Problem(peer.Name, peer.Domain) != "":
			err = probeError{ClassReplication, c.Problem(peer.Name, peer.Domain)}
		case c.SecondsBehind != nil && *c.SecondsBehind > MaxReplicationLagSeconds:
			err = probeError{ClassReplication, fmt.Sprintf("replication from %s is %d s behind", peer.Name, *c.SecondsBehind)}
		}
		if ok && c.SecondsBehind != nil {
			r.fact(FactLagSeconds+peer.Name, strconv.FormatInt(*c.SecondsBehind, 10))
		}
		if raw.ForeignWrites != nil {
			r.fact(FactForeignWrites+peer.Name, strconv.FormatInt(raw.ForeignWrites[peer.Domain].Count, 10))
		}
		r.step("from "+peer.Name, err)
	}
	return r.done()
}
