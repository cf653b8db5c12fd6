package apidoc

// fieldDoc is what the document says of a schema ("Type") or of one of its
// fields ("Type.jsonName") beyond the Go type: the limits the server
// enforces, the values it knows, and a description for API readers (it
// replaces the Go comment). Every entry must name a type or field that
// exists: the generator fails on one that does not.
type fieldDoc struct {
	Description                   string
	Enum                          []any
	Nullable                      bool
	Minimum, Maximum              *float64
	MaxLength, MaxItems, MinItems uint64
	ItemMaxLength, ItemMinLength  uint64
	Pattern, Format               string
}

func ptr(f float64) *float64 { return &f }

var (
	scopes    = []any{"workspace", "organization", "hosted"}
	keyStates = []any{"active", "disabled"}
	healths   = []any{"healthy", "cooling_down", "failing"}
	roles     = []any{"operator", "admin", "reader", "resolver"}
	tokStates = []any{"active", "expired", "revoked"}
)

var fieldDocs = map[string]fieldDoc{
	"ErrorDetail.reason":              {Description: "detail of some codes: for no_key, hosted_fallback_off, no_hosted_key, hosted_keys_unavailable or no_key_allows_model"},
	"KeyMetadata.scope":               {Enum: scopes},
	"KeyMetadata.scopeId":             {Description: "the workspace or organization id; empty for hosted"},
	"KeyMetadata.workspace":           {Description: "scopeId, for a workspace's key (as v1 answered)"},
	"KeyMetadata.keyId":               {Description: "the key's id in its pool"},
	"KeyMetadata.name":                {MaxLength: 120},
	"KeyMetadata.priority":            {Description: "lower serves first; equal priorities take turns", Minimum: ptr(0), Maximum: ptr(1000)},
	"KeyMetadata.state":               {Enum: keyStates},
	"KeyMetadata.models":              {Description: "when not empty, the only models the key serves"},
	"KeyMetadata.resolves":            {Description: "resolves served with this key, counted by every replica and written every 10 s"},
	"KeyMetadata.lastUsedAt":          {Description: "the last resolve served with this key; absent when never used"},
	"KeyMetadata.idle":                {Description: "unused (or, never used, created) more than 90 days ago"},
	"KeyMetadata.health":              {Description: "cooling_down: out of the pool until cooldownUntil (a rate-limit or server-error report); failing: a provider refused the key, until a test passes or an admin sets it active", Enum: healths},
	"KeyMetadata.updatedByName":       {Description: "The description of the token that made the last change, when it has one (lists and reads)."},
	"KeyVersion.createdBy":            {Description: "The actor whose change wrote the version (from the audit trail); absent for a version written around keybroker."},
	"KeyVersion.createdByName":        {Description: "The description of createdBy's token, when it has one."},
	"KeyVersion.maskedKey":            {Description: "The version's masked value (from the change that wrote it)."},
	"RollbackRequest.version":         {Minimum: ptr(1)},
	"AuditEvent.clientRequestId":      {Description: "the X-Request-Id the caller sent, kept beside keybroker's own requestId"},
	"AuditEvent.count":                {Description: "events the line stands for: denials are aggregated per token, scope and action per interval", Minimum: ptr(1)},
	"AuditEvent.scope":                {Description: "whose trail; absent for operator-wide events", Enum: scopes},
	"AuditEvent.actorName":            {Description: "The description of the actor's token, when it has one."},
	"ResolveRequest.model":            {Description: "the call's model: keys limited to some models serve only those", MaxLength: 128},
	"ResolveResponse.source":          {Enum: []any{"byok", "hosted"}},
	"ResolveResponse.isBYOK":          {Description: "true for a workspace's or organization's key (the customer's own: not billed), false for a hosted key"},
	"ResolveResponse.scope":           {Description: "where the key lives", Enum: scopes},
	"ResolveResponse.keyId":           {Description: "which key of the scope's pool served"},
	"ResolveResponse.resolutionId":    {Description: "names this answer in the platform's usage records"},
	"ResolveResponse.fallbackReason":  {Description: "why an earlier scope did not serve: no_workspace_key, workspace_keys_unavailable, no_organization_key, organization_keys_unavailable; absent when the workspace's own key served"},
	"ResolveResponse.fingerprint":     {Description: "HMAC of the key with the server's pepper, for usage records; never the key"},
	"ResolveResponse.ttlSeconds":      {Description: "How long the server caches the key: a client that caches it too keeps it no longer."},
	"WhoAmI.role":                     {Enum: roles},
	"WhoAmI.description":              {Description: "The token's description, when it has one."},
	"Settings.organization":           {Description: "the organization the workspace belongs to; null: none", Nullable: true},
	"Settings.inherit":                {Description: "use the organization's keys when the workspace has none"},
	"Settings.hostedFallback":         {Description: "fall back to the platform's hosted keys (billed); false fails closed with 404 no_key, reason hosted_fallback_off"},
	"SettingsRequest":                 {Description: "absent fields stay as they are"},
	"SettingsRequest.organization":    {Description: "operator only; \"\" unlinks", Nullable: true},
	"SettingsRequest.inherit":         {Nullable: true},
	"SettingsRequest.hostedFallback":  {Nullable: true},
	"EffectiveSource.scope":           {Description: "workspace or organization: the customer's own keys, not billed; hosted: the platform's key, billed at hosted rates; null: calls fail with no_key", Enum: []any{"workspace", "organization", "hosted", nil}, Nullable: true},
	"EffectiveSource.reason":          {Description: "why an earlier scope does not serve, or why none does (the reasons of resolve)"},
	"EffectiveSource.scopeId":         {Description: "the workspace or organization that serves"},
	"EffectiveSource.first":           {Description: "The keys that serve first: the active keys of the lowest priority (several take turns)."},
	"AddKeyRequest.keyId":             {Description: "generated when absent"},
	"AddKeyRequest.name":              {MaxLength: 120},
	"AddKeyRequest.priority":          {Description: "default 100", Minimum: ptr(0), Maximum: ptr(1000)},
	"AddKeyRequest.state":             {Enum: keyStates},
	"AddKeyRequest.models":            {MaxItems: 64, ItemMaxLength: 128},
	"UpdateKeyRequest":                {Description: "any of the fields; absent ones stay"},
	"UpdateKeyRequest.name":           {MaxLength: 120},
	"UpdateKeyRequest.priority":       {Minimum: ptr(0), Maximum: ptr(1000)},
	"UpdateKeyRequest.state":          {Enum: keyStates},
	"UpdateKeyRequest.models":         {Description: "[] lets the key serve every model", MaxItems: 64, ItemMaxLength: 128},
	"ReportRequest.resolutionId":      {Description: "the resolutionId of a resolve this token made in the last hour"},
	"ReportRequest.outcome":           {Enum: []any{"ok", "unauthorized", "forbidden", "quota_exceeded", "rate_limited", "server_error"}},
	"ReportRequest.retryAfterSeconds": {Description: "the provider's Retry-After, for rate_limited and server_error", Minimum: ptr(0), Maximum: ptr(3600)},
	"ReportResult.scope":              {Enum: scopes},
	"ReportResult.health":             {Enum: healths},
	"ReportResult.changed":            {Description: "false when the report repeated what was known"},
	"KeyCheckResult.result":           {Enum: []any{"accepted", "refused", "rate_limited", "unreachable"}},
	"KeyCheckResult.status":           {Description: "the provider's HTTP status"},
	"KeyCheckResult.health":           {Enum: healths},
	"TokenInfo.role":                  {Enum: roles},
	"TokenInfo.state":                 {Enum: tokStates},
	"CreateTokenRequest.role":         {Enum: roles},
	"CreateTokenRequest.ttlSeconds":   {Description: "0: 90 days (operators 30, their maximum unless noExpiry)", Minimum: ptr(0), Maximum: ptr(31622400)},
	"CreateTokenRequest.noExpiry":     {Description: "refused (403) over the API: a token with no expiry is minted only out of band (keybroker token create --no-expiry)"},
	"CreateTokenRequest.description":  {MaxLength: 200},
	"CreatedToken.role":               {Enum: roles},
	"CreatedToken.state":              {Enum: tokStates},
	"CreatedToken.token":              {Description: "the bearer token, shown this once"},
	"ScopeInfo.kind":                  {Enum: []any{"workspace", "organization"}},
	"WatchEvent.type":                 {Enum: []any{"hello", "invalidate", "flush", "heartbeat", "revoked"}},
	"WatchEvent.scope":                {Description: "invalidate: the scope whose pool changed", Enum: scopes},
	"WatchEvent.scopeId":              {Description: "invalidate: the workspace or organization id (absent for hosted)"},
	"WatchEvent.provider":             {Description: "invalidate: the provider (absent: every provider of the scope)"},
	"WatchEvent.keyId":                {Description: "invalidate: the key (absent: the pool's membership, order, health or settings)"},
	"WatchEvent.workspace":            {Description: "invalidate: a workspace whose settings changed"},
	"ProxyTokenRequest.workspace":     {Pattern: "^[a-z0-9][a-z0-9_-]{0,62}$"},
	"ProxyTokenRequest.providers":     {MinItems: 1, MaxItems: 16},
	"ProxyTokenRequest.models":        {Description: "when set, the only models the token may call", MaxItems: 32, ItemMinLength: 1, ItemMaxLength: 128},
	"ProxyTokenRequest.ttlSeconds":    {Description: "default 900", Minimum: ptr(1), Maximum: ptr(3600)},
	"ProxyToken.token":                {Description: "kbp_...: give it to the sandbox; shown once"},
	"ProxyToken.id":                   {Description: "ptk_...: names the token in logs and in the records of proxied calls"},
	"RevokeProxyTokenRequest.token":   {Description: "the proxy token (kbp_...) to end"},
	"ProxyCall":                       {Description: "One call through the credential proxy. Never a key, a token or a body."},
	"ProxyCall.at":                    {Description: "when the call began"},
	"ProxyCall.scope":                 {Description: "the scope of the key that served it (absent when none did)", Enum: scopes},
	"ProxyCall.keyVersion":            {Minimum: ptr(1)},
	"ProxyCall.status":                {Description: "the provider's status, or keybroker's when the call did not reach it (0: cut before an answer)"},
	"ProxyCall.durationMs":            {Minimum: ptr(0)},
	"ProxyCall.bytesOut":              {Description: "answer bytes sent back to the caller", Minimum: ptr(0)},
	"ProxyCall.byok":                  {Description: "the customer's own key (workspace or organization): the platform does not bill the call"},
	"ProxyCall.retried":               {Description: "the first key was refused and the call was retried with another"},
	"ProxyCall.caller":                {Description: "the calling token's id (ptk_... for a proxy token)"},
}
