package vault

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the Vault client's Prometheus metrics: request latency and
// outcome by operation (kv_get, kv_put, ...). A nil *Metrics records
// nothing.
type Metrics struct {
	requests *prometheus.HistogramVec
}

// NewMetrics creates the Vault request metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "keybroker_vault_request_duration_seconds",
		Help:    "Vault requests by operation and outcome (ok, not_found, forbidden, unavailable, error).",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	}, []string{"operation", "outcome"})}
	reg.MustRegister(m.requests)
	return m
}

func (m *Metrics) observe(op string, err error, d time.Duration) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(op, outcomeOf(err)).Observe(d.Seconds())
}

// outcomeOf names how a Vault call ended, for metrics and spans.
func outcomeOf(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrNotFound):
		return "not_found"
	case errors.Is(err, ErrForbidden):
		return "forbidden"
	case errors.Is(err, ErrUnavailable):
		return "unavailable"
	}
	return "error"
}

// RegisterTokenMetrics exposes the token life of one identity (writer,
// reader): logins, failed logins, renewals, and seconds until the token
// expires.
func RegisterTokenMetrics(reg prometheus.Registerer, identity string, c *Client) {
	labels := prometheus.Labels{"identity": identity}
	stat := func(pick func(logins, failures, renewals int64, expires time.Time) float64) func() float64 {
		return func() float64 { return pick(c.TokenStats()) }
	}
	reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "keybroker_vault_logins_total", Help: "Successful Vault logins.", ConstLabels: labels},
			stat(func(l, _, _ int64, _ time.Time) float64 { return float64(l) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "keybroker_vault_login_failures_total", Help: "Failed Vault logins.", ConstLabels: labels},
			stat(func(_, f, _ int64, _ time.Time) float64 { return float64(f) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "keybroker_vault_token_renewals_total", Help: "Vault token renewals.", ConstLabels: labels},
			stat(func(_, _, r int64, _ time.Time) float64 { return float64(r) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "keybroker_vault_token_ttl_seconds", Help: "Seconds until the Vault token expires (0: unknown or static).", ConstLabels: labels},
			stat(func(_, _, _ int64, exp time.Time) float64 {
				if exp.IsZero() {
					return 0
				}
				return time.Until(exp).Seconds()
			})),
	)
}
