package broker

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Schedules: a scope's rotateAfter is the longest its keys live. The
// lifecycle runner rotates a key older than that (since it joined its
// pool: a rotation adds a new key) where the provider's admin API can
// create keys and the scope holds its admin credential; other keys get
// the expiry warnings only.

// Limits of rotateAfter.
const (
	MinRotateAfter = time.Hour
	MaxRotateAfter = 3650 * 24 * time.Hour
)

// ActionLifecycleSettings is the audit action of a change of a scope's
// lifecycle settings.
const ActionLifecycleSettings = "lifecycle.settings"

// LifecycleSettings are a scope's key lifecycle settings.
type LifecycleSettings struct {
	// RotateAfter is the longest a key of the scope lives before it is
	// rotated; 0: no schedule.
	RotateAfter time.Duration
	UpdatedAt   time.Time
	UpdatedBy   string
}

// LifecycleSettingsStore keeps the scopes' lifecycle settings.
type LifecycleSettingsStore interface {
	// GetLifecycleSettings returns a scope's settings (zero when it has
	// none).
	GetLifecycleSettings(ctx context.Context, scope Scope) (LifecycleSettings, error)
	// PutLifecycleSettings stores them and appends ev, in one
	// transaction.
	PutLifecycleSettings(ctx context.Context, scope Scope, s LifecycleSettings, ev AuditEvent) error
	// ScheduledScopes returns every scope with a RotateAfter.
	ScheduledScopes(ctx context.Context) (map[Scope]LifecycleSettings, error)
}

func (b *Broker) lifecycleStore() (LifecycleSettingsStore, error) {
	if err := b.canManage(); err != nil {
		return nil, err
	}
	ls, ok := b.store.(LifecycleSettingsStore)
	if !ok {
		return nil, fmt.Errorf("%w: the metadata store keeps no lifecycle settings", ErrNotConfigured)
	}
	return ls, nil
}

// LifecycleSettings returns a scope's lifecycle settings.
func (b *Broker) LifecycleSettings(ctx context.Context, scope Scope) (LifecycleSettings, error) {
	ls, err := b.lifecycleStore()
	if err != nil {
		return LifecycleSettings{}, err
	}
	if err := scope.Check(); err != nil {
		return LifecycleSettings{}, err
	}
	s, err := ls.GetLifecycleSettings(ctx, scope)
	return s, fromStore(err)
}

// SetLifecycleSettings sets a scope's rotateAfter (0: no schedule),
// audited.
func (b *Broker) SetLifecycleSettings(ctx context.Context, actor Actor, scope Scope, rotateAfter time.Duration) (LifecycleSettings, error) {
	ls, err := b.lifecycleStore()
	if err != nil {
		return LifecycleSettings{}, err
	}
	if err := scope.Check(); err != nil {
		return LifecycleSettings{}, err
	}
	if rotateAfter != 0 && (rotateAfter < MinRotateAfter || rotateAfter > MaxRotateAfter) {
		return LifecycleSettings{}, refuse(ErrInvalidRequest, "rotateAfter must be from 1 hour to 3650 days (or absent: no schedule)")
	}
	s := LifecycleSettings{RotateAfter: rotateAfter, UpdatedAt: b.now(), UpdatedBy: actor.Subject}
	detail := "rotateAfter=" + FormatRotateAfter(rotateAfter)
	ev := AuditEvent{ScopeKind: scope.Kind, ScopeID: scope.ID, Action: ActionLifecycleSettings, Actor: actor.Subject, RemoteAddr: actor.RemoteAddr,
		RequestID: actor.RequestID, ClientRequestID: actor.ClientRequestID, Outcome: OutcomeSuccess, Detail: detail}
	if err := ls.PutLifecycleSettings(ctx, scope, s, ev); err != nil {
		return LifecycleSettings{}, fromStore(err)
	}
	return s, nil
}

