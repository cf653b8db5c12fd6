package broker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/keybroker/keybroker/ids"
	"github.com/keybroker/keybroker/providers"
)

// Rotation at the provider (docs/lifecycle.md). Where a provider's admin
// API can create keys (OpenAI: project service accounts) and the key's
// scope holds the admin credential, a rotation
//
//	create      creates a key at the provider, named after the rotation
//	verify      asks the provider whether it accepts the new key
//	store       puts it in the pool, at the old key's priority
//	disable_old sets the old key aside (it no longer serves)
//	grace       waits for the grace period (calls in flight finish)
//	delete_old  deletes the old key at the provider, then from the pool
//
// Each step is recorded in PostgreSQL, and audited, before it is taken,
// so that after a crash ResumeRotations knows what may have happened:
// the new key lives only in memory between create and store, so a
// rotation found at create, verify or store (the key not stored) deletes
// at the provider whatever it created (found by its name at create, by
// its id after) and creates again; from store on, every step is
// idempotent and is taken again. No key is ever left at the provider
// without keybroker's record of it.

// Rotation steps and states.
const (
	StepCreate     = "create"
	StepVerify     = "verify"
	StepStore      = "store"
	StepDisableOld = "disable_old"
	StepGrace      = "grace"
	StepDeleteOld  = "delete_old"
	StepRollback   = "rollback"
	StepDone       = "done"

	RotationRunning    = "running"
	RotationDone       = "done"
	RotationFailed     = "failed"
	RotationRolledBack = "rolled_back"

	TriggerManual   = "manual"
	TriggerSchedule = "schedule"

	// ActionRotation is the audit action of each step of a rotation at
	// the provider.
	ActionRotation = "key.rotation"
)

// ErrRotationRunning: the key has a rotation running (one at a time).
var ErrRotationRunning = errors.Join(ErrConflict, errors.New("a rotation of this key is running"))

// DefaultRotationGrace is how long the old key lives at the provider
// after the new one serves.
const DefaultRotationGrace = time.Hour

// DefaultRotationClaim is how long a replica holds a running rotation
// between two steps: a rotation not advanced for that long is resumed by
// the lifecycle runner (its replica died).
const DefaultRotationClaim = 2 * time.Minute

// Rotation is a rotation at the provider as PostgreSQL records it.
type Rotation struct {
	ID string
	// Ref is the key rotated; NewKeyID the key that replaces it in the
	// pool; AdminKeyID the admin credential's key id (in the pool of the
	// provider's admin provider, same scope).
	Ref        KeyRef
	NewKeyID   string
	AdminKeyID string
	Trigger    string
	// Step is the step about to be taken (or taken last); State running,
	// done, failed or rolled_back.
	Step, State string
	// AccountName names the key at the provider (OpenAI: the service
	// account), so that a key created before a crash is found again.
	AccountName string
	// NewProviderKeyID and OldProviderKeyID are the keys' ids at the
	// provider ("" when unknown).
	NewProviderKeyID, OldProviderKeyID string
	Grace                              time.Duration
	DeleteAfter                        time.Time
	ClaimedUntil                       time.Time
	// Error says why a rotation failed or rolled back, or what it could
	// not do at the provider (never a key).
	Error string
	// Attempts counts the failed attempts of the current step: each
	// pushes the next back (ClaimedUntil); maxRotationAttempts end the
	// rotation failed.
	Attempts  int
	StartedBy string
	StartedAt time.Time
	UpdatedAt time.Time
	// SigKeyID and Signature sign the ids the rotation acts on
	// (LifecycleSigner): a row without a valid signature is not acted on.
	SigKeyID  string
	Signature []byte
}

