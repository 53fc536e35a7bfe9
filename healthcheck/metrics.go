package healthcheck

import (
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics exports probe results (client_golang, base units, cairn_ prefix).
type Metrics struct {
	success       *prometheus.GaugeVec
	duration      *prometheus.HistogramVec
	stepSuccess   *prometheus.GaugeVec
	stepDuration  *prometheus.HistogramVec
	runs          *prometheus.CounterVec
	confirmations *prometheus.CounterVec
	problems      *prometheus.CounterVec
	certExpiry    *prometheus.GaugeVec
	crlNextUpdate *prometheus.GaugeVec
	lastRun       *prometheus.GaugeVec
	replLag       *prometheus.GaugeVec
	replSkipped   *prometheus.GaugeVec
	foreign       *prometheus.CounterVec
	release       *prometheus.GaugeVec
	mu            sync.Mutex
	releases      map[string][2]string  // site -> its last exported release
	foreignSeen   map[[2]string]float64 // (site, peer) -> the count exported
}

// Issuance takes 0.1–0.5 s on a healthy site; timeouts are seconds.
var probeBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// NewMetrics registers the probe metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		success: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "cairn_probe_success",
			Help: "1 if the last probe of this kind against this site succeeded, else 0."}, []string{"site", "kind"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "cairn_probe_duration_seconds",
			Help: "Duration of whole probes.", Buckets: probeBuckets}, []string{"site", "kind"}),
		stepSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "cairn_probe_step_success",
			Help: "1 if the step passed in the last probe, else 0."}, []string{"site", "kind", "step"}),
		stepDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "cairn_probe_step_duration_seconds",
			Help: "Duration of each probe step.", Buckets: probeBuckets}, []string{"site", "kind", "step"}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cairn_probe_runs_total",
			Help: "Probes run, by result (ok or the error class of the first failed step)."}, []string{"site", "kind", "result"}),
		confirmations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cairn_probe_confirmations_total",
			Help: "Probes run early to confirm a failure (the controller's recheck after a deep failure); counted in cairn_probe_runs_total too."}, []string{"site", "kind", "result"}),
		problems: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cairn_probe_acme_problems_total",
			Help: "ACME problem documents seen by probes, by problem type."}, []string{"site", "kind", "type"}),
		certExpiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "cairn_certificate_expiry_timestamp_seconds",
			Help: "notAfter of the site's HTTPS certificate (tls probe), as a Unix time."}, []string{"site"}),
		crlNextUpdate: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "cairn_crl_next_update_timestamp_seconds",
			Help: "Per issuer of the site: the earliest nextUpdate over its CRL shards, taking for each shard the latest CRL any front serves (its own or a copy), as a Unix time. Relying parties that check CRLs reject the issuer's certificates after it."}, []string{"site", "issuer"}),
		lastRun: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "cairn_probe_last_run_timestamp_seconds",
			Help: "When the last probe of this kind started, as a Unix time."}, []string{"site", "kind"}),
	}
	m.replLag = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "cairn_accounts_replication_lag_seconds",
		Help: "Seconds_Behind_Master of the site's account replication connection from peer (replication probe)."}, []string{"site", "peer"})
	m.replSkipped = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "cairn_accounts_replication_skipped_rows",
		Help: "Replicated rows the site skipped since its MariaDB started (duplicate key or missing row: conflicts); alert on increases."}, []string{"site"})
	m.foreign = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cairn_accounts_foreign_writes_total",
		Help: "Replicated account rows the site refused from peer because their ID is not in the peer's range (a compromised or misused peer; replication probe, the site's own count)."}, []string{"site", "peer"})
	m.foreignSeen = map[[2]string]float64{}
	m.release = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "cairn_site_release",
		Help: "1 for the Boulder version and bundle generation the site's ACME front says it runs."}, []string{"site", "boulder_version", "bundle"})
	m.releases = map[string][2]string{}
	reg.MustRegister(m.success, m.duration, m.stepSuccess, m.stepDuration, m.runs, m.confirmations, m.problems, m.certExpiry, m.crlNextUpdate, m.lastRun,
		m.replLag, m.replSkipped, m.foreign, m.release)
	return m
}

// Observe records one result.
func (m *Metrics) Observe(r Result) {
	ok := 0.0
	result := "ok"
	if r.OK {
		ok = 1
	} else if f := r.FailedStep(); f != nil {
		result = f.ErrorClass
	} else {
		result = ClassInternal
	}
	m.success.WithLabelValues(r.Site, r.Kind).Set(ok)
	m.duration.WithLabelValues(r.Site, r.Kind).Observe(r.Elapsed.Seconds())
	m.runs.WithLabelValues(r.Site, r.Kind, result).Inc()
	if r.Confirmation {
		m.confirmations.WithLabelValues(r.Site, r.Kind, result).Inc()
	}
	m.lastRun.WithLabelValues(r.Site, r.Kind).Set(float64(r.Started.UnixNano()) / 1e9)
	for _, s := range r.Steps {
		v := 0.0
		if s.OK {
			v = 1
		}
		m.stepSuccess.WithLabelValues(r.Site, r.Kind, s.Name).Set(v)
		m.stepDuration.WithLabelValues(r.Site, r.Kind, s.Name).Observe(s.Duration.Seconds())
		if s.ACMEProblemType != "" {
			m.problems.WithLabelValues(r.Site, r.Kind, ProblemType(s.ACMEProblemType)).Inc()
		}
	}
	if v, b := r.Facts[FactBoulderVersion], r.Facts[FactBundle]; v != "" || b != "" {
		m.observeRelease(r.Site, [2]string{v, b})
	}
	if r.Kind == KindReplication {
		for k, v := range r.Facts {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				continue
			}
			if peer, ok := strings.CutPrefix(k, FactLagSeconds); ok {
				m.replLag.WithLabelValues(r.Site, peer).Set(n)
			} else if peer, ok := strings.CutPrefix(k, FactForeignWrites); ok {
				m.observeForeign(r.Site, peer, n)
			} else if k == "skippedRows" {
				m.replSkipped.WithLabelValues(r.Site).Set(n)
			}
		}
	}
	if t, err := time.Parse(time.RFC3339, r.Facts["notAfter"]); err == nil && r.Kind == KindTLS {
		m.certExpiry.WithLabelValues(r.Site).Set(float64(t.Unix()))
	}
	if r.Kind == KindCRL {
		for k, v := range r.Facts {
			if issuer, ok := strings.CutPrefix(k, NextUpdateFact); ok {
				if t, err := time.Parse(time.RFC3339, v); err == nil {
					m.crlNextUpdate.WithLabelValues(r.Site, issuer).Set(float64(t.Unix()))
				}
			}
		}
	}
}

// observeForeign exports the site's count of rows refused from peer. The
// count lives in the site's database, so it survives restarts of both
// ends; the counter follows it (and starts over if the count went down:
// its table was emptied).
func (m *Metrics) observeForeign(site, peer string, n float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := [2]string{site, peer}
	last, seen := m.foreignSeen[k]
	if seen && n < last {
		m.foreign.DeleteLabelValues(site, peer)
		last = 0
	}
	m.foreign.WithLabelValues(site, peer).Add(n - last)
	m.foreignSeen[k] = n
}

// observeRelease exports the site's release, dropping the one it replaced.
func (m *Metrics) observeRelease(site string, rel [2]string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if old, ok := m.releases[site]; ok && old != rel {
		m.release.DeleteLabelValues(site, old[0], old[1])
	}
	m.releases[site] = rel
	m.release.WithLabelValues(site, rel[0], rel[1]).Set(1)
}
