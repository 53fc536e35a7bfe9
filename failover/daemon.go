package failover

import (
	"context"
	"errors"
	"fmt"
	"github.com/cairn-pki/cairn/internal/connlimit"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/cairn-pki/cairn/acmedns"
	"github.com/cairn-pki/cairn/backup"
	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/healthcheck"
	"github.com/cairn-pki/cairn/internal/fsutil"
	"github.com/cairn-pki/cairn/revocation"
)

// HistoryRetention is how long the controller keeps probe results.
const HistoryRetention = 30 * 24 * time.Hour

// Daemon is `cairn failover run`: etcd (embedded or external), the DNS
// provider, the probe pipeline, the controller and its HTTP server.
type Daemon struct {
	Spec        *cluster.Spec
	ID          string
	HistoryPath string
	Log         *slog.Logger
}

// FenceKey is the etcd key where a provider without conditional writes
// (PowerDNS) fences its writes of the ACME name.
func FenceKey(spec *cluster.Spec) string { return spec.Failover.Etcd.Prefix + "dns-fence" }

// Run serves until ctx ends.
func (d *Daemon) Run(ctx context.Context) error {
	spec, log := d.Spec, d.Log
	token, err := fsutil.EnsureSecret(spec.Path(spec.Failover.AdminTokenFile), 24)
	if err != nil {
		return fmt.Errorf("failover.adminTokenFile: %w", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	etcd, err := OpenEtcd(ctx, spec, d.ID, log)
	if err != nil {
		return err
	}
	defer etcd.Close()
	dns, err := acmedns.FromSpec(spec, acmedns.EtcdFence{Client: etcd.Client, Key: FenceKey(spec)})
	if err != nil {
		return err
	}
	pipe, err := healthcheck.NewPipeline(spec, reg, d.HistoryPath, HistoryRetention, log)
	if err != nil {
		return err
	}
	defer pipe.Close()
	coord := &Coordinator{Client: etcd.Client, Prefix: spec.Failover.Etcd.Prefix, ID: d.ID, API: "http://" + spec.Failover.Listen,
		TTL: spec.Failover.Etcd.SessionTTL.Duration, Log: log}
	c := &Controller{Spec: spec, ID: d.ID, DNS: dns, Policy: PolicyFromSpec(spec), Log: log, Coord: coord, Confirm: confirmer(pipe),
		Recheck: pipe.Recheck, Revocations: replayer(spec, etcd, pipe, log), Board: healthcheck.NewBoard(pipe.History, reg)}
	if spec.Failover.Resume == cluster.ResumeHistory {
		c.History, c.ResumeWithin = pipe.History.Results, spec.Failover.ResumeWithin.Duration
	}
	if err := c.Init(ctx, reg); err != nil {
		return err
	}
	pipe.Then = c.Sink
	// Anyone who reaches failover.listen gets the status: capped and
	// deadlined like every operator listener (connlimit.ServeHTTP).
	srv, err := connlimit.ServeHTTP(spec.Failover.Listen, "failover.listen", c.Handler(reg, token), log)
	if err != nil {
		return err
	}
	defer srv.Close()
	log.Info("status page and API", "url", "http://"+spec.Failover.Listen+"/", "dns", dns.String())
	go pipe.Run(ctx)
	go c.Board.Run(ctx, 15*time.Second)
	pending := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "cairn_revocations_pending",
		Help: "Revocation requests in the controller's journal not yet seen in the issuing site's published CRL, by site."}, []string{"site"})
	refused := prometheus.NewGauge(prometheus.GaugeOpts{Name: "cairn_revocation_journal_refused_entries",
		Help: "Entries in the revocation journal the controller refuses to act on (a serial of another site, an unknown reason or site, a bad key hash): someone else wrote the controllers' etcd."})
	reg.MustRegister(pending, refused)
	go replay(ctx, c.Revocations, spec.SiteNames(), pending, refused, log)
	if !spec.Backup.Off {
		b := backups(spec, pipe, c, log)
		b.Register(reg)
		go b.Run(ctx)
	}
	return c.Run(ctx)
}

