// Package webhook delivers keybroker's events — key health changes, or
// every audit event as it is written — to an HTTP endpoint as JSON, signed
// with HMAC-SHA256, retried with backoff. No event carries a key: audit
// events hold at most a masked preview.
//
// What is guaranteed:
//   - Health changes (Publish) go through a bounded in-memory queue that
//     never blocks the broker; each is tried Attempts times with
//     exponential backoff. One is dropped when the queue is full or its
//     last attempt failed: counted (keybroker_webhook_dropped_total,
//     keybroker_webhook_failed_total) and logged, never silently. They are
//     lost at a restart.
//   - The audit stream (StreamAudit) reads the trail in order and delivers
//     each event before it reads the next, retrying until the endpoint
//     takes it (at least once, in order): a slow or down endpoint delays
//     the stream, it loses nothing. The id of the last event delivered is
//     recorded (a Cursor: the stream's lease row in PostgreSQL), so that a
//     replica that takes the stream over — after a restart, a failover or
//     a crash — resumes after it: the events written in between are
//     delivered, in order. Only a stream that never ran starts at the
//     newest event.
//
// The URL must be https, or http to a loopback host, unless AllowPlaintext.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keybroker/keybroker/broker"
)

// SignatureHeader carries "sha256=<hex HMAC-SHA256 of timestamp.body>";
// TimestampHeader the unix seconds signed with it.
const (
	SignatureHeader = "X-Keybroker-Signature"
	TimestampHeader = "X-Keybroker-Timestamp"
)

// Config assembles a Sink.
type Config struct {
	URL string
	// Secret keys the signature (16+ bytes).
	Secret []byte
	// Queue bounds the events waiting; past it, new ones are dropped and
	// counted. Default: 1000.
	Queue int
	// Timeout bounds one delivery. Default: 5 s.
	Timeout time.Duration
	// Attempts per health event before it is dropped. Default: 6 (1 s
	// doubling to 30 s between them). Audit-stream events are retried
	// until delivered.
	Attempts int
	// Backoff is the first wait between two attempts, doubled each time
	// up to 30 s, with jitter. Default: 1 s.
	Backoff time.Duration
	// AllowPlaintext allows an http:// URL whose host is not loopback:
	// the events (actors, scope ids, masked previews) would cross the
	// network in clear.
	AllowPlaintext bool
	// GapWait is how long the audit stream waits for a missing audit id
	// (a transaction that took it may not have committed yet) before it
	// skips it as never written. Default: 10 s.
	GapWait time.Duration
	// DropLogEvery bounds the log lines about dropped events: the first
	// drop is logged at once, the others counted in one line per
	// interval. Default: 1 min.
	DropLogEvery time.Duration
	Logger       *slog.Logger
	// Registerer receives the sink's metrics (optional).
	Registerer prometheus.Registerer
	// Transport is the HTTP transport. Default: http.DefaultTransport's clone.
	Transport http.RoundTripper
}

// Event is what the endpoint receives.
type Event struct {
	ID         int64     `json:"id,omitempty"`
	OccurredAt time.Time `json:"occurredAt"`
	Scope      string    `json:"scope,omitempty"`
	ScopeID    string    `json:"scopeId,omitempty"`
	Provider   string    `json:"provider,omitempty"`
	KeyID      string    `json:"keyId,omitempty"`
	Action     string    `json:"action"`
	Actor      string    `json:"actor"`
	Outcome    string    `json:"outcome"`
	Version    *int      `json:"version,omitempty"`
	MaskedKey  string    `json:"maskedKey,omitempty"`
	Detail     string    `json:"detail,omitempty"`
	RequestID  string    `json:"requestId,omitempty"`
	Count      int       `json:"count"`
}

func eventOf(ev broker.AuditEvent) Event {
	out := Event{ID: ev.ID, OccurredAt: ev.OccurredAt.UTC(), Scope: string(ev.ScopeKind), ScopeID: ev.ScopeID, Provider: ev.Provider,
		KeyID: ev.KeyID, Action: ev.Action, Actor: ev.Actor, Outcome: ev.Outcome, Version: ev.Version, Detail: ev.Detail,
		RequestID: ev.RequestID, Count: max(ev.Count, 1)}
	if ev.MaskedKey != nil {
		out.MaskedKey = *ev.MaskedKey
	}
	return out
}

// Sink delivers events; it implements broker.EventSink.
type Sink struct {
	cfg                        Config
	http                       *http.Client
	queue                      chan Event
	delivered, dropped, failed prometheus.Counter
	skipped                    prometheus.Counter
	// unlogged counts the drops not logged yet (the first of a run of
	// drops is logged at once, then one line per DropLogEvery).
	unlogged atomic.Int64
}

