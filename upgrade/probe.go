package upgrade

import (
	"context"
	"fmt"
	"time"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/healthcheck"
)

// minDeadline keeps a kind probed every 2 s from failing the gate on a
// busy host for taking more than 1 s.
const minDeadline = 5 * time.Second

// GateKinds are the probes of one gate round: the directory (which names
// the release the site runs), then the deep ones the controller needs
// before it calls a site healthy.
var GateKinds = []string{healthcheck.KindDirectory, healthcheck.KindAccount, healthcheck.KindIssuance}

// SiteProber probes each site directly, as the controller does, with the
// spec's probe accounts and the controller's deadlines (half of each
// kind's interval, at least minDeadline; timeout when the kind has none);
// a round stops at its first failed probe.
func SiteProber(spec *cluster.Spec, timeout time.Duration) (Prober, error) {
	targets, err := healthcheck.SiteTargets(spec)
	if err != nil {
		return nil, err
	}
	byName := map[string]*healthcheck.Target{}
	for _, t := range targets {
		// The gate checks the bundle the site names, which covers the
		// profiles it was rendered with; comparing them with the spec
		// would fail a site rolled back to the previous spec's bundle.
		t.Profiles = nil
		byName[t.Site] = t
	}
	return func(ctx context.Context, site string) []healthcheck.Result {
		t, ok := byName[site]
		if !ok {
			return []healthcheck.Result{{Site: site, Kind: "target", Steps: []healthcheck.Step{{Name: "target", Detail: fmt.Sprintf("no site %q", site)}}}}
		}
		var out []healthcheck.Result
		for _, k := range GateKinds {
			kind, _ := healthcheck.KindOf(k)
			deadline := timeout
			if every := kind.Every(spec); every > 0 {
				deadline = max(every/2, minDeadline)
			}
			fn := kind.Probe
			pctx, cancel := context.WithTimeout(ctx, deadline)
			r := fn(pctx, t)
			cancel()
			out = append(out, r)
			if !r.OK {
				break
			}
		}
		return out
	}, nil
}