// FormatRotateAfter writes d as the API does: whole days as "<n>d",
// else hours "<n>h"; "" for none.
func FormatRotateAfter(d time.Duration) string {
	switch {
	case d == 0:
		return ""
	case d%(24*time.Hour) == 0:
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return fmt.Sprintf("%dh", d/time.Hour)
}

// ParseRotateAfter reads "<n>d" or "<n>h" ("" is none).
func ParseRotateAfter(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	var n int
	var unit string
	if _, err := fmt.Sscanf(s, "%d%s", &n, &unit); err != nil || n <= 0 || (unit != "d" && unit != "h") || fmt.Sprintf("%d%s", n, unit) != s {
		return 0, refuse(ErrInvalidRequest, `rotateAfter must be a number of days or hours: "90d", "36h"`)
	}
	if unit == "d" {
		return time.Duration(n) * 24 * time.Hour, nil
	}
	return time.Duration(n) * time.Hour, nil
}

// lastRotation is the key's newest rotation (false: none, or the store
// failed).
func (b *Broker) lastRotation(ctx context.Context, ref KeyRef) (Rotation, bool) {
	rs, ok := b.store.(RotationStore)
	if !ok {
		return Rotation{}, false
	}
	rots, err := rs.ListRotations(ctx, ref, 1)
	if err != nil || len(rots) == 0 {
		return Rotation{}, false
	}
	return rots[0], true
}

// RotateDue starts the rotation of every key older than its scope's
// rotateAfter that keybroker can rotate at its provider; it returns how
// many it started. A key whose scope holds no admin credential is logged
// and left (its expiry warnings still go out).
func (b *Broker) RotateDue(ctx context.Context) (int, error) {
	ls, err := b.lifecycleStore()
	if err != nil {
		return 0, err
	}
	if _, err := b.rotationStore(); err != nil {
		return 0, err
	}
	scopes, err := ls.ScheduledScopes(ctx)
	if err != nil {
		return 0, fromStore(err)
	}
	started := 0
	var errs []error
	now := b.now()
	for scope, s := range scopes {
		recs, err := b.store.ListKeys(ctx, scope)
		if err != nil {
			errs = append(errs, fromStore(err))
			continue
		}
		startedHere := 0
		for _, r := range recs {
			p, ok := b.providers.Lookup(r.Provider)
			if !ok || p.KeyAdmin == nil || p.KeyAdmin.Create == nil || r.Disabled || now.Sub(r.CreatedAt) < s.RotateAfter {
				continue
			}
			if startedHere >= maxLifecycleWorkPerScope {
				break // the rest at the next pass
			}
			if last, ok := b.lastRotation(ctx, r.Ref()); ok && last.Trigger == TriggerSchedule &&
				(last.State == RotationRolledBack || last.State == RotationFailed) && !r.UpdatedAt.After(last.UpdatedAt) {
				// The schedule's last rotation of the key did not go
				// through: not again until an admin acts (changes the
				// key, rotates it by hand).
				b.log.DebugContext(ctx, "a key is due for rotation, but its last scheduled rotation ended "+last.State, "key", r.Ref().String(), "rotation", last.ID)
				continue
			}
			startedHere++
			_, err := b.Rotate(ctx, RotateRequest{Actor: Actor{Subject: "keybroker:schedule"}, Ref: r.Ref(), Trigger: TriggerSchedule})
			switch {
			case err == nil:
				started++
			case errors.Is(err, ErrConflict):
				// A rotation of the key runs already.
			case errors.Is(err, ErrInvalidRequest):
				// No admin credential in the scope: the key gets the
				// expiry warnings only (said at debug level, every pass).
				b.log.DebugContext(ctx, "a key is due for rotation but cannot be rotated", "key", r.Ref().String(), "why", err)
			default:
				errs = append(errs, fmt.Errorf("scheduled rotation of %s: %w", r.Ref(), err))
			}
		}
	}
	return started, errors.Join(errs...)
}
