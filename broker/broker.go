package broker

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
	gocache "github.com/patrickmn/go-cache"
	"golang.org/x/sync/singleflight"

	"github.com/keybroker/keybroker/ids"
	"github.com/keybroker/keybroker/providers"
	"github.com/keybroker/keybroker/vault"
)

// KeyReader reads key material: the reader identity's view of Vault.
type KeyReader interface {
	Get(ctx context.Context, path string) (vault.Secret, error)
	GetVersion(ctx context.Context, path string, version int) (vault.Secret, error)
}

// KeyWriter changes key material and reads metadata, never a key: the
// writer identity's view of Vault.
type KeyWriter interface {
	Put(ctx context.Context, path string, data map[string]string, cas int) (int, error)
	Metadata(ctx context.Context, path string) (vault.Metadata, error)
	DeleteVersion(ctx context.Context, path string, version int) error
	Destroy(ctx context.Context, path string) error
	List(ctx context.Context, dir string) ([]string, error)
}

var (
	_ KeyReader = (*vault.KV)(nil)
	_ KeyWriter = (*vault.KV)(nil)
)

// MetadataStore is what the broker needs of PostgreSQL, in the broker's own
// records (package store implements it). Its errors wrap ErrNotFound for a
// missing row and ErrConflict for a unique violation; any other error means
// the store could not answer.
type MetadataStore interface {
	BeginChange(ctx context.Context, ref KeyRef, ch Change) (KeyRecord, error)
	CompleteWrite(ctx context.Context, ref KeyRef, id string, w Written, ev AuditEvent) error
	AbortChange(ctx context.Context, ref KeyRef, id string) error
	CompleteDelete(ctx context.Context, ref KeyRef, deleted int, ev AuditEvent) error
	UpdateMember(ctx context.Context, ref KeyRef, s MemberSettings, ev AuditEvent) (KeyRecord, error)
	PurgeScope(ctx context.Context, scope Scope, ev AuditEvent) (int, error)
	GetKey(ctx context.Context, ref KeyRef) (KeyRecord, error)
	ListKeys(ctx context.Context, scope Scope) ([]KeyRecord, error)
	ListPending(ctx context.Context, olderThan time.Duration) ([]KeyRecord, error)
	AppendAudit(ctx context.Context, ev AuditEvent) error
	ListAudit(ctx context.Context, scope Scope, before int64, limit int) ([]AuditEvent, error)
	ListAllAudit(ctx context.Context, before int64, limit int) ([]AuditEvent, error)
	QueryAudit(ctx context.Context, q AuditQuery) ([]AuditEvent, error)
	VersionOrigins(ctx context.Context, ref KeyRef) (map[int]VersionOrigin, error)
	ListAllKeys(ctx context.Context) ([]KeyRecord, error)
}

