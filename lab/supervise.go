package lab

import (
	"context"
	"time"

	"github.com/cairn-pki/cairn/hostrun"
	"github.com/cairn-pki/cairn/internal/boulderbin"
	"github.com/cairn-pki/cairn/site"
)

// The lab does not restart crashed processes by default: drills need real
// crashes. With `lab up --restart` a supervisor process (this loop, run as
// `cairn lab supervise`) restarts any lab process that has exited.

func (l *Lab) specFile() string {
	if l.Spec.File != "" {
		return l.Spec.File
	}
	return l.Spec.Path("cairn.yaml")
}

func (l *Lab) supervisorProc() hostrun.Proc {
	return hostrun.Proc{Root: l.clusterDir(), Process: site.Process{Name: "supervisor", Program: "cairn",
		Args: []string{"lab", "supervise", "-f", l.specFile()}}}
}

// Supervise restarts exited lab processes every interval until ctx ends.
func (l *Lab) Supervise(ctx context.Context, interval time.Duration) error {
	bins, err := boulderbin.Ensure(ctx, l.Log, "boulder", "ct-test-srv", "s3-test-srv")
	if err != nil {
		return err
	}
	resolve := l.resolver(bins)
	for {
		bundles, err := l.bundles()
		if err != nil {
			return err
		}
		if cb, err := site.ReadClusterBundle(l.clusterDir()); err == nil {
			var procs []hostrun.Proc
			for _, p := range cb.All() {
				procs = append(procs, hostrun.Proc{Process: p, Root: cb.Root})
			}
			hostrun.RestartExited(procs, resolve, l.logf)
		}
		for _, b := range bundles {
			var procs []hostrun.Proc
			for _, p := range b.Processes {
				procs = append(procs, hostrun.NewProc(p, b.Root))
			}
			hostrun.RestartExited(procs, l.resolverFor(ctx, b, resolve), l.logf)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
	}
}