// RotationStore keeps the rotations.
type RotationStore interface {
	// StartRotation records a new rotation and appends ev, in one
	// transaction: ErrConflict when the key has a rotation running.
	StartRotation(ctx context.Context, r Rotation, ev AuditEvent) error
	// RecordRotation stores r's step, state and fields and appends ev,
	// in one transaction.
	// It records only over the row as from says it was (its step and
	// claim when this replica read or last wrote it): ErrConflict when
	// another replica advanced the rotation meanwhile.
	RecordRotation(ctx context.Context, r Rotation, from RotationFrom, ev AuditEvent) error
	GetRotation(ctx context.Context, id string) (Rotation, error)
	// ListRotations returns the key's rotations, newest first.
	ListRotations(ctx context.Context, ref KeyRef, limit int) ([]Rotation, error)
	// RunningRotations returns every running rotation.
	RunningRotations(ctx context.Context) ([]Rotation, error)
}

// RotationFrom is a rotation's step and claim as a replica last saw them:
// RecordRotation writes over that row only.
type RotationFrom struct {
	Step         string
	ClaimedUntil time.Time
}

// crashError is the error of the test hook (a simulated crash): the
// rotation stops where it is, as a killed process would.
type crashError struct{ point string }

func (e crashError) Error() string { return "rotation stopped at " + e.point + " (test hook)" }

// RotateRequest asks Rotate to rotate key Ref at its provider.
type RotateRequest struct {
	Actor Actor
	Ref   KeyRef
	// Grace is how long the old key lives at the provider after the new
	// one serves; 0: DefaultRotationGrace.
	Grace   time.Duration
	Trigger string
}

// Rotate rotates a key at its provider, up to the grace period: the new
// key serves when it returns; the lifecycle runner (RunLifecycle)
// deletes the old key once the grace period is over. It needs the
// writer identity (it reads the admin credential) and the scope's admin
// credential for the provider.
func (b *Broker) Rotate(ctx context.Context, req RotateRequest) (Rotation, error) {
	rs, err := b.rotationStore()
	if err != nil {
		return Rotation{}, err
	}
	p, err := b.keyProvider(req.Ref)
	if err != nil {
		return Rotation{}, err
	}
	if p.KeyAdmin == nil || p.KeyAdmin.Create == nil {
		return Rotation{}, refuse(ErrInvalidRequest, "%s keys cannot be rotated at the provider by keybroker (its admin API cannot create keys): they get expiry warnings only", p.DisplayName)
	}
	if req.Grace < 0 || req.Grace > 7*24*time.Hour {
		return Rotation{}, refuse(ErrInvalidRequest, "the grace period must be from 0 to 7 days")
	}
	if req.Grace == 0 {
		req.Grace = b.rotationGrace
	}
	if req.Trigger == "" {
		req.Trigger = TriggerManual
	}
	old, err := b.store.GetKey(ctx, req.Ref)
	if errors.Is(err, ErrNotFound) {
		return Rotation{}, fmt.Errorf("rotate %s: %w: no such key", req.Ref, ErrNotFound)
	}
	if err != nil {
		return Rotation{}, fmt.Errorf("rotate %s: %w", req.Ref, fromStore(err))
	}
	adminRef, admin, err := b.adminCredential(ctx, req.Ref.Owner(), p)
	if err != nil {
		return Rotation{}, fmt.Errorf("rotate %s: %w", req.Ref, err)
	}
	// The old key's id must be one the admin credential governs: its
	// deletion after the grace period takes a 404 for "gone".
	if err := checkProviderKeyID(p, old.ProviderKeyID); err != nil {
		return Rotation{}, err
	}
	if old.ProviderKeyID != "" {
		if _, err := b.locate(ctx, p, admin, old.ProviderKeyID); errors.Is(err, errNotGoverned) {
			return Rotation{}, refuse(ErrInvalidRequest, "%s does not know the key %s with the scope's %s credential (a key of another project or organization?): correct providerKeyId or the admin credential; nothing was done",
				p.DisplayName, old.ProviderKeyID, p.KeyAdmin.Provider)
		} else if err != nil {
			return Rotation{}, fmt.Errorf("rotate %s: %w", req.Ref, errors.Join(ErrUnavailable, err))
		}
	}
	now := b.now()
	id := newUUID()
	r := Rotation{ID: id, Ref: req.Ref, NewKeyID: rotatedKeyID(req.Ref.KeyID, id), AdminKeyID: adminRef.KeyID, Trigger: req.Trigger,
		Step: StepCreate, State: RotationRunning, AccountName: "keybroker-" + id[:8] + "-" + req.Ref.KeyID,
		OldProviderKeyID: old.ProviderKeyID, Grace: req.Grace, ClaimedUntil: now.Add(b.rotationClaim), StartedBy: req.Actor.Subject,
		StartedAt: now, UpdatedAt: now}
	if len(r.AccountName) > 100 {
		r.AccountName = r.AccountName[:100]
	}
	ev := b.rotationEvent(r, req.Actor, fmt.Sprintf("started (%s): the new key will be %s; grace period %s", r.Trigger, r.NewKeyID, r.Grace))
	if err := b.signRotation(&r); err != nil {
		return Rotation{}, fmt.Errorf("rotate %s: %w", req.Ref, err)
	}
	if err := rs.StartRotation(ctx, r, ev); errors.Is(err, ErrConflict) {
		return Rotation{}, fmt.Errorf("rotate %s: %w", req.Ref, ErrRotationRunning)
	} else if err != nil {
		return Rotation{}, fmt.Errorf("rotate %s: %w", req.Ref, fromStore(err))
	}
	b.log.InfoContext(ctx, "rotation started", "key", req.Ref.String(), "rotation", r.ID, "actor", req.Actor.Subject)
	if err := b.hook("before:" + StepCreate); err != nil {
		return r, err
	}
	return b.advance(ctx, rs, r, req.Actor)
}

