package backup

import (
	"context"
	"io"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairn-pki/cairn/healthcheck"
)

// Scheduler is the leading controller's part: every site's database
// backed up every Every (Keep kept), and every site's newest CRLs
// archived every CRLEvery.
type Scheduler struct {
	Store    Store
	Sites    []string
	Every    time.Duration
	Keep     int
	CRLEvery time.Duration
	// Backup writes a backup of site to w (revocation.Agents.Backup).
	Backup func(ctx context.Context, site string, w io.Writer) error
	// CRLs fetches site's published CRLs (healthcheck.SiteCRLs); it may
	// return some with an error for the others.
	CRLs func(ctx context.Context, site string) ([]healthcheck.PublishedCRL, error)
	// Leading: only the leading controller backs up (nil: always).
	Leading func() bool
	Log     *slog.Logger
	// Now is the clock (tests).
	Now func() time.Time

	last, tried map[string]time.Time
	fails       map[string]int // consecutive failures
	m           *metrics
}

type metrics struct {
	lastOK, size, seconds, crlOK *prometheus.GaugeVec
	failures, crlFailures        *prometheus.CounterVec
}

// Register adds the scheduler's metrics to reg.
func (s *Scheduler) Register(reg prometheus.Registerer) {
	g := func(name, help string) *prometheus.GaugeVec {
		v := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, []string{"site"})
		reg.MustRegister(v)
		return v
	}
	c := func(name, help string) *prometheus.CounterVec {
		v := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{"site"})
		reg.MustRegister(v)
		return v
	}
	s.m = &metrics{
		lastOK:      g("cairn_backup_last_success_timestamp_seconds", "When the newest whole backup of the site's database in the controller's store was taken (Unix time; 0: none)."),
		size:        g("cairn_backup_last_size_bytes", "Size of the newest backup of the site's database."),
		seconds:     g("cairn_backup_last_duration_seconds", "How long taking the newest backup of the site's database took."),
		crlOK:       g("cairn_crl_archive_last_success_timestamp_seconds", "When the controller last archived every CRL shard of the site (Unix time; 0: never)."),
		failures:    c("cairn_backup_failures_total", "Backups of the site's database that failed."),
		crlFailures: c("cairn_crl_archive_failures_total", "Rounds in which some CRL shard of the site could not be archived."),
	}
}

func (s *Scheduler) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// init reads what the store already holds, so a restarted controller
// does not back up again at once.
func (s *Scheduler) init() {
	s.last, s.tried, s.fails = map[string]time.Time{}, map[string]time.Time{}, map[string]int{}
	for _, site := range s.Sites {
		// The newest manifest's time (not Latest, which reads the
		// backup through: a restore checks it).
		if ms, err := s.Store.List(site); err == nil && len(ms) > 0 {
			s.last[site] = ms[0].Taken
			s.observe(ms[0])
		} else if s.m != nil {
			s.m.lastOK.WithLabelValues(site).Set(0)
		}
		if s.m != nil {
			s.m.crlOK.WithLabelValues(site).Set(0)
		}
	}
}

func (s *Scheduler) observe(m Manifest) {
	if s.m == nil {
		return
	}
	s.m.lastOK.WithLabelValues(m.Site).Set(float64(m.Taken.Unix()))
	s.m.size.WithLabelValues(m.Site).Set(float64(m.Bytes))
	s.m.seconds.WithLabelValues(m.Site).Set(m.Seconds)
}

// retryAfter is how long site, whose last n backups failed, waits before
// the next try: 30 s, doubling, at most 5 minutes (and Every); at most 30 s
// while the site has no backup at all (a new site, its agent not yet
// installed: until its first backup it cannot be rebuilt).
func (s *Scheduler) retryAfter(site string, n int) time.Duration {
	if n == 0 {
		return 0
	}
	if s.last[site].IsZero() {
		return min(30*time.Second, s.Every)
	}
	return min(30*time.Second<<min(n-1, 4), 5*time.Minute, s.Every)
}

// Step backs up every site whose newest backup is older than Every (one that
// failed waits retryAfter).
func (s *Scheduler) Step(ctx context.Context) {
	if s.last == nil {
		s.init()
	}
	if s.Leading != nil && !s.Leading() {
		return
	}
	for _, site := range s.Sites {
		now := s.now()
		if now.Sub(s.last[site]) < s.Every || now.Sub(s.tried[site]) < s.retryAfter(site, s.fails[site]) {
			continue
		}
		s.tried[site] = now
		m, err := s.Store.Take(ctx, site, func(ctx context.Context, w io.Writer) error { return s.Backup(ctx, site, w) })
		if err != nil {
			s.fails[site]++
			s.Log.Warn("backup failed", "site", site, "err", err, "retryIn", s.retryAfter(site, s.fails[site]))
			if s.m != nil {
				s.m.failures.WithLabelValues(site).Inc()
			}
			continue
		}
		s.last[site], s.fails[site] = now, 0
		s.observe(m)
		removed, err := s.Store.Prune(site, s.Keep)
		if err != nil {
			s.Log.Warn("removing old backups", "site", site, "err", err)
		}
		s.Log.Info("backup taken", "site", site, "file", m.File, "bytes", m.Bytes, "seconds", m.Seconds, "removedOld", removed)
	}
}

func (s *Scheduler) archive(ctx context.Context, site string) {
	crls, err := s.CRLs(ctx, site)
	for _, c := range crls {
		if _, aerr := s.Store.ArchiveCRL(site, c.URL, c.DER, c.CRL); aerr != nil && err == nil {
			err = aerr
		}
	}
	switch {
	case err != nil:
		s.Log.Debug("CRL archive", "site", site, "err", err)
		if s.m != nil {
			s.m.crlFailures.WithLabelValues(site).Inc()
		}
	case s.m != nil:
		s.m.crlOK.WithLabelValues(site).Set(float64(s.now().Unix()))
	}
}

// Run steps until ctx ends: backups checked every 5 s (a check is a
// comparison of times; the first backups follow leadership by seconds);
// CRLs archived every CRLEvery, apart (fetching a dead site's CRLs waits
// out timeouts, which must not hold the backups back).
func (s *Scheduler) Run(ctx context.Context) {
	if s.last == nil {
		s.init()
	}
	go s.every(ctx, s.CRLEvery, func(ctx context.Context) {
		if s.Leading != nil && !s.Leading() {
			return
		}
		for _, site := range s.Sites {
			s.archive(ctx, site)
		}
	})
	s.every(ctx, 5*time.Second, s.Step)
}

// every runs fn at once and then every d until ctx ends.
func (s *Scheduler) every(ctx context.Context, d time.Duration, fn func(context.Context)) {
	for {
		sctx, cancel := context.WithTimeout(ctx, time.Hour)
		fn(sctx)
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-time.After(d):
		}
	}
}
