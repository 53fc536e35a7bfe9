package upgrade

import (
	"context"
	"fmt"
	"time"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/healthcheck"
)

// GateKinds are the probes of one gate round: the directory (which names
// the release the site runs), then the deep ones the controller needs
// before it calls a site healthy.
var GateKinds = []string{healthcheck.KindDirectory, healthcheck.KindAccount, healthcheck.KindIssuance}

// SiteProber probes each site directly, as the controller does, with the
// spec's probe accounts; a round stops at its first failed probe.
func SiteProber(spec *cluster.Spec, timeout time.Duration) (Prober, error) {
	targets, err := healthcheck.SiteTargets(spec)
	if err != nil {
		return nil, err
	}
	byName := map[string]*healthcheck.Target{}
	for _, t := range targets {
		byName[t.Site] = t
	}
	return func(ctx context.Context, site string) []healthcheck.Result {
		t, ok := byName[site]
		if !ok {
			return []healthcheck.Result{{Site: site, Kind: "target", Steps: []healthcheck.Step{{Name: "target", Detail: fmt.Sprintf("no site %q", site)}}}}
		}
		var out []healthcheck.Result
		for _, k := range GateKinds {
			fn, _ := healthcheck.KindFunc(k)
			pctx, cancel := context.WithTimeout(ctx, timeout)
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
