package app

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/keybroker/keybroker/broker"
)

// registerPoolCacheMetrics exposes the pool cache's figures: the pools a
// replica holds, and its reads from PostgreSQL and evictions since start
// (docs/operations.md).
func registerPoolCacheMetrics(reg prometheus.Registerer, b *broker.Broker) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "keybroker_pool_cache_pools",
			Help: "Key pools this replica holds in memory (--pool-cache-size bounds them)."},
			func() float64 { held, _, _ := b.PoolCacheStats(); return float64(held) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "keybroker_pool_cache_reads_total",
			Help: "Reads of a key pool from PostgreSQL: a pool first needed, or announced changed while held."},
			func() float64 { _, reads, _ := b.PoolCacheStats(); return float64(reads) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "keybroker_pool_cache_evictions_total",
			Help: "Key pools forgotten to stay within --pool-cache-size, or after a reconnect of the invalidation listener."},
			func() float64 { _, _, ev := b.PoolCacheStats(); return float64(ev) }),
	)
}
