package app

import (
	"context"
	"log/slog"
	"time"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/store"
)

// Prober re-tests the failing keys every Every (jittered to 50-150 %) on
// whichever replica takes the prober's lease (replicas that read keys: the
// resolver role, or the runtime role in mode all), at most Concurrency at
// a time, and returns those that pass to their pools.
type Prober struct {
	Broker      *broker.Broker
	Lease       *store.Lease
	Every       time.Duration
	Concurrency int
	Logger      *slog.Logger
}

// Run probes until ctx is done.
func (p *Prober) Run(ctx context.Context) {
	everyJittered(ctx, p.Every, p.Logger, "health probe", p.RunOnce)
}

// RunOnce probes once under the lease; an error wrapping store.ErrLease
// when another replica is at it.
func (p *Prober) RunOnce(ctx context.Context) error {
	return p.Lease.Run(ctx, func(ctx context.Context) error {
		tested, passed, err := p.Broker.ProbeFailing(ctx, p.Concurrency)
		if tested > 0 {
			p.Logger.Info("health probe run", "tested", tested, "passed", passed)
		}
		return err
	})
}
