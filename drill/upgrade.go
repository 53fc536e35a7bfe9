package drill

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/internal/fsutil"
	"github.com/cairn-pki/cairn/upgrade"
)

// upgradeFault rolls a release through the sites with `cairn upgrade
// apply` (the same code): a real Boulder release (step.to), or with
// step.broken a release whose rendered RA config sends the CA's gRPC
// calls to an address where nothing listens, so every finalize fails
// while every process starts and the directory answers. Restore ends a
// half-done upgrade (abandon) and rolls the sites the drill upgraded back
// to the release they ran, with the same gate.
type upgradeFault struct {
	// options are `cairn upgrade apply`'s for the infrastructure.
	options func(ctx context.Context) (upgrade.ApplyOptions, error)
	spec    *cluster.Spec
	st      Step
	state   string // the drill's own upgrade state file
	// event is told every phase; result is "done" or "rolled-back".
	event  func(upgrade.Event)
	result string
}

// Upgrade outcomes (pass.upgrade).
const (
	UpgradeDone       = "done"
	UpgradeRolledBack = "rolled-back"
)

func (f *upgradeFault) Describe() string {
	if f.st.Broken {
		return "roll out a broken release (RA → a CA address where nothing listens)"
	}
	if f.st.To != "" {
		return "upgrade every site to Boulder " + f.st.To
	}
	return "roll the current cairn.yaml through every site"
}

// applyOptions are the infrastructure's options with the drill's own
// state file and backups, its phases reported as events.
func (f *upgradeFault) applyOptions(ctx context.Context) (upgrade.ApplyOptions, error) {
	o, err := f.options(ctx)
	if err != nil {
		return o, err
	}
	o.StateFile = f.state
	o.Backups = filepath.Join(filepath.Dir(f.state), "drill-upgrade-backups")
	o.Event = f.event
	return o, nil
}

func (f *upgradeFault) Inject(ctx context.Context) error {
	o, err := f.applyOptions(ctx)
	if err != nil {
		return err
	}
	o.To, o.Canary, o.Gate = f.st.To, f.st.Canary.Duration, f.st.Gate
	if f.st.Broken {
		o.Break = breakRA
	}
	_, err = upgrade.Apply(ctx, o)
	var failed *upgrade.Failed
	switch {
	case err == nil:
		f.result = UpgradeDone
		return nil
	case errors.As(err, &failed):
		f.result = UpgradeRolledBack
		return nil
	}
	return err
}

// Restore abandons a half-done upgrade, then takes every site the drill
// changed back to the release and spec it ran (its backup's Boulder
// version; re-rendered, so a broken release is gone).
func (f *upgradeFault) Restore(ctx context.Context) error {
	st, err := upgrade.ReadState(f.state)
	if err != nil || st == nil {
		return err
	}
	o, err := f.applyOptions(ctx)
	if err != nil {
		return err
	}
	o.Event = nil
	if st.Finished.IsZero() {
		if _, err := upgrade.Abandon(ctx, o); err != nil {
			return err
		}
	}
	back := ""
	for _, name := range st.Order {
		ss := st.Sites[name]
		if ss.Phase == upgrade.PhaseDone && (ss.FromGeneration != ss.ToGeneration || f.st.Broken) {
			back = ss.FromBoulder
		}
	}
	if back != "" {
		o.StateFile = f.state + ".back"
		o.To = back
		if _, err := upgrade.Apply(ctx, o); err != nil {
			return fmt.Errorf("roll the sites back to Boulder %s: %w", back, err)
		}
	}
	os.Remove(f.state + ".back")
	return os.Remove(f.state)
}

// breakRA points the site's RA at a CA address where nothing listens
// (port 1 of the CA's own address, calls given up after 2 s): a rendered
// config that validates, starts and serves the directory, and fails every
// finalize.
func breakRA(_, dir string) error {
	path := filepath.Join(dir, "etc", "ra.json")
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var cfg map[string]any
	if err := json.Unmarshal(b, &cfg); err != nil {
		return err
	}
	ra, _ := cfg["RA"].(map[string]any)
	ca, _ := ra["CAService"].(map[string]any)
	addr, _ := ca["ServerAddress"].(string)
	// The CA's own host (a loopback address in the lab, the service
	// network's on a provisioned host), port 1: nothing listens there.
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return fmt.Errorf("breakRA: unexpected CA address %q in %s", addr, path)
	}
	ca["ServerAddress"] = net.JoinHostPort(host, "1")
	ca["Timeout"] = "2s" // fail fast: the drill is about the gate, not the timeout
	out, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(path, out, 0o644)
}
