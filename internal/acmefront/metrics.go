package acmefront

import (
	"net/http"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cairn-pki/cairn/internal/connlimit"
)

// metricsHandler is the front's /metrics: what its listener holds and
// refused (a flood of connections shows as refusals, not as an outage),
// and the answers it gives itself.
func metricsHandler(f *Front, st *connlimit.Stats) http.Handler {
	reg := prometheus.NewRegistry()
	gauge := func(name, help string, v func() float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, v))
	}
	counter := func(name, help string, labels prometheus.Labels, v *atomic.Int64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels},
			func() float64 { return float64(v.Load()) }))
	}
	gauge("cairn_front_connections_open", "Connections the ACME front holds now.", func() float64 { return float64(st.Open.Load()) })
	const refused = "cairn_front_connections_refused_total"
	const refusedHelp = "Connections closed at once because a cap was reached (cap: total or per_source)."
	counter(refused, refusedHelp, prometheus.Labels{"cap": "total"}, &st.RefusedTotal)
	counter(refused, refusedHelp, prometheus.Labels{"cap": "per_source"}, &st.RefusedPer)
	counter("cairn_front_accept_errors_total", "Accept errors (descriptors exhausted, aborted connections) retried.", nil, &st.AcceptErrors)
	counter("cairn_front_already_replaced_total", "newOrders answered alreadyReplaced (replaces named another site's certificate).", nil, &f.Foreign)
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}
