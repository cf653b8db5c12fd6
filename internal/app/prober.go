package app

import (
	"context"
	"log/slog"
	"time"

	"github.com/keybroker/keybroker/broker"
)

// ProbeLockKey is the PostgreSQL advisory lock that makes one replica at a
// time re-test failing keys.
const ProbeLockKey = 0x6b6270726f // "kbpro"

// Prober re-tests the failing keys every Every (jittered to 50-150 %) on
// whichever replica takes the lock, at most Concurrency at a time, and
// returns those that pass to their pools.
type Prober struct {
	Broker      *broker.Broker
	Locker      Locker
	Every       time.Duration
	Concurrency int
	Logger      *slog.Logger
}

// Run probes until ctx is done.
func (p *Prober) Run(ctx context.Context) {
	everyJittered(ctx, p.Every, p.Logger, "health probe", p.RunOnce)
}

// RunOnce probes once under the lock; store.ErrLocked when another replica
// is at it.
func (p *Prober) RunOnce(ctx context.Context) error {
	return p.Locker.WithLock(ctx, ProbeLockKey, func(ctx context.Context) error {
		tested, passed, err := p.Broker.ProbeFailing(ctx, p.Concurrency)
		if tested > 0 {
			p.Logger.Info("health probe run", "tested", tested, "passed", passed)
		}
		return err
	})
}
