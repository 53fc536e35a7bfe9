package failover

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/cairn-pki/cairn/acmedns"
	"github.com/cairn-pki/cairn/cluster"
	"github.com/cairn-pki/cairn/healthcheck"
	"github.com/cairn-pki/cairn/internal/fsutil"
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
	c := &Controller{Spec: spec, ID: d.ID, DNS: dns, Policy: PolicyFromSpec(spec), Log: log, Coord: coord, Confirm: confirmer(pipe)}
	if spec.Failover.Resume == cluster.ResumeHistory {
		c.History, c.ResumeWithin = pipe.History.Results, spec.Failover.ResumeWithin.Duration
	}
	if err := c.Init(ctx, reg); err != nil {
		return err
	}
	pipe.Then = c.Sink
	ln, err := net.Listen("tcp", spec.Failover.Listen)
	if err != nil {
		return fmt.Errorf("failover.listen %s: %w", spec.Failover.Listen, err)
	}
	srv := &http.Server{Handler: c.Handler(reg, token), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	log.Info("status page and API", "url", "http://"+spec.Failover.Listen+"/", "dns", dns.String())
	go pipe.Run(ctx)
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