// Config assembles a Broker. Zero values take the defaults stated.
type Config struct {
	// Reader reads keys for Resolve and Rollback. Nil in a broker that
	// only manages keys without rollback (admin mode with the writer
	// identity alone).
	Reader KeyReader
	// Writer and Store are needed for key management; nil in a
	// resolver-only broker.
	Writer KeyWriter
	Store  MetadataStore
	// Settings holds the workspaces' settings; without it every workspace
	// has DefaultSettings.
	Settings SettingsStore
	// Links signs the organization links this broker writes and verifies
	// those it reads: a link without a valid signature (written with a
	// database role alone) is not followed. Nil: links are followed as
	// stored (tests, benchmarks).
	Links LinkSigner
	// LifecycleRows signs the rows of the rotations and revocations at
	// the provider this broker writes, and verifies those it acts on: a
	// row without its signature (written with a database role alone) is
	// not acted on. Nil: rows are acted on unsigned.
	LifecycleRows LifecycleSigner
	// Pools tells which keys each pool holds (loaded at start, re-read
	// when a change is announced). Without it each pool is its key
	// "default" and Vault alone says whether it exists (a broker on
	// Vault alone: tests, benchmarks).
	Pools PoolStore
	// MaxKeysPerPool bounds a pool. Default: DefaultMaxKeysPerPool (10).
	MaxKeysPerPool int
	// PoolCacheSize bounds the pools a replica holds in memory (read from
	// Pools when first needed, the least recently used forgotten beyond
	// it). Default: DefaultPoolCacheSize.
	PoolCacheSize int
	// Usage keeps the resolves per key (flushed in batches, see
	// RunUsageFlusher); without it usage is not counted.
	Usage UsageStore
	// Providers is the registry. Default: providers.DefaultRegistry().
	Providers *providers.Registry
	// CacheTTL is how long a resolved key is served from memory.
	// Default: 30s.
	CacheTTL time.Duration
	// NegativeCacheTTL is how long "no key" is remembered. Default: 5s.
	NegativeCacheTTL time.Duration
	// StaleIfError is how long past its TTL a cached answer may still be
	// served while Vault is unreachable (transport errors, 5xx, sealed,
	// 429). Never after a 403 or a deleted key. Default: 0 (off).
	StaleIfError time.Duration
	// MaxEntries bounds the keys held in memory. Past it, a newly read key
	// is served but not cached (a metric counts it). Default: 100000.
	MaxEntries int
	// MaxNegativeEntries bounds the "no key" answers held, apart from the
	// keys, so made-up workspace ids cannot grow memory or push out real
	// keys; the least recently used goes first. Default: 10000.
	MaxNegativeEntries int
	// MaxColdReads bounds the Vault reads of cache misses in flight at
	// once; more misses wait for a slot (or their context). Default: 32.
	MaxColdReads int
	// Pepper keys the fingerprints (required for key management), and
	// nothing else.
	Pepper []byte
	// ResolutionKey keys the resolution ids' MAC: replicas that share it
	// take each other's reports. Without it, a random key of this process:
	// a replica then takes only reports of its own resolutions.
	ResolutionKey []byte
	// PreviousResolutionKeys are still accepted in reports (never used to
	// make an id), for the overlap of a rotation: resolution ids live an
	// hour (ResolutionTTL).
	PreviousResolutionKeys [][]byte
	// Checker asks providers whether they accept a key (tests, verified
	// writes, the prober). Without it, tests answer ErrNotConfigured.
	Checker KeyChecker
	// Health records what providers said of keys (reports, tests).
	// Without it, reports answer ErrNotConfigured.
	Health HealthStore
	// Events receives every health change as it is recorded (a webhook
	// sink). Optional; it must not block.
	Events EventSink
	// Logger. Default: slog.Default().
	Logger *slog.Logger
	// Metrics records resolves and cache behaviour. Default: none.
	Metrics *Metrics
	// MaxMintsInFlight bounds the short-lived credentials being minted at
	// once on this replica (docs/credentials.md); a mint beyond is refused
	// (ErrMintBusy). Default: DefaultMaxMintsInFlight (16).
	MaxMintsInFlight int
	// MintHTTP is the HTTP client of the token services (STS, Entra,
	// Google). Default: a client with a 30 s timeout.
	MintHTTP *http.Client
	// MintEndpoints are the token services' addresses, by provider id and
	// service name (providers.MintEnv.Endpoints); missing: the public ones.
	MintEndpoints map[string]map[string]string
	// ExposeLongLived are the providers whose long-lived credential
	// resolve hands out instead of a minted one
	// (--expose-long-lived-credentials). Default: none.
	ExposeLongLived []string
	// RotationGrace is how long an old key lives at the provider after a
	// rotation put its successor in the pool. Default:
	// DefaultRotationGrace (1 hour).
	RotationGrace time.Duration
	// RotationClaim is how long a replica holds a running rotation
	// between two steps; after a crash another replica resumes it that
	// much later. Default: DefaultRotationClaim (2 minutes).
	RotationClaim time.Duration
	// Admin gives the admin APIs' addresses and HTTP client (rotation and
	// revocation at the provider). Default: Checker, when it gives them
	// (providers.Checker does).
	Admin AdminEnvs
	// RotationHook, for tests only, is asked at each point of a
	// rotation ("before:<step>" once the step is recorded, "after:<step>"
	// once it is taken); true stops the rotation there, as a crash would.
	RotationHook func(point string) bool
	// ExpiryWarning is the window before a key's expiresAt in which it is
	// "expiring". Default: DefaultExpiryWarning (14 days).
	ExpiryWarning time.Duration
	// Now tells the time for the cache's freshness and refresh decisions
	// (tests move it). Default: time.Now. The cache's own eviction, at
	// CacheTTL plus StaleIfError, runs on the wall clock.
	Now func() time.Time
}