// rotatedKeyID names the key that replaces keyID: keyID without an
// earlier rotation's suffix, then "-r" and 6 hex digits of the rotation.
func rotatedKeyID(keyID, rotationID string) string {
	base := keyID
	if i := strings.LastIndex(base, "-r"); i > 0 && len(base)-i == 8 {
		base = base[:i]
	}
	suffix := "-r" + rotationID[:6]
	if len(base)+len(suffix) > 63 {
		base = base[:63-len(suffix)]
	}
	if !ids.Valid(base + suffix) {
		return "key" + suffix
	}
	return base + suffix
}

func newUUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func (b *Broker) rotationStore() (RotationStore, error) {
	if err := b.canManage(); err != nil {
		return nil, err
	}
	rs, ok := b.store.(RotationStore)
	if !ok {
		return nil, fmt.Errorf("%w: the metadata store keeps no rotations", ErrNotConfigured)
	}
	if b.adminReader() == nil {
		return nil, fmt.Errorf("%w: rotation and revocation at the provider read the admin credential with the Vault writer identity (--mode=admin or all)", ErrNotConfigured)
	}
	if b.adminEnv == nil {
		return nil, fmt.Errorf("%w: no provider checker, whose HTTP client calls the admin APIs", ErrNotConfigured)
	}
	return rs, nil
}

// adminCredential is the admin credential of p's admin API that scope
// holds: the first active key (by priority) of the scope's pool of the
// admin provider.
func (b *Broker) adminCredential(ctx context.Context, scope Scope, p *providers.Provider) (KeyRef, providers.Credential, error) {
	if p.KeyAdmin == nil {
		return KeyRef{}, providers.Credential{}, refuse(ErrInvalidRequest, "%s has no admin API keybroker uses", p.DisplayName)
	}
	recs, err := b.store.ListKeys(ctx, scope)
	if err != nil {
		return KeyRef{}, providers.Credential{}, fromStore(err)
	}
	now := b.now()
	for _, r := range recs {
		if r.Provider != p.KeyAdmin.Provider || r.Disabled || expiryOf(r.ExpiresAt, now, 0) == ExpiryExpired {
			continue
		}
		ref := r.Ref()
		c, _, err := b.readCredential(ctx, ref.Provider, ref.VaultPath(), 0)
		if err != nil {
			return KeyRef{}, providers.Credential{}, fmt.Errorf("read the admin credential %s: %w", ref, fromVault(err))
		}
		return ref, c, nil
	}
	return KeyRef{}, providers.Credential{}, refuse(ErrInvalidRequest, "%s holds no active %s credential: add one (provider %s) first",
		scope, p.KeyAdmin.Provider, p.KeyAdmin.Provider)
}

