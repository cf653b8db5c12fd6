package app

import (
	"context"
	"log/slog"
	"time"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/store"
)

// Lifecycle runs the key lifecycle's background work (docs/lifecycle.md):
// on every admin replica, the expiry warnings (each sent once across the
// replicas: PostgreSQL records it); on one admin replica at a time (the
// lifecycle lease), rotations resumed after a crash or past their grace
// period, revocations at the providers retried, and rotateAfter
// schedules. Rotation and revocation read admin credentials with the
// writer identity (the reader's policy denies them). Rotations false:
// warnings only.
type Lifecycle struct {
	Broker    *broker.Broker
	Lease     *store.Lease
	Every     time.Duration
	Rotations bool
	Logger    *slog.Logger
}

// Run works until ctx is done.
func (l *Lifecycle) Run(ctx context.Context) {
	everyJittered(ctx, l.Every, l.Logger, "key lifecycle", l.RunOnce)
}

// RunOnce sends the expiry warnings due and, under the lease, does one
// pass of the rotations and revocations.
func (l *Lifecycle) RunOnce(ctx context.Context) error {
	if _, err := l.Broker.WarnExpiring(ctx); err != nil {
		l.Logger.Warn("expiry warnings failed; the next run tries again", "error", err)
	}
	if !l.Rotations {
		return nil
	}
	return l.Lease.Run(ctx, l.Broker.LifecyclePass)
}
