package store

import "github.com/prometheus/client_golang/prometheus"

// RegisterPoolMetrics exposes the connection pool's statistics.
func (s *Store) RegisterPoolMetrics(reg prometheus.Registerer) {
	gauge := func(name, help string, v func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "keybroker_postgres_pool_" + name, Help: help}, v)
	}
	reg.MustRegister(
		gauge("connections", "Connections open in the pool.", func() float64 { return float64(s.pool.Stat().TotalConns()) }),
		gauge("acquired_connections", "Connections in use.", func() float64 { return float64(s.pool.Stat().AcquiredConns()) }),
		gauge("idle_connections", "Idle connections.", func() float64 { return float64(s.pool.Stat().IdleConns()) }),
		gauge("max_connections", "The pool's size limit.", func() float64 { return float64(s.pool.Stat().MaxConns()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "keybroker_postgres_pool_acquires_total", Help: "Connections acquired from the pool."},
			func() float64 { return float64(s.pool.Stat().AcquireCount()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "keybroker_postgres_pool_empty_acquires_total", Help: "Acquires that had to wait for a connection."},
			func() float64 { return float64(s.pool.Stat().EmptyAcquireCount()) }),
	)
}
