package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/handlers"
	"github.com/keybroker/keybroker/store"
	"github.com/keybroker/keybroker/vault"
)

// PendingGrace leaves in-flight writes alone: the periodic reconciler
// repairs only changes pending for longer than this.
const PendingGrace = time.Minute

// leases makes the leases of one replica (store.Lease): one holder id for
// the process's replica, the metrics shared. The work one replica at a time
// does — the audit stream, the reconciler, the prober — takes a lease in a
// table only keybroker's serving roles may write, where PostgreSQL advisory
// locks (which any database login may take and hold) were used before.
type leases struct {
	store   *store.Store
	holder  string
	metrics *store.LeaseMetrics
	logger  *slog.Logger
}

func newLeases(st *store.Store, reg prometheus.Registerer, logger *slog.Logger) *leases {
	return &leases{store: st, holder: leaseHolder(), metrics: store.NewLeaseMetrics(reg), logger: logger}
}

// leaseHolder names this replica in the lease rows: host name, process id
// and a random part (two replicas of one process stay apart).
func leaseHolder() string {
	host, _ := os.Hostname()
	if len(host) > 120 {
		host = host[:120]
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b))
}

// lease is lease name of this replica; continuous for the audit stream,
// which one replica holds for good while the others stand by.
func (l *leases) lease(name string, continuous bool) *store.Lease {
	return &store.Lease{Store: l.store, Name: name, Holder: l.holder, Continuous: continuous, Logger: l.logger, Metrics: l.metrics}
}

// Reconciler runs the broker's reconciler every Every (jittered to 50-150 %)
// on whichever replica takes the reconciler's lease (admin replicas: only
// the runtime role may hold it).
type Reconciler struct {
	Broker *broker.Broker
	Lease  *store.Lease
	Every  time.Duration
	Logger *slog.Logger
}

// Run reconciles until ctx is done.
func (r *Reconciler) Run(ctx context.Context) {
	everyJittered(ctx, r.Every, r.Logger, "reconcile", r.RunOnce)
}

// everyJittered runs fn every interval (jittered to 50-150 %, so that
// replicas drift apart) until ctx is done; a run that could not take its
// lease is no failure here (the lease logs and counts it, rate-limited).
func everyJittered(ctx context.Context, every time.Duration, log *slog.Logger, what string, fn func(context.Context) error) {
	for {
		wait := every/2 + time.Duration(mrand.Int64N(int64(every)))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		if err := fn(ctx); err != nil && !errors.Is(err, store.ErrLease) && ctx.Err() == nil {
			log.Warn(what+" run failed", "error", err)
		}
	}
}

// RunOnce reconciles once under the lease; an error wrapping
// store.ErrLease when another replica holds it.
func (r *Reconciler) RunOnce(ctx context.Context) error {
	return r.Lease.Run(ctx, func(ctx context.Context) error {
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
