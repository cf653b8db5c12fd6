package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// The leases: work that one replica at a time does. Each lives in the table
// of the roles that run it (migration 00014): the audit stream and the
// reconciler in admin_leases, which only the runtime role may write; the
// prober in execution_leases, which the resolver role may write too.
const (
	LeaseAuditStream = "audit-stream"
	LeaseReconciler  = "reconciler"
	LeaseProber      = "prober"
	// LeaseLifecycle: the rotations to resume, the revocations at the
	// providers to retry (migration 00018).
	LeaseLifecycle = "lifecycle"
)

// leaseTable is the table of a lease; "" for no lease of keybroker's.
func leaseTable(name string) string {
	switch name {
	case LeaseAuditStream, LeaseReconciler, LeaseLifecycle:
		return "admin_leases"
	case LeaseProber:
		return "execution_leases"
	}
	return ""
}

// ErrLease: the lease is not this holder's. Every error of Lease.Run that
// comes from the lease itself wraps it (ErrLeaseHeld, ErrLeaseLost, and a
// failed attempt to take it); the lease has logged and counted it already.
var ErrLease = errors.New("store: lease not held")

var (
	// ErrLeaseHeld: another holder holds the lease and it has not expired.
	ErrLeaseHeld = fmt.Errorf("%w: another holder holds it", ErrLease)
	// ErrLeaseLost: the lease was lost while its work ran (another holder
	// took it after it expired, or it could not be renewed in time).
	ErrLeaseLost = fmt.Errorf("%w: lost while its work ran", ErrLease)
)

// LeaseState is a lease's row.
type LeaseState struct {
	Name   string
	Holder string
	// HolderRole is the database role that last wrote the row (set by a
	// trigger: no writer chooses it).
	HolderRole string
	AcquiredAt time.Time
	ExpiresAt  time.Time
	// Position is the work's place (the audit stream's cursor: the last
	// audit id delivered); Positioned is false when none was recorded.
	Position   int64
	Positioned bool
	// ServingRole says that HolderRole is a role granted the lease's table
	// (a serving role of keybroker's): not the table's owner, not a
	// superuser. Only LeaseState and a failed TakeLease fill it.
	ServingRole bool
	// Backlog is, for the audit stream, how many audit ids lie after
	// Position (only LeaseState and a failed TakeLease fill it).
	Backlog int64
}

// Expired says whether the lease had expired at now.
func (l LeaseState) Expired(now time.Time) bool { return !l.ExpiresAt.After(now) }

const leaseColumns = `name, holder, holder_role, acquired_at, expires_at, position`

func scanLease(row pgx.Row) (LeaseState, error) {
	var l LeaseState
	var pos *int64
	if err := row.Scan(&l.Name, &l.Holder, &l.HolderRole, &l.AcquiredAt, &l.ExpiresAt, &pos); err != nil {
		return LeaseState{}, err
	}
	if pos != nil {
		l.Position, l.Positioned = *pos, true
	}
	return l, nil
}

// TakeLease takes lease name for holder for ttl, or renews it when holder
// holds it: it succeeds when there is no row, the row has expired, or
// holder holds it. It returns the row and whether holder holds the lease
// now; when it does not, the row says who does (with ServingRole and
// Backlog).
func (s *Store) TakeLease(ctx context.Context, name, holder string, ttl time.Duration) (LeaseState, bool, error) {
	table := leaseTable(name)
	if table == "" {
		return LeaseState{}, false, fmt.Errorf("no lease %q", name)
	}
	if ttl <= 0 {
		return LeaseState{}, false, fmt.Errorf("lease %s: a lease needs a positive duration", name)
	}
	l, err := scanLease(s.pool.QueryRow(ctx, `INSERT INTO `+table+` AS l (name, holder, expires_at)
		VALUES ($1, $2, now() + make_interval(secs => $3))
		ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
		WHERE l.holder = EXCLUDED.holder OR l.expires_at <= now()
		RETURNING `+leaseColumns, name, holder, ttl.Seconds()))
	if err == nil {
		return l, true, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return LeaseState{}, false, fmt.Errorf("take lease %s: %w", name, classify(err))
	}
	l, err = s.LeaseState(ctx, name)
	if err != nil {
		return LeaseState{}, false, err
	}
	return l, false, nil
}

