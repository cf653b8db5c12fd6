package app

import (
	"context"
	"errors"
	"log/slog"
	mrand "math/rand/v2"
	"time"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/store"
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
	for {
		wait := p.Every/2 + time.Duration(mrand.Int64N(int64(p.Every)))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		err := p.RunOnce(ctx)
		if err != nil && !errors.Is(err, store.ErrLocked) && ctx.Err() == nil {
			p.Logger.Warn("health probe run failed", "error", err)
		}
	}
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