// adminOf reads the admin credential a rotation recorded.
func (b *Broker) adminOf(ctx context.Context, r Rotation) (*providers.Provider, providers.AdminEnv, providers.Credential, error) {
	p, ok := b.providers.Lookup(r.Ref.Provider)
	if !ok || p.KeyAdmin == nil {
		return nil, providers.AdminEnv{}, providers.Credential{}, fmt.Errorf("%w: %s has no admin API", ErrUnknownProvider, r.Ref.Provider)
	}
	ap, ok := b.providers.Lookup(p.KeyAdmin.Provider)
	if !ok {
		return nil, providers.AdminEnv{}, providers.Credential{}, fmt.Errorf("%w: %s", ErrUnknownProvider, p.KeyAdmin.Provider)
	}
	ref := r.Ref.Owner().Key(ap.ID, r.AdminKeyID)
	c, _, err := b.readCredential(ctx, ap.ID, ref.VaultPath(), 0)
	if err != nil {
		return nil, providers.AdminEnv{}, providers.Credential{}, fmt.Errorf("read the admin credential %s: %w", ref, fromVault(err))
	}
	return p, b.adminEnv.AdminEnv(ap), c, nil
}

// AdminEnvs gives the admin APIs' addresses and HTTP client
// (providers.Checker).
type AdminEnvs interface {
	AdminEnv(p *providers.Provider) providers.AdminEnv
}

var _ AdminEnvs = (*providers.Checker)(nil)

func (b *Broker) rotationEvent(r Rotation, actor Actor, detail string) AuditEvent {
	return AuditEvent{ScopeKind: r.Ref.ScopeKind, ScopeID: r.Ref.ScopeID, Provider: r.Ref.Provider, KeyID: r.Ref.KeyID,
		Action: ActionRotation, Actor: actor.Subject, RemoteAddr: actor.RemoteAddr, RequestID: actor.RequestID,
		ClientRequestID: actor.ClientRequestID, Outcome: OutcomeSuccess, Detail: "rotation " + r.ID + ": " + detail}
}

// record moves r to step (recorded and audited before it is taken).
func (b *Broker) record(ctx context.Context, rs RotationStore, r *Rotation, actor Actor, step, detail string) error {
	from := RotationFrom{Step: r.Step, ClaimedUntil: r.ClaimedUntil}
	now := b.now()
	r.Step, r.UpdatedAt, r.ClaimedUntil, r.Attempts = step, now, now.Add(b.rotationClaim), 0
	ev := b.rotationEvent(*r, actor, "step "+step+": "+detail)
	if r.State != RotationRunning {
		ev.Outcome = r.State
	}
	if err := b.signRotation(r); err != nil {
		return err
	}
	if err := rs.RecordRotation(ctx, *r, from, ev); err != nil {
		r.Step, r.ClaimedUntil = from.Step, from.ClaimedUntil
		return fmt.Errorf("record step %s of rotation %s: %w", step, r.ID, fromStore(err))
	}
	return b.hook("before:" + step)
}

// hook runs the test hook at point (Config.RotationHook).
func (b *Broker) hook(point string) error {
	if b.rotationHook == nil {
		return nil
	}
	if b.rotationHook(point) {
		return crashError{point: point}
	}
	return nil
}

// IsSimulatedCrash says whether err is a stop of Config.RotationHook.
func IsSimulatedCrash(err error) bool { return errors.As(err, new(crashError)) }