var _ broker.EventSink = (*Sink)(nil)

// New returns a sink; Run delivers.
func New(cfg Config) (*Sink, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("webhook: the URL must be an http(s) URL")
	}
	if u.Scheme == "http" && !loopback(u.Hostname()) && !cfg.AllowPlaintext {
		return nil, fmt.Errorf("webhook: %s is plain http to a host that is not loopback: the events would cross the network in clear; "+
			"use https (or --events-webhook-allow-plaintext)", u.Redacted())
	}
	if len(cfg.Secret) < 16 {
		return nil, errors.New("webhook: KEYBROKER_EVENTS_WEBHOOK_SECRET must be set to a secret of at least 16 characters (it signs every delivery)")
	}
	if cfg.Queue <= 0 {
		cfg.Queue = 1000
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = 6
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = time.Second
	}
	if cfg.GapWait <= 0 {
		cfg.GapWait = 10 * time.Second
	}
	if cfg.DropLogEvery <= 0 {
		cfg.DropLogEvery = time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Transport == nil {
		cfg.Transport = http.DefaultTransport.(*http.Transport).Clone()
	}
	s := &Sink{cfg: cfg, queue: make(chan Event, cfg.Queue),
		http: &http.Client{Transport: cfg.Transport, Timeout: cfg.Timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		delivered: prometheus.NewCounter(prometheus.CounterOpts{Name: "keybroker_webhook_delivered_total", Help: "Events the webhook endpoint accepted (2xx)."}),
		dropped:   prometheus.NewCounter(prometheus.CounterOpts{Name: "keybroker_webhook_dropped_total", Help: "Events dropped because the webhook queue was full."}),
		failed:    prometheus.NewCounter(prometheus.CounterOpts{Name: "keybroker_webhook_failed_total", Help: "Health events dropped after every delivery attempt failed."}),
		skipped: prometheus.NewCounter(prometheus.CounterOpts{Name: "keybroker_webhook_audit_ids_skipped_total",
			Help: "Audit ids the audit stream skipped after waiting for them (never written: a rolled-back transaction, or pruned)."}),
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(s.delivered, s.dropped, s.failed, s.skipped)
	}
	return s, nil
}

// loopback says whether host is localhost or a loopback IP.
func loopback(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || ip != nil && ip.IsLoopback()
}

// Publish queues ev without blocking; a full queue drops it (counted and
// logged).
func (s *Sink) Publish(ev broker.AuditEvent) {
	select {
	case s.queue <- eventOf(ev):
	default:
		s.dropped.Inc()
		s.noteDrop("the queue is full", ev.Action)
	}
}

// noteDrop logs the first drop of a run at once; Run logs the count of
// the others once per DropLogEvery. Only the action is named: an event
// holds no secret, but the log needs none of it either.
func (s *Sink) noteDrop(why, action string) {
	if s.unlogged.Add(1) == 1 {
		s.cfg.Logger.Warn("webhook: dropped an event; further drops are counted and logged once per interval",
			"reason", why, "action", action, "interval", s.cfg.DropLogEvery.String())
	}
}

// logDrops logs how many events were dropped since the last line, past
// the one already logged.
func (s *Sink) logDrops() {
	if n := s.unlogged.Swap(0); n > 1 {
		s.cfg.Logger.Warn("webhook: events dropped (the queue was full or every attempt failed)", "count", n-1,
			"interval", s.cfg.DropLogEvery.String())
	}
}

// Run delivers queued events until ctx is done.
func (s *Sink) Run(ctx context.Context) {
	t := time.NewTicker(s.cfg.DropLogEvery)
	defer t.Stop()
	defer s.logDrops()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.logDrops()
		case ev := <-s.queue:
			s.deliver(ctx, ev, s.cfg.Attempts)
		}
	}
}

// deliver posts ev, trying up to attempts times (0: until delivered or
// ctx is done), and says whether it was delivered.
func (s *Sink) deliver(ctx context.Context, ev Event, attempts int) bool {
	body, err := json.Marshal(ev)
	if err != nil {
		s.failed.Inc()
		s.noteDrop("the event could not be encoded", ev.Action)
		return false
	}
	wait := s.cfg.Backoff
	for attempt := 1; ; attempt++ {
		err := s.post(ctx, body)
		if err == nil {
			s.delivered.Inc()
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		if attempts > 0 && attempt >= attempts {
			s.failed.Inc()
			s.noteDrop(fmt.Sprintf("%d attempts failed, the last: %v", attempt, err), ev.Action)
			return false
		}
		if attempt == 1 || attempt%10 == 0 {
			s.cfg.Logger.Info("webhook: delivery failed; retrying", "action", ev.Action, "attempt", attempt, "error", err)
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(wait/2 + rand.N(wait/2+1)):
		}
		wait = min(wait*2, 30*time.Second)
	}
}

// Sign is the signature header value of body sent at ts.
func Sign(secret []byte, ts string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte("."))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

func (s *Sink) post(ctx context.Context, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(TimestampHeader, ts)
	req.Header.Set(SignatureHeader, Sign(s.cfg.Secret, ts, body))
	resp, err := s.http.Do(req)
	if err != nil {
		return fmt.Errorf("webhook endpoint unreachable: %w", errors.Unwrap(err))
	}
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("webhook endpoint answered %d", resp.StatusCode)
	}
	return nil
}