// LeaseState reads lease name's row, with whether its holder's role is a
// serving role and (the audit stream) the backlog after its position.
// ErrNotFound when nobody ever took it.
func (s *Store) LeaseState(ctx context.Context, name string) (LeaseState, error) {
	table := leaseTable(name)
	if table == "" {
		return LeaseState{}, fmt.Errorf("no lease %q", name)
	}
	backlog := `0::bigint`
	if name == LeaseAuditStream {
		backlog = `greatest(coalesce((SELECT max(id) FROM audit_events), 0) - coalesce(l.position, 0), 0)`
	}
	var l LeaseState
	var pos *int64
	err := s.pool.QueryRow(ctx, `SELECT l.name, l.holder, l.holder_role, l.acquired_at, l.expires_at, l.position,
		coalesce((SELECT NOT r.rolsuper AND r.oid <> c.relowner AND has_table_privilege(r.oid, c.oid, 'UPDATE')
		          FROM pg_roles r WHERE r.rolname = l.holder_role), false),
		`+backlog+`
		FROM `+table+` l, pg_class c WHERE c.oid = '`+table+`'::regclass AND l.name = $1`, name).
		Scan(&l.Name, &l.Holder, &l.HolderRole, &l.AcquiredAt, &l.ExpiresAt, &pos, &l.ServingRole, &l.Backlog)
	if errors.Is(err, pgx.ErrNoRows) {
		return LeaseState{}, fmt.Errorf("lease %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return LeaseState{}, fmt.Errorf("read lease %s: %w", name, classify(err))
	}
	if pos != nil {
		l.Position, l.Positioned = *pos, true
	}
	return l, nil
}

// ReleaseLease ends holder's lease name at once (it expires now), so that
// another replica takes it at its next attempt. A lease holder no longer
// holds is left alone.
func (s *Store) ReleaseLease(ctx context.Context, name, holder string) error {
	table := leaseTable(name)
	if table == "" {
		return fmt.Errorf("no lease %q", name)
	}
	if _, err := s.pool.Exec(ctx, `UPDATE `+table+` SET expires_at = now() WHERE name = $1 AND holder = $2 AND expires_at > now()`,
		name, holder); err != nil {
		return fmt.Errorf("release lease %s: %w", name, classify(err))
	}
	return nil
}

// AdvanceLease records position as the place of holder's work under lease
// name; ErrLeaseLost when holder does not hold the lease (any more), so
// that a replica that lost the lease never moves the place of the one
// that took it.
func (s *Store) AdvanceLease(ctx context.Context, name, holder string, position int64) error {
	table := leaseTable(name)
	if table == "" {
		return fmt.Errorf("no lease %q", name)
	}
	tag, err := s.pool.Exec(ctx, `UPDATE `+table+` SET position = $3 WHERE name = $1 AND holder = $2 AND expires_at > now()`,
		name, holder, position)
	if err != nil {
		return fmt.Errorf("record the position of lease %s: %w", name, classify(err))
	}
	if tag.RowsAffected() == 0 {
		return ErrLeaseLost
	}
	return nil
}

// LeaseCursor is the audit stream's place, kept in its lease's row
// (webhook.Cursor): only the lease's holder moves it.
type LeaseCursor struct {
	Store  *Store
	Lease  string
	Holder string
}

// Position is the last audit id delivered; ok is false when the stream
// never ran.
func (c LeaseCursor) Position(ctx context.Context) (int64, bool, error) {
	var pos *int64
	table := leaseTable(c.Lease)
	if table == "" {
		return 0, false, fmt.Errorf("no lease %q", c.Lease)
	}
	err := c.Store.pool.QueryRow(ctx, `SELECT position FROM `+table+` WHERE name = $1`, c.Lease).Scan(&pos)
	if errors.Is(err, pgx.ErrNoRows) || err == nil && pos == nil {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("read the position of lease %s: %w", c.Lease, classify(err))
	}
	return *pos, true, nil
}

// Advance records id as the last audit id delivered; ErrLeaseLost when
// the holder lost the lease.
func (c LeaseCursor) Advance(ctx context.Context, id int64) error {
	return c.Store.AdvanceLease(ctx, c.Lease, c.Holder, id)
}

// LeaseMetrics are the leases' metrics; one set per process (or per
// registry), shared by its leases.
type LeaseMetrics struct {
	attempts *prometheus.CounterVec
	held     *prometheus.GaugeVec
	blocked  *prometheus.GaugeVec
	foreign  *prometheus.GaugeVec
	backlog  *prometheus.GaugeVec
}

// NewLeaseMetrics registers the leases' metrics with reg (nil: none).
func NewLeaseMetrics(reg prometheus.Registerer) *LeaseMetrics {
	m := &LeaseMetrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "keybroker_lease_attempts_total",
			Help: "Attempts to take or renew a lease, by lease and outcome: taken, renewed, held_elsewhere, error, lost."}, []string{"lease", "outcome"}),
		held: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "keybroker_lease_held",
			Help: "1 while this replica holds the lease. Summed over the replicas, 0 for long means no keybroker replica does the work."}, []string{"lease"}),
		blocked: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "keybroker_lease_blocked",
			Help: "1 while this replica has not been able to take the lease for AlertAfter attempts in a row (for the audit stream: while its cursor did not move and events waited), or its holder's role is not a serving role."}, []string{"lease"}),
		foreign: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "keybroker_lease_foreign_holder",
			Help: "1 while the lease is held by a database role that is not one of keybroker's serving roles (the tables' owner, a superuser)."}, []string{"lease"}),
		backlog: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "keybroker_lease_backlog",
			Help: "Audit events after the audit stream's cursor, as a replica that does not hold the stream last saw them."}, []string{"lease"}),
	}
	if reg != nil {
		reg.MustRegister(m.attempts, m.held, m.blocked, m.foreign, m.backlog)
	}
	return m
}