// advance takes r's steps from its current one until it is done, failed,
// rolled back, or waiting for its grace period.
func (b *Broker) advance(ctx context.Context, rs RotationStore, r Rotation, actor Actor) (Rotation, error) {
	if !b.rotationTrusted(ctx, r) {
		return r, fmt.Errorf("rotation %s: %w: its row has no valid signature (written outside keybroker): not acted on", r.ID, ErrPreconditionFailed)
	}
	p, env, admin, err := b.adminOf(ctx, r)
	if err != nil {
		return r, fmt.Errorf("rotation %s: %w", r.ID, err)
	}
	run := &rotationRun{b: b, rs: rs, r: &r, actor: actor, p: p, ka: p.KeyAdmin, env: env, admin: admin,
		newRef: r.Ref.Owner().Key(r.Ref.Provider, r.NewKeyID)}
	for {
		var wait bool
		switch r.Step {
		case StepCreate:
			err = run.create(ctx)
		case StepVerify, StepStore:
			switch {
			case run.created.IsZero():
				err = run.lost(ctx)
			case r.Step == StepVerify:
				err = run.verify(ctx)
			default:
				err = run.store(ctx)
			}
		case StepDisableOld:
			err = run.disableOld(ctx)
		case StepGrace:
			wait, err = run.grace(ctx)
		case StepDeleteOld:
			err = run.deleteOld(ctx)
		case StepRollback:
			return r, run.rollback(ctx, r.Error)
		default: // done
			return r, nil
		}
		if err != nil || wait {
			return r, err
		}
	}
}

// rotationRun is one replica's run of a rotation's steps.
type rotationRun struct {
	b      *Broker
	rs     RotationStore
	r      *Rotation
	actor  Actor
	p      *providers.Provider
	ka     *providers.KeyAdmin
	env    providers.AdminEnv
	admin  providers.Credential
	newRef KeyRef
	// created is the new key: in memory only, from create to store.
	created providers.Credential
}

func (run *rotationRun) next(ctx context.Context, step, detail string) error {
	return run.b.record(ctx, run.rs, run.r, run.actor, step, detail)
}

func (run *rotationRun) failed(ctx context.Context, cause error) error {
	return run.b.stepFailed(ctx, run.rs, run.r, run.actor, cause)
}

func (run *rotationRun) rollback(ctx context.Context, why string) error {
	return run.b.rollback(ctx, run.rs, run.r, run.actor, run.ka, run.env, run.admin, why)
}

// create deletes any key a crash left under the rotation's name (it has
// no record), then creates the new key at the provider.
func (run *rotationRun) create(ctx context.Context) error {
	r := run.r
	found, err := run.ka.Find(ctx, run.env, run.admin, r.AccountName)
	if err != nil {
		return run.failed(ctx, err)
	}
	for _, id := range found {
		if _, err := run.ka.Revoke(ctx, run.env, run.admin, id); err != nil {
			return run.failed(ctx, err)
		}
		run.b.log.InfoContext(ctx, "rotation: deleted a key created before a crash", "rotation", r.ID, "provider_key_id", id)
	}
	ck, err := run.ka.Create(ctx, run.env, run.admin, r.AccountName)
	if err != nil {
		return run.failed(ctx, err)
	}
	if err := run.b.hook("after:" + StepCreate); err != nil {
		return err
	}
	run.created, r.NewProviderKeyID = ck.Credential, ck.ID
	return run.next(ctx, StepVerify, fmt.Sprintf("created %s at the provider", ck.ID))
}

// lost handles a run resumed at verify or store, whose new key a crash
// took from memory: stored already, the rotation goes on; else the key is
// deleted at the provider and made again.
func (run *rotationRun) lost(ctx context.Context) error {
	r := run.r
	if r.Step == StepStore {
		stored, err := run.b.ensureStored(ctx, run.newRef)
		if err != nil {
			return err
		}
		if stored {
			return run.next(ctx, StepDisableOld, "the new key was stored before the restart")
		}
	}
	if err := run.b.revokeCreated(ctx, run.ka, run.env, run.admin, r.NewProviderKeyID); err != nil {
		return run.failed(ctx, err)
	}
	r.NewProviderKeyID = ""
	return run.next(ctx, StepCreate, "the new key was lost before it was stored (a restart): deleted at the provider, made again")
}

// verify asks the provider whether it accepts the new key; a refusal
// rolls the rotation back.
func (run *rotationRun) verify(ctx context.Context) error {
	res := run.b.check(ctx, run.p, run.created)
	if err := run.b.hook("after:" + StepVerify); err != nil {
		return err
	}
	if res.Verdict != providers.VerdictAccepted {
		return run.rollback(ctx, "the provider did not accept the new key: "+res.Detail)
	}
	return run.next(ctx, StepStore, "the provider accepted the new key")
}