// Broker is keybroker's domain: resolve, and key lifecycle.
type Broker struct {
	reader    KeyReader
	writer    KeyWriter
	store     MetadataStore
	providers *providers.Registry
	ttl       time.Duration
	negTTL    time.Duration
	// staleIfError: see Config.StaleIfError.
	staleIfError time.Duration
	pepper       []byte
	metrics      *Metrics
	log          *slog.Logger
	now          func() time.Time
	// expiryWarning: see Config.ExpiryWarning.
	expiryWarning time.Duration
	// rotationGrace, adminEnv, rotationHook: see Config.
	rotationGrace time.Duration
	rotationClaim time.Duration
	adminEnv      AdminEnvs
	rotationHook  func(point string) bool

	cache      *gocache.Cache
	maxEntries int
	// negative holds "no key" answers: size-bounded, least recently used
	// first out, and never kept past NegativeCacheTTL (no stale-if-error).
	negative *expirable.LRU[string, *cacheEntry]
	// coldSlots bounds the Vault reads of misses in flight.
	coldSlots     chan struct{}
	flight        singleflight.Group
	settingsStore SettingsStore
	links         LinkSigner
	// lifecycleSigner signs rotation and revocation rows;
	// unsignedLifecycle remembers the unsigned rows already reported.
	lifecycleSigner   LifecycleSigner
	unsignedLifecycle sync.Map
	// expiryLearned is when LearnExpiries last asked the provider about
	// a key (by key and provider id).
	expiryLearned sync.Map
	// unsignedLinks remembers the unsigned links already reported.
	unsignedLinks sync.Map
	settings      settingsMirror
	poolStore     PoolStore
	pools         *poolCache // nil without a pool store
	maxPool       int
	usageStore    UsageStore
	usage         usageBook
	// resolutionIDs makes and checks resolution ids.
	resolutionIDs *resolutionIDs
	checker       KeyChecker
	checkerLimit  chan struct{}
	health        HealthStore
	events        eventSink
	// refreshSlots bounds the background refreshes in flight: when many hot
	// keys come due together (after a restart or a cache flush), Vault gets
	// a steady trickle instead of a burst of goroutines.
	refreshSlots chan struct{}
	// fetches are the Vault reads in flight, by cache key: a change
	// announced meanwhile makes them stale (not cached).
	fetches fetchGenerations
	// cooldowns are this replica's cooldowns of keys for one workspace
	// (shared keys it reported) or one calling token (keys the proxy saw
	// refused on its calls).
	cooldowns *localCooldowns
	// mints are the short-lived credentials minted from keys, and the
	// mints in flight.
	mints *mints
	// verifier checks with the provider a key reported refused on a word
	// keybroker does not take for everyone's (a workspace's about a shared
	// key, the proxy's about a call), before it fails for everyone.
	verifier verifier
}

// maxChecksInFlight bounds the provider checks (tests, verified writes,
// the prober) in flight at once.
const maxChecksInFlight = 8

// maxBackgroundRefreshes is how many hot keys are re-read from Vault at once
// in the background. A key that finds no free slot tries again at its next
// hit; one that expires first is read on the request path, as a miss.
const maxBackgroundRefreshes = 4