// Lease runs work on one replica at a time: Run takes the lease (or
// renews it), renews it every TTL/3 while the work runs, stops the work
// when the lease is lost, and releases it when the work returns.
//
// A failed attempt is counted (keybroker_lease_attempts_total) and logged,
// at most once per LogEvery unless the holder changes. This replica warns
// (and sets keybroker_lease_blocked) when it has not been able to take the
// lease for AlertAfter attempts in a row — for a Continuous lease (the audit
// stream, held for good by one replica) when, besides, the position did not
// move while work waited — and whenever the holder's database role is not
// a serving role of keybroker's.
type Lease struct {
	Store  *Store
	Name   string
	Holder string
	// TTL is how long a take or a renewal holds the lease. Default: 30 s.
	TTL time.Duration
	// Continuous says that the lease is held for good by one replica
	// (others standing by), not taken for each run.
	Continuous bool
	// AlertAfter is the failed attempts in a row after which the lease is
	// reported blocked. Default: 5.
	AlertAfter int
	// LogEvery bounds the lines about failed attempts. Default: 10 min.
	LogEvery time.Duration
	Logger   *slog.Logger
	Metrics  *LeaseMetrics // nil: none

	mu        sync.Mutex
	streak    int   // failed attempts in a row (Continuous: without progress)
	lastPos   int64 // the position at the last failed attempt
	hasPos    bool
	lastLog   time.Time
	lastShown string // the holder last logged
	alerted   bool
}

func (l *Lease) ttl() time.Duration {
	if l.TTL > 0 {
		return l.TTL
	}
	return 30 * time.Second
}

func (l *Lease) logger() *slog.Logger {
	if l.Logger != nil {
		return l.Logger
	}
	return slog.Default()
}

func (l *Lease) count(outcome string) {
	if l.Metrics != nil {
		l.Metrics.attempts.WithLabelValues(l.Name, outcome).Inc()
	}
}

// set sets one of the lease's gauges: held, blocked, foreign or backlog.
func (l *Lease) set(which string, v float64) {
	m := l.Metrics
	if m == nil {
		return
	}
	g := map[string]*prometheus.GaugeVec{"held": m.held, "blocked": m.blocked, "foreign": m.foreign, "backlog": m.backlog}[which]
	g.WithLabelValues(l.Name).Set(v)
}

// flag is 1 for true.
func flag(on bool) float64 {
	if on {
		return 1
	}
	return 0
}

// Run runs fn while holding the lease. It returns an error wrapping
// ErrLease when the lease could not be taken (ErrLeaseHeld: another holder
// has it) or was lost while fn ran (ErrLeaseLost; fn's context is then
// cancelled); else fn's error.
func (l *Lease) Run(ctx context.Context, fn func(context.Context) error) error {
	ttl := l.ttl()
	state, ok, err := l.Store.TakeLease(ctx, l.Name, l.Holder, ttl)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		l.count("error")
		l.noteFailure(nil, err)
		return fmt.Errorf("%w: %w", ErrLease, err)
	}
	if !ok {
		l.count("held_elsewhere")
		l.noteFailure(&state, nil)
		return ErrLeaseHeld
	}
	l.count("taken")
	l.noteTaken()
	l.set("held", 1)
	defer l.set("held", 0)

	work, stop := context.WithCancel(ctx)
	defer stop()
	var lost bool
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		lost = l.renew(work, stop, ttl)
	}()
	err = fn(work)
	stop()
	<-renewed
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if rerr := l.Store.ReleaseLease(rctx, l.Name, l.Holder); rerr != nil {
		l.logger().Warn("lease: could not release; it expires by itself", "lease", l.Name, "ttl", ttl.String(), "error", rerr)
	}
	if lost {
		return ErrLeaseLost
	}
	return err
}

