package proxy

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics count proxied calls for Prometheus.
type metrics struct {
	calls   *prometheus.CounterVec
	retries *prometheus.CounterVec
	// inFlight is the calls being forwarded now (what a shutdown waits
	// for); headers the provider's time to its response headers, per
	// attempt.
	inFlight prometheus.Gauge
	headers  *prometheus.HistogramVec
	// bounded counts the calls refused by a bound (replica,
	// replica_reserve, workspace, token: calls in flight; retry_buffer,
	// retry_buffer_workspace, retry_buffer_reserve: bytes kept for
	// retries).
	bounded *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, rec *Recorder, b *bounds) *metrics {
	m := &metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keybroker_proxy_calls_total",
			Help: "Calls through the credential proxy by provider, the answer's status class (2xx, 4xx, 5xx; 0xx: none) and whether the key was BYOK.",
		}, []string{"provider", "status_class", "byok"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keybroker_proxy_retries_total",
			Help: "Calls the credential proxy retried with the next key after a refusal (401, 403, 402, 429).",
		}, []string{"provider"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "keybroker_proxy_calls_in_flight",
			Help: "Calls the credential proxy is forwarding now, their streamed answers included.",
		}),
		headers: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "keybroker_proxy_upstream_header_seconds",
			Help:    "Time from sending a call to the provider to its response headers, per attempt: the provider's own latency, keybroker's excluded.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
		}, []string{"provider"}),
		bounded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keybroker_proxy_bounded_total",
			Help: "Calls the credential proxy refused with 429 because a bound was reached: calls in flight on the replica (replica; replica_reserve: its last quarter, kept for workspaces with few calls), of a workspace or of a proxy token, or the retry buffer's bytes (retry_buffer; retry_buffer_workspace: a workspace's share; retry_buffer_reserve: its last quarter).",
		}, []string{"bound"}),
	}
	if reg != nil {
		reg.MustRegister(m.calls, m.retries, m.inFlight, m.headers, m.bounded)
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "keybroker_proxy_retry_buffer_bytes",
			Help: "Bytes of request bodies the credential proxy holds now to retry a refused call with the next key.",
		}, func() float64 { return float64(b.keptBytes()) }))
		if rec != nil {
			reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "keybroker_proxy_records_dropped_total",
				Help: "Records of proxied calls lost because PostgreSQL could not take them (more than 100,000 waiting).",
			}, func() float64 { return float64(rec.Dropped()) }))
		}
	}
	return m
}

func (m *metrics) record(rec Record) {
	class := strconv.Itoa(rec.Status/100) + "xx"
	m.calls.WithLabelValues(rec.Provider, class, strconv.FormatBool(rec.BYOK)).Inc()
	if rec.Retried {
		m.retries.WithLabelValues(rec.Provider).Inc()
	}
}
