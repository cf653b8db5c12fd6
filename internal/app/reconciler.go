package app

import (
	"context"
	"errors"
	"log/slog"
	mrand "math/rand/v2"
	"time"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/handlers"
	"github.com/keybroker/keybroker/store"
	"github.com/keybroker/keybroker/vault"
)

// ReconcileLockKey is the PostgreSQL advisory lock that makes one replica
// at a time reconcile.
const ReconcileLockKey = 0x6b62726563 // "kbrec"

// PendingGrace leaves in-flight writes alone: the periodic reconciler
// repairs only changes pending for longer than this.
const PendingGrace = time.Minute

// Locker runs fn while holding an advisory lock; store.ErrLocked when
// another replica holds it (package store implements it).
type Locker interface {
	WithLock(ctx context.Context, key int64, fn func(context.Context) error) error
}

var _ Locker = (*store.Store)(nil)

// Reconciler runs the broker's reconciler every Every (jittered to 50-150 %)
// on whichever replica takes the lock.
type Reconciler struct {
	Broker *broker.Broker
	Locker Locker
	Every  time.Duration
	Logger *slog.Logger
}

// Run reconciles until ctx is done.
func (r *Reconciler) Run(ctx context.Context) {
	everyJittered(ctx, r.Every, r.Logger, "reconcile", r.RunOnce)
}

// everyJittered runs fn every interval (jittered to 50-150 %, so that
// replicas drift apart) until ctx is done; a run that found the lock
// taken by another replica is no failure.
func everyJittered(ctx context.Context, every time.Duration, log *slog.Logger, what string, fn func(context.Context) error) {
	for {
		wait := every/2 + time.Duration(mrand.Int64N(int64(every)))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		if err := fn(ctx); err != nil && !errors.Is(err, store.ErrLocked) && ctx.Err() == nil {
			log.Warn(what+" run failed", "error", err)
		}
	}
}

// RunOnce reconciles once under the lock; store.ErrLocked when another
// replica is at it.
func (r *Reconciler) RunOnce(ctx context.Context) error {
	return r.Locker.WithLock(ctx, ReconcileLockKey, func(ctx context.Context) error {
		rep, err := r.Broker.Reconcile(ctx, PendingGrace)
		r.Logger.Info("reconcile run", "completed", rep.Completed, "aborted", rep.Aborted, "repaired", rep.Repaired,
			"unrepaired", len(rep.Unrepaired), "failed", rep.Failed)
		return err
	})
}

// Reconcile is `keybroker reconcile`: one pass over every change, with no
// grace for pending ones (the operator runs it when no writer is mid-way).
// It needs the writer identity; with Mode all it also logs in as the reader
// to adopt keys written in Vault directly.
// The report is nil when reconciling could not start.
func Reconcile(ctx context.Context, cfg Config, logger *slog.Logger) (*broker.ReconcileReport, error) {
	var rep *broker.ReconcileReport
	err := withOneShotBroker(ctx, cfg, logger, cfg.Mode == string(handlers.ModeAll), func(ctx context.Context, b *broker.Broker) error {
		r, err := b.Reconcile(ctx, 0)
		rep = &r
		return err
	})
	return rep, err
}

// MigrateLayout is `keybroker vault migrate-layout`: it moves the keys
// keybroker v1 kept at <scope>/providers/<provider> to the v2 layout. It
// needs both identities (the reader copies, the writer writes). The
// report is nil when the move could not start.
func MigrateLayout(ctx context.Context, cfg Config, logger *slog.Logger) (*broker.LayoutReport, error) {
	var rep *broker.LayoutReport
	err := withOneShotBroker(ctx, cfg, logger, true, func(ctx context.Context, b *broker.Broker) error {
		r, err := b.MigrateLayout(ctx, broker.Actor{Subject: "keybroker vault migrate-layout"})
		rep = &r
		return err
	})
	return rep, err
}

// withOneShotBroker runs fn with a broker on the writer identity (and the
// reader, when withReader) and the metadata store, for one command.
func withOneShotBroker(ctx context.Context, cfg Config, logger *slog.Logger, withReader bool, fn func(context.Context, *broker.Broker) error) error {
	cfg = cfg.withDefaults()
	if cfg.DatabaseURL == "" {
		return errors.New("no database: set DATABASE_URL or --database-url")
	}
	if len(cfg.Pepper) < 16 {
		return errors.New("KEYBROKER_FINGERPRINT_PEPPER must be set (the same as serve's)")
	}
	st, err := store.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer st.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	bcfg := broker.Config{Store: st, Pools: st, Pepper: []byte(cfg.Pepper), Logger: logger}
	login := func(who string, id Identity) (*vault.Client, error) {
		c, err := cfg.vaultClient(who, id, logger, nil)
		if err != nil {
			return nil, err
		}
		c.Start(ctx)
		return c, c.WaitForToken(ctx)
	}
	writer, err := login("writer", cfg.Writer)
	if err != nil {
		return err
	}
	bcfg.Writer = writer.KV(cfg.KVMount)
	if withReader {
		reader, err := login("reader", cfg.Reader)
		if err != nil {
			return err
		}
		bcfg.Reader = reader.KV(cfg.KVMount)
	}
	b, err := broker.New(bcfg)
	if err != nil {
		return err
	}
	return fn(ctx, b)
}