// store puts the new key in the pool at the old key's priority, with its
// name and models.
func (run *rotationRun) store(ctx context.Context) error {
	r := run.r
	old, err := run.b.store.GetKey(ctx, r.Ref)
	if err != nil {
		return run.rollback(ctx, "the old key's settings could not be read: "+err.Error())
	}
	_, err = run.b.AddKey(ctx, AddKeyRequest{Actor: run.actor, Pool: r.Ref.Pool(), KeyID: r.NewKeyID, Credential: run.created, Name: old.Name,
		Priority: &old.Priority, Models: old.Models, ProviderKeyID: r.NewProviderKeyID})
	if errors.Is(err, ErrKeyExists) {
		// Stored already by this rotation (a write a crash interrupted)
		// only if it names the account this rotation created: another
		// key of that id is not the new key, and the new account would
		// be left at the provider with no key of keybroker's holding it.
		if have, gerr := run.b.store.GetKey(ctx, run.newRef); gerr != nil || have.ProviderKeyID != r.NewProviderKeyID {
			return run.rollback(ctx, "the pool holds another key of id "+r.NewKeyID+": the new key was not stored")
		}
		err = nil
	}
	if err != nil {
		return run.rollback(ctx, "the new key could not be stored: "+err.Error())
	}
	run.created = providers.Credential{}
	if err := run.b.hook("after:" + StepStore); err != nil {
		return err
	}
	return run.next(ctx, StepDisableOld, fmt.Sprintf("%s serves at priority %d", r.NewKeyID, old.Priority))
}

// disableOld sets the old key aside and starts the grace period.
func (run *rotationRun) disableOld(ctx context.Context) error {
	r := run.r
	disabled := KeyDisabled
	if _, err := run.b.UpdateKey(ctx, UpdateKeyRequest{Actor: run.actor, Ref: r.Ref, State: &disabled}); err != nil && !errors.Is(err, ErrNotFound) {
		return run.failed(ctx, err)
	}
	if err := run.b.hook("after:" + StepDisableOld); err != nil {
		return err
	}
	r.DeleteAfter = run.b.now().Add(r.Grace)
	return run.next(ctx, StepGrace, "the old key is disabled; deleted at the provider after "+r.DeleteAfter.UTC().Format(time.RFC3339))
}

// grace says whether the grace period still runs (the lifecycle runner
// takes the rotation up then), else moves on.
func (run *rotationRun) grace(ctx context.Context) (wait bool, err error) {
	if run.b.now().Before(run.r.DeleteAfter) {
		return true, nil
	}
	return false, run.next(ctx, StepDeleteOld, "the grace period is over")
}

// deleteOld deletes the old key at the provider (when its id there is
// known), then from the pool, and ends the rotation.
func (run *rotationRun) deleteOld(ctx context.Context) error {
	r := run.r
	note := "the old key's id at the provider is unknown: delete it there by hand"
	if r.OldProviderKeyID != "" {
		rv, err := run.ka.Revoke(ctx, run.env, run.admin, r.OldProviderKeyID)
		if err != nil {
			return run.failed(ctx, err)
		}
		note = fmt.Sprintf("the old key %s at the provider", rv.Action)
	} else {
		r.Error = note
	}
	if err := run.b.hook("after:" + StepDeleteOld + ":provider"); err != nil {
		return err
	}
	if err := run.b.DeleteKey(ctx, DeleteKeyRequest{Actor: run.actor, Ref: r.Ref}); err != nil && !errors.Is(err, ErrNotFound) {
		return run.failed(ctx, err)
	}
	if err := run.b.hook("after:" + StepDeleteOld); err != nil {
		return err
	}
	r.State = RotationDone
	if err := run.next(ctx, StepDone, note+"; the old key removed from the pool"); err != nil {
		return err
	}
	run.b.metrics.rotated(r.Ref.Provider, RotationDone)
	run.b.log.InfoContext(ctx, "rotation done", "key", r.Ref.String(), "rotation", r.ID, "new_key", r.NewKeyID)
	return nil
}

