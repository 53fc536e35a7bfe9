package healthcheck

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/cairn-pki/cairn/accounts"
	"github.com/cairn-pki/cairn/site"
)

// MaxReplicationLagSeconds: a connection further behind fails the probe.
const MaxReplicationLagSeconds = 300

// ProbeReplication reads the site's account replication (the monitor user
// over TLS): one step per peer it must pull from, failing when that
// connection is missing, has lost its filter, is not running, or lags more
// than MaxReplicationLagSeconds. The kind never votes on failover: a site
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
	byName := map[string]accounts.Connection{}
	for _, c := range raw.Connections {
		byName[strings.ToLower(c.Name)] = c
	}
	for _, peer := range t.ReplicationPeers {
		c, ok := byName[site.ConnectionName(peer)]
		var err error
		switch {
		case !ok:
			err = probeError{ClassReplication, "no replication connection from " + peer}
		case c.DoTable != site.ReplicatedTable:
			err = probeError{ClassReplication, fmt.Sprintf("connection from %s replicates %q, not only %s", peer, c.DoTable, site.ReplicatedTable)}
		case c.IORunning != "Yes" || c.SQLRunning != "Yes":
			why := strings.TrimSpace(c.LastIOError + " " + c.LastSQLError)
			if why == "" {
				why = "IO " + c.IORunning + ", SQL " + c.SQLRunning
			}
			err = probeError{ClassReplication, "replication from " + peer + " not running: " + why}
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