// New returns a broker. It checks that the configuration is coherent, not
// that Vault or PostgreSQL answer.
func New(cfg Config) (*Broker, error) {
	if cfg.Providers == nil {
		cfg.Providers = providers.DefaultRegistry()
	}
	if cfg.CacheTTL == 0 {
		cfg.CacheTTL = 30 * time.Second
	}
	if cfg.NegativeCacheTTL == 0 {
		cfg.NegativeCacheTTL = 5 * time.Second
	}
	if cfg.CacheTTL < 0 || cfg.NegativeCacheTTL < 0 || cfg.StaleIfError < 0 {
		return nil, errors.New("broker: cache TTLs must not be negative")
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = 100_000
	}
	if cfg.MaxNegativeEntries <= 0 {
		cfg.MaxNegativeEntries = 10_000
	}
	if cfg.MaxKeysPerPool <= 0 {
		cfg.MaxKeysPerPool = DefaultMaxKeysPerPool
	}
	if cfg.MaxColdReads <= 0 {
		cfg.MaxColdReads = 32
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.ExpiryWarning <= 0 {
		cfg.ExpiryWarning = DefaultExpiryWarning
	}
	if cfg.RotationGrace <= 0 {
		cfg.RotationGrace = DefaultRotationGrace
	}
	if cfg.RotationClaim <= 0 {
		cfg.RotationClaim = DefaultRotationClaim
	}
	if cfg.Admin == nil {
		cfg.Admin, _ = cfg.Checker.(AdminEnvs)
	}
	if (cfg.Writer == nil) != (cfg.Store == nil) {
		return nil, errors.New("broker: key management needs both a Vault writer and a metadata store")
	}
	if cfg.Writer != nil && len(cfg.Pepper) < 16 {
		return nil, errors.New("broker: key management needs a fingerprint pepper of at least 16 bytes")
	}
	if cfg.Reader == nil && cfg.Writer == nil {
		return nil, errors.New("broker: needs a Vault reader, a writer, or both")
	}
	b := &Broker{
		settingsStore:   cfg.Settings,
		links:           cfg.Links,
		lifecycleSigner: cfg.LifecycleRows,
		poolStore:       cfg.Pools,
		maxPool:         cfg.MaxKeysPerPool,
		usageStore:      cfg.Usage,
		resolutionIDs:   newResolutionIDs(cfg.ResolutionKey, cfg.PreviousResolutionKeys),
		checker:         cfg.Checker,
		checkerLimit:    make(chan struct{}, maxChecksInFlight),
		health:          cfg.Health,
		events:          eventSink{cfg.Events},
		reader:          cfg.Reader,
		writer:          cfg.Writer,
		store:           cfg.Store,
		providers:       cfg.Providers,
		ttl:             cfg.CacheTTL,
		negTTL:          cfg.NegativeCacheTTL,
		staleIfError:    cfg.StaleIfError,
		metrics:         cfg.Metrics,
		pepper:          cfg.Pepper,
		log:             cfg.Logger,
		now:             cfg.Now,
		expiryWarning:   cfg.ExpiryWarning,
		rotationGrace:   cfg.RotationGrace,
		rotationClaim:   cfg.RotationClaim,
		adminEnv:        cfg.Admin,
		rotationHook:    cfg.RotationHook,
		cache:           gocache.New(cfg.CacheTTL, time.Minute),
		maxEntries:      cfg.MaxEntries,
		negative:        expirable.NewLRU[string, *cacheEntry](cfg.MaxNegativeEntries, nil, cfg.NegativeCacheTTL),
		coldSlots:       make(chan struct{}, cfg.MaxColdReads),
		refreshSlots:    make(chan struct{}, maxBackgroundRefreshes),
		cooldowns:       newLocalCooldowns(maxLocalCooldowns),
		verifier:        newVerifier(),
		mints:           newMints(cfg.MaxMintsInFlight, cfg.MintHTTP, cfg.MintEndpoints, cfg.ExposeLongLived),
	}
	if cfg.Settings == nil {
		b.settings.loaded = true // every workspace has the defaults
	}
	if cfg.Pools != nil {
		b.pools = newPoolCache(cfg.Pools, cfg.PoolCacheSize, b.forgetKey)
	}
	return b, nil
}

// Providers is the broker's provider registry.
func (b *Broker) Providers() *providers.Registry { return b.providers }

// checkWorkspace validates a workspace id.
func checkWorkspace(workspace string) error {
	if !ids.Valid(workspace) {
		return errors.Join(ErrInvalidID, errors.New(ids.Message("workspace")))
	}
	return nil
}

// checkIDs validates a workspace and provider id pair.
func (b *Broker) checkIDs(workspace, provider string) (*providers.Provider, error) {
	if err := checkWorkspace(workspace); err != nil {
		return nil, err
	}
	return b.checkProvider(provider)
}

// checkPool validates a pool's scope and provider.
func (b *Broker) checkPool(pr PoolRef) (*providers.Provider, error) {
	if err := pr.Owner().Check(); err != nil {
		return nil, err
	}
	return b.checkProvider(pr.Provider)
}

// keyProvider validates a key's scope, provider and key id.
func (b *Broker) keyProvider(ref KeyRef) (*providers.Provider, error) {
	p, err := b.checkPool(ref.Pool())
	if err != nil {
		return nil, err
	}
	if !ids.Valid(ref.KeyID) {
		return nil, errors.Join(ErrInvalidID, errors.New(ids.Message("key")))
	}
	return p, nil
}

func (b *Broker) checkProvider(provider string) (*providers.Provider, error) {
	if !ids.Valid(provider) {
		return nil, errors.Join(ErrInvalidID, errors.New(ids.Message("provider")))
	}
	p, ok := b.providers.Lookup(provider)
	if !ok {
		return nil, errors.Join(ErrUnknownProvider, errors.New("provider "+provider+" is not supported"))
	}
	return p, nil
}

// fromVault maps a vault error onto the domain's.
func fromVault(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, vault.ErrCASMismatch):
		return errors.Join(ErrConflict, err)
	case errors.Is(err, vault.ErrNotFound):
		return errors.Join(ErrNotFound, err)
	case errors.Is(err, vault.ErrForbidden):
		return errors.Join(ErrForbidden, err)
	default:
		return errors.Join(ErrUnavailable, err)
	}
}

// fromStore maps a metadata store error onto the domain's: a missing row
// and a lost unique race keep their meaning, anything else is the store
// being unable to answer.
func fromStore(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrConflict):
		return err
	default:
		return errors.Join(ErrUnavailable, err)
	}
}