// confirmer checks a move's target right before DNS is written: one
// account probe (directory, nonce, account lookup: tens of milliseconds),
// whose result goes through the pipeline like any other.
func confirmer(pipe *healthcheck.Pipeline) func(context.Context, string) error {
	return func(ctx context.Context, site string) error {
		t := pipe.Target(site)
		if t == nil {
			return fmt.Errorf("no probe target for site %s", site)
		}
		r := healthcheck.ProbeAccount(ctx, t)
		pipe.Sink(r)
		if r.OK {
			return nil
		}
		if f := r.FailedStep(); f != nil {
			return fmt.Errorf("account probe failed at %s: %s", f.Name, f.ErrorClass)
		}
		return errors.New("account probe failed")
	}
}

// replayer is the revocation journal in the controllers' etcd and what
// carries each entry to its site's CRL: the site's agent revokes, blocks
// keys and publishes the CRLs at once (revocation.Agents, with the
// controller's credential for each site).
func replayer(spec *cluster.Spec, etcd *Etcd, pipe *healthcheck.Pipeline, log *slog.Logger) *revocation.Replayer {
	agents := revocation.Agents{Spec: spec}
	return &revocation.Replayer{
		Journal:  revocation.EtcdJournal{Client: etcd.Client, Prefix: spec.Failover.Etcd.Prefix},
		Sites:    spec.SiteNames(),
		BlockKey: agents.BlockKey,
		Revoke:   agents.Revoke,
		Route:    func(serial string) (string, error) { return revocation.Route(spec, serial) },
		InCRL: func(ctx context.Context, name, serial string) (bool, error) {
			t := pipe.Target(name)
			if t == nil {
				return false, fmt.Errorf("no probe target for site %s", name)
			}
			return healthcheck.SerialInCRL(ctx, t, serial)
		},
		Publish: func(ctx context.Context, name string) error {
			log.Info("publishing CRLs after a deferred revocation", "site", name)
			return agents.PublishCRLs(ctx, name)
		},
	}
}

// backups is the off-site copy the leading controller keeps: every
// site's database through its agent, every site's CRLs from its front.
func backups(spec *cluster.Spec, pipe *healthcheck.Pipeline, c *Controller, log *slog.Logger) *backup.Scheduler {
	agents := revocation.Agents{Spec: spec}
	return &backup.Scheduler{
		Store: backup.Store{Dir: spec.Path(spec.Backup.Dir)}, Sites: spec.SiteNames(),
		Every: spec.Backup.Every.Duration, Keep: spec.Backup.Keep, CRLEvery: spec.Failover.Probes.CRL.Duration,
		Backup: agents.Backup, Leading: c.Coord.Leading, Log: log,
		CRLs: func(ctx context.Context, name string) ([]healthcheck.PublishedCRL, error) {
			t := pipe.Target(name)
			if t == nil {
				return nil, fmt.Errorf("no probe target for site %s", name)
			}
			return healthcheck.SiteCRLs(ctx, t)
		},
	}
}

// replay steps the revocation journal until ctx ends, exporting what is
// pending per site and how many entries it refuses.
func replay(ctx context.Context, r *revocation.Replayer, sites []string, pending *prometheus.GaugeVec, refused prometheus.Gauge, log *slog.Logger) {
	was := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Second):
		}
		sctx, cancel := context.WithTimeout(ctx, time.Minute)
		if err := r.Step(sctx); err != nil {
			log.Warn("revocation journal", "err", err)
		}
		cancel()
		n := r.Pending()
		for _, s := range sites {
			pending.WithLabelValues(s).Set(float64(n[s]))
		}
		if now := r.Refused(); now != was {
			refused.Set(float64(now))
			if now > was {
				log.Error("revocation journal: entries the controller did not write, refused (cairn revoke status shows them)", "refused", now)
			}
			was = now
		}
	}
}