// AuditSource is what the audit stream reads: the events after an id.
type AuditSource interface {
	AuditAfter(ctx context.Context, after int64, limit int) ([]broker.AuditEvent, error)
	LatestAuditID(ctx context.Context) (int64, error)
}

// Cursor keeps the audit stream's place across replicas: the id of the
// last event delivered (store.LeaseCursor keeps it in the stream's lease).
type Cursor interface {
	// Position is the last id delivered; ok is false when the stream never
	// ran.
	Position(ctx context.Context) (id int64, ok bool, err error)
	// Advance records id as the last delivered. An error stops the stream
	// (the lease was lost, or PostgreSQL failed): what was delivered after
	// the last recorded id is delivered again by whoever streams next.
	Advance(ctx context.Context, id int64) error
}

// StreamAudit sends the audit trail to the endpoint, in order, from the
// event after cur's position, polling src every interval; the caller holds
// the stream's lease (one replica at a time). A stream that never ran
// starts at the newest event. Each event is retried until the endpoint
// takes it, and its id recorded in cur, before the next is read: a slow or
// down endpoint delays the stream and drops nothing; the trail holds what
// waits, and a replica that takes the stream over resumes after the last
// id recorded (at least once, in order).
//
// Ids are taken in the order events are written, not in the order their
// transactions commit: an id missing between two that exist may belong to
// a transaction still running. The stream waits for it up to GapWait
// before it skips it (a rolled-back insert leaves a hole for good), or
// not at all when the event after the hole is older than GapWait and a
// minute (a stream catching up); skipped ids are counted
// (keybroker_webhook_audit_ids_skipped_total) and logged.
//
// It returns nil when ctx is done, and the error when cur could not
// record a delivery.
func (s *Sink) StreamAudit(ctx context.Context, src AuditSource, cur Cursor, every time.Duration) error {
	last, ok, err := cur.Position(ctx)
	if err != nil {
		return fmt.Errorf("audit stream: where to start: %w", err)
	}
	if !ok {
		if last, err = src.LatestAuditID(ctx); err != nil {
			return fmt.Errorf("audit stream: where to start: %w", err)
		}
		if err := cur.Advance(ctx, last); err != nil {
			return fmt.Errorf("audit stream: record where it starts: %w", err)
		}
		s.cfg.Logger.Info("audit stream: first run; starting after the newest event", "cursor", last)
	} else {
		s.cfg.Logger.Info("audit stream: resuming after the last event delivered", "cursor", last)
	}
	t := time.NewTicker(every)
	defer t.Stop()
	var gapSince time.Time // when the stream first waited for the id after last (zero: not waiting)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		for {
			evs, err := src.AuditAfter(ctx, last, 500)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				s.cfg.Logger.Warn("audit stream: could not read new events; trying again", "error", err)
				break
			}
			n := 0
			for _, ev := range evs {
				if ev.ID != last+1 {
					if gapSince.IsZero() {
						gapSince = time.Now()
					}
					// A transaction holding a missing id took it before
					// ev's was taken: when ev is old (a stream catching
					// up; a minute of leeway for the clocks), so is it.
					if time.Since(gapSince) < s.cfg.GapWait && time.Since(ev.OccurredAt) < s.cfg.GapWait+time.Minute {
						break // the missing ids may still commit
					}
					s.skipped.Add(float64(ev.ID - last - 1))
					s.cfg.Logger.Info("audit stream: ids never written (a rolled-back transaction, or pruned); skipping them",
						"from", last+1, "to", ev.ID-1, "waited", s.cfg.GapWait.String())
				}
				gapSince = time.Time{}
				if !s.deliver(ctx, eventOf(ev), 0) {
					return nil // ctx is done
				}
				if err := cur.Advance(ctx, ev.ID); err != nil {
					if ctx.Err() != nil {
						return nil
					}
					return fmt.Errorf("audit stream: record the delivery of event %d: %w", ev.ID, err)
				}
				last = ev.ID
				n++
			}
			if n < 500 {
				break
			}
		}
	}
}
