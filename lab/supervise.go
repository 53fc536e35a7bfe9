package lab

import (
	"context"
	"path/filepath"
	"time"

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

func (l *Lab) supervisorProc() proc {
	return proc{root: l.clusterDir(), Process: site.Process{Name: "supervisor", Program: "cairn",
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
		var procs []proc
		if cb, err := site.ReadClusterBundle(l.clusterDir()); err == nil {
			for _, p := range cb.All() {
				procs = append(procs, proc{Process: p, root: cb.Root})
			}
		}
		for _, b := range bundles {
			for _, p := range b.Processes {
				procs = append(procs, newProc(p, b.Root))
			}
		}
		restartExited(procs, resolve, l.logf)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
	}
}

// restartExited starts again every process of procs that has exited.
func restartExited(procs []proc, resolve func(string) (string, error), logf func(string, ...any)) {
	for _, p := range procs {
		if _, up := p.running(); !up {
			if pid, err := p.start(resolve); err != nil {
				logf("supervisor: restart %s: %v", p.Name, err)
			} else {
				logf("supervisor: restarted %s/%s (pid %d)", filepath.Base(p.root), p.Name, pid)
			}
		}
	}
}
