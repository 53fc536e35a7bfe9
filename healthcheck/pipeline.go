package healthcheck

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairn-pki/cairn/cluster"
)

// Pipeline probes a spec's sites on its schedule and sends every result
// to the metrics, the history (which prunes itself) and then to Then:
// what `cairn probe --watch` and the failover controller both run.
type Pipeline struct {
	Targets  []*Target
	Schedule Schedule
	Metrics  *Metrics
	History  *History
	Log      *slog.Logger
	// Then receives every result after metrics and history (the
	// controller, a printer); it is called from several goroutines.
	Then func(Result)

	once  sync.Once
	sched *Scheduler
}

// NewPipeline builds the spec's targets and schedule, registers the probe
// metrics on reg and opens the history at historyPath (kept retention).
func NewPipeline(spec *cluster.Spec, reg prometheus.Registerer, historyPath string, retention time.Duration, log *slog.Logger) (*Pipeline, error) {
	targets, err := SiteTargets(spec)
	if err != nil {
		return nil, err
	}
	hist, err := OpenHistory(historyPath, retention)
	if err != nil {
		return nil, err
	}
	return &Pipeline{Targets: targets, Schedule: DefaultSchedule(spec), Metrics: NewMetrics(reg), History: hist, Log: log}, nil
}

// Sink takes one result (from the scheduler or an extra probe).
func (p *Pipeline) Sink(r Result) {
	if p.Metrics != nil {
		p.Metrics.Observe(r)
	}
	if p.History != nil {
		if err := p.History.Record(context.Background(), r); err != nil && p.Log != nil {
			p.Log.Warn("probe history", "err", err)
		}
	}
	if p.Then != nil {
		p.Then(r)
	}
}

// Target returns the site's target, or nil.
func (p *Pipeline) Target(site string) *Target {
	for _, t := range p.Targets {
		if t.Site == site {
			return t
		}
	}
	return nil
}

// Run probes until ctx ends.
func (p *Pipeline) Run(ctx context.Context) error {
	return p.scheduler().Run(ctx)
}

// Recheck runs kind at site again within d (Scheduler.Recheck): a
// confirmation probe, recorded like every other result.
func (p *Pipeline) Recheck(site, kind string, d time.Duration) bool {
	return p.scheduler().Recheck(site, kind, d)
}

func (p *Pipeline) scheduler() *Scheduler {
	p.once.Do(func() { p.sched = &Scheduler{Targets: p.Targets, Schedule: p.Schedule, Sink: p.Sink} })
	return p.sched
}

// Close closes the history.
func (p *Pipeline) Close() error {
	if p.History == nil {
		return nil
	}
	return p.History.Close()
}