// revokeCreated deletes the key a rotation created at the provider
// ("": none recorded).
func (b *Broker) revokeCreated(ctx context.Context, ka *providers.KeyAdmin, env providers.AdminEnv, admin providers.Credential, id string) error {
	if id == "" {
		return nil
	}
	_, err := ka.Revoke(ctx, env, admin, id)
	return err
}

// ensureStored says whether the new key is in its pool, finishing or
// undoing a write a crash interrupted (as the reconciler does).
func (b *Broker) ensureStored(ctx context.Context, ref KeyRef) (bool, error) {
	if _, err := b.store.GetKey(ctx, ref); err == nil {
		return true, nil
	}
	pending, err := b.store.ListPending(ctx, 0)
	if err != nil {
		return false, fromStore(err)
	}
	for _, rec := range pending {
		if rec.Ref() == ref {
			if err := b.reconcileOne(ctx, rec, &ReconcileReport{}); err != nil {
				return false, err
			}
		}
	}
	_, err = b.store.GetKey(ctx, ref)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, fromStore(err)
}

// maxRotationAttempts is how many times a step is tried before its
// rotation ends failed (an admin acts: fixes the admin credential, starts
// another rotation); maxRotationBackoff bounds the wait between two.
const (
	// maxLifecycleWorkPerScope bounds what one pass of the lifecycle
	// runner does for one scope (rotations resumed, scheduled rotations
	// started, revocations retried, each): one tenant cannot slow the
	// runner for every other.
	maxLifecycleWorkPerScope = 3

	maxRotationAttempts = 8
	maxRotationBackoff  = 30 * time.Minute
)

// stepFailed records a step's failure and returns it: the rotation stays
// running, tried again by the lifecycle runner after a backoff (the
// claim, doubling from --rotation-claim to 30 minutes), until the step
// has failed maxRotationAttempts times: then it ends failed, saying what
// it leaves behind.
func (b *Broker) stepFailed(ctx context.Context, rs RotationStore, r *Rotation, actor Actor, cause error) error {
	from := RotationFrom{Step: r.Step, ClaimedUntil: r.ClaimedUntil}
	r.Error = truncateText(cause.Error(), 400)
	r.Attempts++
	now := b.now()
	r.UpdatedAt = now
	r.ClaimedUntil = now.Add(min(maxRotationBackoff, b.rotationClaim<<min(r.Attempts-1, 10)))
	ev := b.rotationEvent(*r, actor, fmt.Sprintf("step %s failed (attempt %d of %d; tried again after %s): %s", r.Step, r.Attempts,
		maxRotationAttempts, r.ClaimedUntil.UTC().Format(time.RFC3339), r.Error))
	if r.Attempts >= maxRotationAttempts {
		r.State = RotationFailed
		r.Error = truncateText(fmt.Sprintf("failed %d times at step %s (%s): %s", r.Attempts, r.Step, leftBehind(r), r.Error), 400)
		ev = b.rotationEvent(*r, actor, "failed: "+r.Error)
		b.metrics.rotated(r.Ref.Provider, RotationFailed)
	}
	ev.Outcome = OutcomeError
	if err := b.signRotation(r); err != nil {
		b.log.WarnContext(ctx, "could not sign a rotation step's failure", "rotation", r.ID, "error", err)
	} else if err := rs.RecordRotation(ctx, *r, from, ev); err != nil {
		b.log.WarnContext(ctx, "could not record a rotation step's failure", "rotation", r.ID, "error", err)
	}
	return fmt.Errorf("rotation %s, step %s: %w", r.ID, r.Step, errors.Join(ErrUnavailable, cause))
}

// leftBehind says what a rotation that fails at its step leaves for an
// admin to finish.
func leftBehind(r *Rotation) string {
	switch r.Step {
	case StepCreate, StepVerify, StepStore:
		return fmt.Sprintf("the old key serves; an account named %q may be left at the provider", r.AccountName)
	case StepRollback:
		return fmt.Sprintf("the old key serves; the new account %s may be left at the provider", r.NewProviderKeyID)
	case StepDisableOld:
		return "both keys are in the pool"
	default:
		return fmt.Sprintf("the new key serves; the old key %s is still at the provider and in the pool, disabled", r.OldProviderKeyID)
	}
}

