package broker

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the broker's Prometheus metrics. Labels carry only fixed
// words (source, outcome, action), never a workspace, key or token. A nil
// *Metrics records nothing.
type Metrics struct {
	resolves     *prometheus.HistogramVec
	cacheLookups *prometheus.CounterVec
	cacheStale   prometheus.Counter
	cacheEvicted prometheus.Counter
	adminActions *prometheus.CounterVec
	cacheFlushes prometheus.Counter
	cacheFullC   prometheus.Counter
	reports      *prometheus.CounterVec
	reportsWS    *prometheus.CounterVec
	reportsCall  *prometheus.CounterVec
	healthC      *prometheus.CounterVec
	checks       *prometheus.CounterVec
	mints        *prometheus.CounterVec
	expiring     *prometheus.GaugeVec
	expired      *prometheus.GaugeVec
	rotations    *prometheus.CounterVec
}

// NewMetrics creates the broker's metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		resolves: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "keybroker_resolve_duration_seconds", Help: "Resolves by source (byok, hosted, none) and outcome (ok, no_key, keys_cooling_down, error).",
			Buckets: []float64{.00001, .00005, .0001, .0005, .001, .005, .01, .05, .1, .5, 1, 5},
		}, []string{"source", "outcome"}),
		cacheLookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keybroker_cache_lookups_total", Help: "Cache lookups by result (hit, miss).",
		}, []string{"result"}),
		cacheStale: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keybroker_cache_stale_served_total", Help: "Answers served past their TTL because Vault was unavailable (stale-if-error).",
		}),
		cacheEvicted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keybroker_cache_evictions_total", Help: "Cache entries evicted by a change (local or announced by a replica).",
		}),
		cacheFlushes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keybroker_cache_flushes_total", Help: "Whole-cache flushes (the invalidation listener reconnected).",
		}),
		cacheFullC: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keybroker_cache_full_total", Help: "Keys read from Vault but not cached because the cache held its maximum of entries.",
		}),
		adminActions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keybroker_admin_actions_total", Help: "Key changes by action and outcome.",
		}, []string{"action", "outcome"}),
		reports: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keybroker_key_reports_total", Help: "Reports of what a provider answered to a call made with a resolved key, by provider and outcome (repeats of a known state included).",
		}, []string{"provider", "outcome"}),
		reportsWS: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keybroker_key_reports_workspace_only_total", Help: "Reports about a key the reporting workspace does not own (its organization's, a hosted key), applied to that workspace alone, by provider and outcome.",
		}, []string{"provider", "outcome"}),
		reportsCall: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keybroker_key_reports_caller_only_total", Help: "Refusals the credential proxy saw (about any key), applied to the calling token alone until keybroker's own check confirms them, by provider and outcome.",
		}, []string{"provider", "outcome"}),
		healthC: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keybroker_key_health_changes_total", Help: "Changes of a key's health (from a report, a test or an admin), by provider and the health reached (healthy, cooling_down, failing).",
		}, []string{"provider", "health"}),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keybroker_key_checks_total", Help: "Keys checked with their provider (tests, verified writes, the prober, checks after reports about shared keys and refusals the proxy saw), by provider and verdict (accepted, refused, rate_limited, unreachable).",
		}, []string{"provider", "verdict"}),
		mints: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keybroker_credential_mints_total", Help: "Short-lived credentials minted from keys (docs/credentials.md), by provider and outcome (ok, failed, busy).",
		}, []string{"provider", "outcome"}),
		expiring: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "keybroker_keys_expiring", Help: "Keys within the warning window before their expiresAt (docs/lifecycle.md), by provider, as the last expiry pass found them.",
		}, []string{"provider"}),
		expired: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "keybroker_keys_expired", Help: "Keys past their expiresAt (never served), by provider, as the last expiry pass found them.",
		}, []string{"provider"}),
		rotations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keybroker_key_rotations_total", Help: "Rotations at the provider (docs/lifecycle.md), by provider and outcome (done, failed, rolled_back).",
		}, []string{"provider", "outcome"}),
	}
	reg.MustRegister(m.resolves, m.cacheLookups, m.cacheStale, m.cacheEvicted, m.cacheFlushes, m.cacheFullC, m.adminActions,
		m.reports, m.reportsWS, m.reportsCall, m.healthC, m.checks, m.mints, m.expiring, m.expired, m.rotations)
	return m
}

func (m *Metrics) reported(provider, outcome string) {
	if m != nil {
		m.reports.WithLabelValues(provider, outcome).Inc()
	}
}

func (m *Metrics) reportedShared(provider, outcome string) {
	if m != nil {
		m.reportsWS.WithLabelValues(provider, outcome).Inc()
	}
}

func (m *Metrics) reportedByCall(provider, outcome string) {
	if m != nil {
		m.reportsCall.WithLabelValues(provider, outcome).Inc()
	}
}

func (m *Metrics) healthChanged(provider, health string) {
	if m != nil {
		m.healthC.WithLabelValues(provider, health).Inc()
	}
}

func (m *Metrics) checked(provider, verdict string) {
	if m != nil {
		m.checks.WithLabelValues(provider, verdict).Inc()
	}
}

func (m *Metrics) resolved(source, outcome string, d time.Duration) {
	if m != nil {
		m.resolves.WithLabelValues(source, outcome).Observe(d.Seconds())
	}
}

func (m *Metrics) lookup(hit bool) {
	if m == nil {
		return
	}
	if hit {
		m.cacheLookups.WithLabelValues("hit").Inc()
	} else {
		m.cacheLookups.WithLabelValues("miss").Inc()
	}
}

func (m *Metrics) minted(provider, outcome string) {
	if m != nil {
		m.mints.WithLabelValues(provider, outcome).Inc()
	}
}

// expiry sets the expiry gauges to what a pass found, by provider.
func (m *Metrics) expiry(expiring, expired map[string]int) {
	if m == nil {
		return
	}
	m.expiring.Reset()
	m.expired.Reset()
	for p, n := range expiring {
		m.expiring.WithLabelValues(p).Set(float64(n))
	}
	for p, n := range expired {
		m.expired.WithLabelValues(p).Set(float64(n))
	}
}

func (m *Metrics) rotated(provider, outcome string) {
	if m != nil {
		m.rotations.WithLabelValues(provider, outcome).Inc()
	}
}

// KeysExpiring is the gauge of expiring keys of provider (tests,
// dashboards in-process).
func (m *Metrics) KeysExpiring(provider string) prometheus.Gauge {
	return m.expiring.WithLabelValues(provider)
}

func (m *Metrics) staleServed() {
	if m != nil {
		m.cacheStale.Inc()
	}
}

func (m *Metrics) evicted() {
	if m != nil {
		m.cacheEvicted.Inc()
	}
}

func (m *Metrics) cacheFull() {
	if m != nil {
		m.cacheFullC.Inc()
	}
}

func (m *Metrics) flushed() {
	if m != nil {
		m.cacheFlushes.Inc()
	}
}

func (m *Metrics) action(action, outcome string) {
	if m != nil {
		m.adminActions.WithLabelValues(action, outcome).Inc()
	}
}

// CacheLookups is the counter of cache lookups with result "hit" or
// "miss" (for tests and dashboards that read it in-process).
func (m *Metrics) CacheLookups(result string) prometheus.Counter {
	return m.cacheLookups.WithLabelValues(result)
}
