package healthcheck

import (
	"context"
	"fmt"
	"strconv"
)

// MaxReplicationLagSeconds: a connection further behind fails the probe.
const MaxReplicationLagSeconds = 300

// ProbeReplication reads the site's account replication (the monitor user
// over TLS): one step per peer it must pull from, failing when that
// connection is missing, has lost its filter, is not running, or lags more
// than MaxReplicationLagSeconds (accounts.Connection.Problem judges the
// rest, as cairn accounts status does). The kind never votes on failover: a site
// whose replication is broken still issues (docs/accounts.md).
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
	for _, peer := range t.ReplicationPeers {
		c, ok := raw.Connection(peer)
		var err error
		switch {
		case !ok:
			err = probeError{ClassReplication, "no replication connection from " + peer}
		case c.Problem(peer) != "":
			err = probeError{ClassReplication, c.Problem(peer)}
		case c.SecondsBehind != nil && *c.SecondsBehind > MaxReplicationLagSeconds:
			err = probeError{ClassReplication, fmt.Sprintf("replication from %s is %d s behind", peer, *c.SecondsBehind)}
		}
		if ok && c.SecondsBehind != nil {
			r.fact("lagSeconds."+peer, strconv.FormatInt(*c.SecondsBehind, 10))
		}
		r.step("from "+peer, err)
	}
	return r.done()
}
