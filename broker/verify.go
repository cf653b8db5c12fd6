package broker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/keybroker/keybroker/providers"
	"github.com/keybroker/keybroker/vault"
)

// A workspace reporting that the provider refused a key it does not own
// (unauthorized, forbidden, quota_exceeded about its organization's key or
// the hosted key), and the proxy seeing the provider refuse a call whose
// endpoint and body the caller chose (about any key, the workspace's own
// included), are not believed on their word: keybroker asks the provider
// itself, with the key check of tests and the prober, and marks the key
// failing for everyone only if the provider refuses it. Meanwhile (and
// whatever the check says) the reporting workspace, or the calling token,
// alone stops being served the key, for a cooldown.

// Verification bounds: checks after reports run at most
// maxVerifications at a time (besides the checker's own bound); one key
// is checked at most once per verifyEvery on a replica, whoever reports
// it, and one key and version once at a time.
const (
	maxVerifications = 4
	verifyEvery      = time.Minute
	// maxVerified bounds the keys whose last check is remembered.
	maxVerified = 10_000
)

// ActorVerifier is the audit actor of keybroker's own checks after a
// report about a shared key or a refusal the proxy saw.
const ActorVerifier = "keybroker:verify"

type verifyKey struct {
	ref     KeyRef
	version int
}

// verifier deduplicates, rate-limits and bounds the checks after reports.
type verifier struct {
	mu       sync.Mutex
	inflight map[verifyKey]bool
	last     map[KeyRef]time.Time
	slots    chan struct{}
	wg       sync.WaitGroup
}

func newVerifier() verifier {
	return verifier{inflight: map[verifyKey]bool{}, last: map[KeyRef]time.Time{}, slots: make(chan struct{}, maxVerifications)}
}

// take reserves a check of ref at version at now: false when one is in
// flight, when ref was checked less than verifyEvery ago, or when every
// slot is busy. The caller runs the check and calls done.
func (v *verifier) take(k verifyKey, now time.Time) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.inflight[k] {
		return false
	}
	if at, ok := v.last[k.ref]; ok && now.Sub(at) < verifyEvery {
		return false
	}
	select {
	case v.slots <- struct{}{}:
	default:
		return false
	}
	if len(v.last) >= maxVerified {
		for ref, at := range v.last {
			if now.Sub(at) >= verifyEvery {
				delete(v.last, ref)
			}
		}
		if len(v.last) >= maxVerified { // all recent: forget any one
			for ref := range v.last {
				delete(v.last, ref)
				break
			}
		}
	}
	v.inflight[k], v.last[k.ref] = true, now
	v.wg.Add(1)
	return true
}

func (v *verifier) done(k verifyKey) {
	v.mu.Lock()
	delete(v.inflight, k)
	v.mu.Unlock()
	<-v.slots
	v.wg.Done()
}

// WaitVerifications waits until the provider checks that reports started
// have finished, or ctx ends (tests; a replica shutting down).
func (b *Broker) WaitVerifications(ctx context.Context) error {
	done := make(chan struct{})
	go func() { b.verifier.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for the checks after reports: %w", ctx.Err())
	}
}

// verifyReported starts, in the background, keybroker's own check of a
// key reported refused (req.Outcome): a shared key by res's workspace, or
// any key by the proxy about a call of req.Caller. It says
// whether a check was started: not when this broker cannot check (no
// reader identity or checker), nor when the verifier's bounds skip it.
func (b *Broker) verifyReported(ctx context.Context, res Resolved, req ReportRequest) bool {
	if b.reader == nil || b.checker == nil || b.health == nil {
		return false
	}
	p, ok := b.providers.Lookup(res.Ref.Provider)
	if !ok {
		return false
	}
	k := verifyKey{ref: res.Ref, version: res.Version}
	if !b.verifier.take(k, b.now()) {
		return false
	}
	ctx = context.WithoutCancel(ctx)
	go func() {
		defer b.verifier.done(k)
		if err := b.verify1(ctx, p, res, req); err != nil {
			b.log.WarnContext(ctx, "could not check a key reported refused", "key", res.Ref.String(), "error", err)
		}
	}()
	return true
}

// verify1 reads the key, asks the provider, and marks it failing if the
// provider refuses it; a key since rotated to another version is not
// checked (its new value starts healthy). Every check is audited in the
// key's trail, naming who reported it.
// statusForbidden is HTTP 403 (the broker speaks no HTTP).
const statusForbidden = 403

func (b *Broker) verify1(ctx context.Context, p *providers.Provider, res Resolved, req ReportRequest) error {
	ref := res.Ref
	cred, version, err := b.readCredential(ctx, ref.Provider, ref.VaultPath(), 0)
	if errors.Is(err, vault.ErrNotFound) {
		return nil // deleted meanwhile
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", ref, fromVault(err))
	}
	if version != res.Version {
		return nil
	}
	r := b.check(ctx, p, cred)
	detail := fmt.Sprintf("checked after token:%s reported %s for workspace %s: %s %s", req.Caller, req.Outcome, res.Workspace, p.DisplayName, r.Detail)
	reported := req.Outcome + " reported"
	if req.Proxied {
		detail = fmt.Sprintf("checked after the provider refused (%s) a proxied call of token:%s for workspace %s: %s %s", req.Outcome, req.Caller, res.Workspace, p.DisplayName, r.Detail)
		reported = req.Outcome + " seen by the proxy"
	}
	ev := AuditEvent{ScopeKind: ref.ScopeKind, ScopeID: ref.ScopeID, Provider: ref.Provider, KeyID: ref.KeyID, Action: ActionTest,
		Actor: ActorVerifier, RequestID: req.RequestID, Outcome: r.Verdict, Version: &version, Detail: detail}
	// A 403 to keybroker's own check says the key may not call the check's
	// endpoint (a restricted key: OpenAI's lack the models permission), not
	// that the key is dead: on a word keybroker does not take, that is no
	// confirmation, and the key stays for everyone else.
	if r.Verdict == providers.VerdictRefused && r.Status != statusForbidden {
		change := HealthChange{Kind: HealthFail, Reason: reported + ", and the provider refused the key when keybroker checked it: " + r.Detail}
		out, err := b.applyHealth(ctx, ref, change, ev)
		if err != nil {
			return err
		}
		if out.Changed {
			return nil // audited with the change
		}
	}
	b.appendAudit(ctx, ev)
	return nil
}

// auditAppender is what appendAudit needs: the metadata store of a
// broker that manages keys, else a health store that can append (the
// resolver's).
type auditAppender interface {
	AppendAudit(ctx context.Context, ev AuditEvent) error
}

// appendAudit records ev in its scope's trail; a failure is logged.
func (b *Broker) appendAudit(ctx context.Context, ev AuditEvent) {
	var a auditAppender
	if b.store != nil {
		a = b.store
	} else if h, ok := b.health.(auditAppender); ok {
		a = h
	}
	if a == nil {
		return
	}
	if err := a.AppendAudit(ctx, ev); err != nil {
		ref := KeyRef{ScopeKind: ev.ScopeKind, ScopeID: ev.ScopeID, Provider: ev.Provider, KeyID: ev.KeyID}
		b.log.WarnContext(ctx, "could not record a key check in the audit trail", "key", ref.String(), "error", err)
	}
}