// rollback deletes the new key at the provider (and from the pool) and
// ends the rotation rolled back: the old key serves as before.
func (b *Broker) rollback(ctx context.Context, rs RotationStore, r *Rotation, actor Actor, ka *providers.KeyAdmin, env providers.AdminEnv,
	admin providers.Credential, why string) error {
	r.Error = truncateText(why, 400)
	if r.Step != StepRollback {
		if err := b.record(ctx, rs, r, actor, StepRollback, why); err != nil {
			return err
		}
	}
	if err := b.revokeCreated(ctx, ka, env, admin, r.NewProviderKeyID); err != nil {
		return b.stepFailed(ctx, rs, r, actor, err)
	}
	// The new key is removed from the pool only if it is this rotation's
	// (it names the account made): a key of that id someone else added
	// stays.
	newRef := r.Ref.Owner().Key(r.Ref.Provider, r.NewKeyID)
	if have, err := b.store.GetKey(ctx, newRef); err == nil && have.ProviderKeyID != r.NewProviderKeyID {
		b.log.WarnContext(ctx, "rotation rollback: the pool holds another key of the new key's id; left alone", "rotation", r.ID, "key", newRef.String())
	} else if err := b.DeleteKey(ctx, DeleteKeyRequest{Actor: actor, Ref: newRef, Destroy: true}); err != nil && !errors.Is(err, ErrNotFound) {
		return b.stepFailed(ctx, rs, r, actor, err)
	}
	r.State = RotationRolledBack
	if err := b.record(ctx, rs, r, actor, StepDone, "rolled back: the new key deleted at the provider; the old key serves"); err != nil {
		return err
	}
	b.metrics.rotated(r.Ref.Provider, RotationRolledBack)
	return fmt.Errorf("rotation %s rolled back: %w", r.ID, refuse(ErrVerificationFailed, "%s", why))
}

func truncateText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// ResumeRotations takes up every running rotation whose replica stopped
// advancing it (its claim expired: a crash, a restart) and every one
// whose grace period is over. It returns how many it finished.
func (b *Broker) ResumeRotations(ctx context.Context) (int, error) {
	rs, err := b.rotationStore()
	if err != nil {
		return 0, err
	}
	running, err := rs.RunningRotations(ctx)
	if err != nil {
		return 0, fromStore(err)
	}
	now, done := b.now(), 0
	var errs []error
	perScope := map[Scope]int{}
	for _, r := range running {
		if r.Step == StepGrace && now.Before(r.DeleteAfter) || r.Step != StepGrace && now.Before(r.ClaimedUntil) {
			continue
		}
		if !b.rotationTrusted(ctx, r) {
			continue // reported once; never acted on
		}
		// One scope's rotations cannot take the whole pass: the rest wait
		// for the next one.
		if perScope[r.Ref.Owner()]++; perScope[r.Ref.Owner()] > maxLifecycleWorkPerScope {
			continue
		}
		actor := Actor{Subject: "keybroker:rotation"}
		if r.Trigger == TriggerManual {
			actor.Subject = r.StartedBy
		}
		b.log.InfoContext(ctx, "resuming a rotation", "rotation", r.ID, "key", r.Ref.String(), "step", r.Step)
		out, err := b.advance(ctx, rs, r, actor)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if out.State != RotationRunning {
			done++
		}
	}
	return done, errors.Join(errs...)
}

// Rotations returns a key's rotations, newest first.
func (b *Broker) Rotations(ctx context.Context, ref KeyRef) ([]Rotation, error) {
	if err := b.canManage(); err != nil {
		return nil, err
	}
	if _, err := b.keyProvider(ref); err != nil {
		return nil, err
	}
	rs, ok := b.store.(RotationStore)
	if !ok {
		return nil, fmt.Errorf("%w: the metadata store keeps no rotations", ErrNotConfigured)
	}
	out, err := rs.ListRotations(ctx, ref, 20)
	return out, fromStore(err)
}
