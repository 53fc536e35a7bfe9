package acmefront

import (
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cairn-pki/cairn/internal/connlimit"
)

// metricsHandler is the front's /metrics: what its listener holds and
// refused (a flood of connections shows as refusals, not as an outage),
// and the answers it gives itself.
func metricsHandler(f *Front, st *connlimit.Stats, c Config) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(certExpiry{front: c.CertFile, dir: c.InternalCerts})
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
	counter("cairn_front_renewal_info_forwarded_total", "ARI renewal-info requests for another site's certificate passed to the issuing site's front.", nil, &f.ariForwarded)
	reg.MustRegister(f.checks)
	for _, reason := range Reasons {
		counter("cairn_front_refused_total", "Requests the front refused itself, by reason (EAB, name scopes, docs/authority.md).",
			prometheus.Labels{"reason": reason}, f.policy.refused[reason])
	}
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}

// certExpiry exports when the site's certificates expire: the front's own
// (the ACME name) and every internal one (ipki/<name>/cert.pem, renewed
// by any render with less than 30 days left). Read at each scrape, so a
// renewed file shows at once; an unreadable one is left out (and its
// absence is what an alert on the series would miss, so the front's own
// is always there).
type certExpiry struct{ front, dir string }

var certExpiryDesc = prometheus.NewDesc("cairn_site_cert_expiry_timestamp_seconds",
	"When a certificate of this site expires (cert: https/wfe for the ACME name, ipki/<name> for the internal mTLS ones).", []string{"cert"}, nil)

func (c certExpiry) Describe(ch chan<- *prometheus.Desc) { ch <- certExpiryDesc }

func (c certExpiry) Collect(ch chan<- prometheus.Metric) {
	emit := func(label, path string) {
		b, err := os.ReadFile(path)
		if err != nil {
			return
		}
		block, _ := pem.Decode(b)
		if block == nil {
			return
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return
		}
		ch <- prometheus.MustNewConstMetric(certExpiryDesc, prometheus.GaugeValue, float64(cert.NotAfter.Unix()), label)
	}
	if c.front != "" {
		emit("https/wfe", c.front)
	}
	if c.dir == "" {
		return
	}
	paths, _ := filepath.Glob(filepath.Join(c.dir, "*", "cert.pem"))
	for _, p := range paths {
		emit("ipki/"+filepath.Base(filepath.Dir(p)), p)
	}
}
