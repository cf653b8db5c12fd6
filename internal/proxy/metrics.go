package proxy

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics count proxied calls for Prometheus.
type metrics struct {
	calls   *prometheus.CounterVec
	retries *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, rec *Recorder) *metrics {
	m := &metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keybroker_proxy_calls_total",
			Help: "Calls through the credential proxy by provider, the answer's status class (2xx, 4xx, 5xx; 0xx: none) and whether the key was BYOK.",
		}, []string{"provider", "status_class", "byok"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keybroker_proxy_retries_total",
			Help: "Calls the credential proxy retried with the next key after a refusal (401, 403, 402, 429).",
		}, []string{"provider"}),
	}
	if reg != nil {
		reg.MustRegister(m.calls, m.retries)
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
