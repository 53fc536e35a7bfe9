package failover

import "github.com/prometheus/client_golang/prometheus"

type controllerMetrics struct {
	active        *prometheus.GaugeVec
	siteState     *prometheus.GaugeVec
	noHealthy     prometheus.Gauge
	moves         *prometheus.CounterVec
	decision      prometheus.Histogram
	updates       *prometheus.CounterVec
	updateLatency prometheus.Histogram
	propagation   *prometheus.GaugeVec
	propagated    *prometheus.GaugeVec
	leader        prometheus.Gauge
	crlUpdates    *prometheus.CounterVec
	withdrawn     *prometheus.GaugeVec
	sites         []string
}

var healthStates = []Health{Unknown, Healthy, Suspect, Down, Recovering}

func newControllerMetrics(reg prometheus.Registerer, sites []string) *controllerMetrics {
	m := &controllerMetrics{
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "cairn_failover_active_site",
			Help: "1 for the site the ACME name points to, 0 for the others."}, []string{"site"}),
		siteState: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "cairn_failover_site_state",
			Help: "1 for the site's current state, 0 for the others."}, []string{"site", "state"}),
		noHealthy: prometheus.NewGauge(prometheus.GaugeOpts{Name: "cairn_failover_no_healthy_site",
			Help: "1 while the active site is unusable and no site is healthy (DNS left unchanged): alert on it."}),
		moves: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cairn_failover_moves_total",
			Help: "Moves of the ACME name, by reason (down, drain, operator, failback)."}, []string{"reason"}),
		decision: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "cairn_failover_decision_duration_seconds",
			Help: "Time to decide on a batch of observations.", Buckets: []float64{1e-6, 1e-5, 1e-4, 1e-3, 1e-2}}),
		updates: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cairn_failover_dns_updates_total",
			Help: "RFC 2136 updates of the ACME name, by result (ok, conflict, error)."}, []string{"result"}),
		updateLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "cairn_failover_dns_update_duration_seconds",
			Help: "Round trip of a successful RFC 2136 update.", Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .5}}),
		propagation: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "cairn_failover_propagation_lag_seconds",
			Help: "Time from the last update until each authoritative server served it."}, []string{"server"}),
		propagated: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "cairn_failover_name_propagated",
			Help: "After each move: 1 if the authoritative server served the new address and epoch within 60 s, 0 if not."}, []string{"server"}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{Name: "cairn_failover_leader",
			Help: "1 if this controller decides (single controller: always)."}),
		crlUpdates: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cairn_failover_crl_name_updates_total",
			Help: "Updates of the CRL names' addresses (a CRL front withdrawn or put back), by result (ok, conflict, error)."}, []string{"result"}),
		withdrawn: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "cairn_failover_crl_front_withdrawn",
			Help: "1 while the site's CRL front is withdrawn from the CRL names (it failed its crlfront probe), 0 otherwise."}, []string{"site"}),
		sites: sites,
	}
	reg.MustRegister(m.active, m.siteState, m.noHealthy, m.moves, m.decision, m.updates, m.updateLatency, m.propagation, m.propagated, m.leader,
		m.crlUpdates, m.withdrawn)
	// Every label value exists from the start at 0, so that the first move
	// or conflict is an increase alert rules can see.
	for _, c := range []Cause{CauseDown, CauseDrain, CauseOperator, CauseFailback} {
		m.moves.WithLabelValues(string(c))
	}
	for _, r := range []string{"ok", "conflict", "error"} {
		m.updates.WithLabelValues(r)
		m.crlUpdates.WithLabelValues(r)
	}
	return m
}

func (m *controllerMetrics) setState(s State, noHealthy bool) {
	for _, name := range m.sites {
		v := 0.0
		if s.Active == name {
			v = 1
		}
		m.active.WithLabelValues(name).Set(v)
		for _, h := range healthStates {
			v := 0.0
			if ss := s.Sites[name]; ss != nil && ss.Health == h {
				v = 1
			}
			m.siteState.WithLabelValues(name, string(h)).Set(v)
		}
	}
	if noHealthy {
		m.noHealthy.Set(1)
	} else {
		m.noHealthy.Set(0)
	}
}

func (m *controllerMetrics) setLeader(leading bool) {
	if leading {
		m.leader.Set(1)
	} else {
		m.leader.Set(0)
	}
}

func (m *controllerMetrics) setFrontWithdrawn(site string, withdrawn bool) {
	v := 0.0
	if withdrawn {
		v = 1
	}
	m.withdrawn.WithLabelValues(site).Set(v)
}