// renew renews the lease every ttl/3 until ctx is done; it stops the work
// and says so when the lease is lost: another holder took it, or no
// renewal succeeded for 2/3 of ttl (the lease may expire before the next).
func (l *Lease) renew(ctx context.Context, stop context.CancelFunc, ttl time.Duration) bool {
	t := time.NewTicker(ttl / 3)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
		state, ok, err := l.Store.TakeLease(ctx, l.Name, l.Holder, ttl)
		switch {
		case err != nil && ctx.Err() != nil:
			return false
		case err != nil:
			l.count("error")
			if time.Since(last) < ttl*2/3 {
				l.logger().Warn("lease: could not renew; trying again", "lease", l.Name, "error", err)
				continue
			}
			l.count("lost")
			l.logger().Warn("lease: could not renew in time; stopping its work before it expires", "lease", l.Name, "error", err)
			stop()
			return true
		case !ok:
			l.count("lost")
			l.logger().Warn("lease: lost to another holder; stopping its work", "lease", l.Name,
				"holder", state.Holder, "holder_role", state.HolderRole)
			stop()
			return true
		}
		l.count("renewed")
		last = time.Now()
	}
}

func (l *Lease) noteTaken() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.streak > 0 || l.alerted {
		l.logger().Info("lease taken", "lease", l.Name, "holder", l.Holder, "after_failed_attempts", l.streak)
	}
	l.streak, l.hasPos, l.alerted, l.lastShown = 0, false, false, ""
	l.set("blocked", 0)
	l.set("foreign", 0)
}

// noteFailure counts a failed attempt (state: the holder's row; err: the
// attempt's error) and logs it, rate-limited; it warns when the lease
// looks blocked or its holder foreign.
func (l *Lease) noteFailure(state *LeaseState, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	logEvery := l.LogEvery
	if logEvery <= 0 {
		logEvery = 10 * time.Minute
	}
	alertAfter := l.AlertAfter
	if alertAfter <= 0 {
		alertAfter = 5
	}
	foreign := state != nil && !state.ServingRole
	switch {
	case state == nil || !l.Continuous:
		l.streak++
	case state.Backlog == 0:
		l.streak = 0 // caught up: standing by is all there is to do
	case !l.hasPos || state.Position != l.lastPos:
		l.streak = 1 // the holder makes progress
	default:
		l.streak++
	}
	if state != nil {
		l.lastPos, l.hasPos = state.Position, true
		if l.Name == LeaseAuditStream {
			l.set("backlog", float64(state.Backlog))
		}
	}
	blocked := l.streak >= alertAfter || foreign
	l.set("blocked", flag(blocked))
	l.set("foreign", flag(foreign))
	if !blocked {
		l.alerted = false
	}

	shown := ""
	if state != nil {
		shown = state.Holder + "\x00" + state.HolderRole
	}
	now := time.Now()
	due := l.lastLog.IsZero() || now.Sub(l.lastLog) >= logEvery || shown != l.lastShown || blocked && !l.alerted
	if !due {
		return
	}
	l.lastLog, l.lastShown = now, shown
	log := l.logger()
	attrs := []any{"lease", l.Name, "failed_attempts", l.streak}
	if state != nil {
		attrs = append(attrs, "holder", state.Holder, "holder_role", state.HolderRole, "expires_at", state.ExpiresAt.UTC().Format(time.RFC3339))
		if l.Name == LeaseAuditStream {
			attrs = append(attrs, "cursor", state.Position, "backlog", state.Backlog)
		}
	}
	switch {
	case err != nil:
		log.Warn("lease: could not be taken (further failures logged once per interval)", append(attrs, "error", err, "interval", logEvery.String())...)
	case foreign:
		l.alerted = true
		log.Warn("lease: held by a database role that is not a keybroker serving role (the tables' owner or a superuser): "+
			"its work may not be done; find the session (pg_stat_activity) and end it", attrs...)
	case blocked:
		l.alerted = true
		what := "lease: could not be taken for several attempts in a row: its holder keeps it; check that the holder is a keybroker replica doing the work"
		if l.Continuous {
			what = "lease: the audit stream's holder has not moved its cursor for several attempts while events wait: the webhook is not receiving the trail; check the holder and the endpoint"
		}
		log.Warn(what, attrs...)
	default:
		log.Info("lease: held by another holder; this replica stands by (logged once per interval)", append(attrs, "interval", logEvery.String())...)
	}
}
