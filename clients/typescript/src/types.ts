import { inspect } from "node:util";

import { azureOpenAIOf, bedrockOf, vertexOf, type AzureOpenAICredential, type BedrockCredential, type VertexCredential } from "./cloud.js";

/** The body of POST /v1/resolve. */
export interface ResolveRequest {
  workspace: string;
  provider: string;
  /** The model of the call: keys limited to some models serve only those. */
  model?: string;
}

/** Where a key lives. */
export type Scope = "workspace" | "organization" | "hosted";

/** What a provider answered to a call made with a resolved key. */
export type Outcome = "ok" | "unauthorized" | "forbidden" | "quota_exceeded" | "rate_limited" | "server_error";

/** The body of POST /v1/resolve/report. */
export interface ReportRequest {
  resolutionId: string;
  outcome: Outcome;
  /** The provider's Retry-After (0 to 3600), for rate_limited and server_error. */
  retryAfterSeconds?: number;
}

/** The answer of POST /v1/resolve/report. */
export interface ReportResult {
  scope: Scope;
  scopeId: string;
  provider: string;
  keyId: string;
  /** The key's health now. */
  health: string;
  /** Whether the report changed it (repeating what is known changes nothing). */
  changed: boolean;
}

/**
 * One event of GET /v1/resolve/watch: `hello` (flush what you hold),
 * `invalidate` (what can resolve for scope/scopeId/provider, one key when
 * keyId is set, or a workspace's settings, changed), `flush` (drop
 * everything), `heartbeat`, or `revoked` (the token was revoked: drop
 * everything; the stream ends).
 */
export interface WatchEvent {
  type: "hello" | "invalidate" | "flush" | "heartbeat" | "revoked" | string;
  scope?: Scope;
  scopeId?: string;
  provider?: string;
  keyId?: string;
  workspace?: string;
}

/** The fields of a resolve answer, as keybroker sends them. */
export interface ResolveAnswer {
  apiKey: string;
  /** The credential's kind (`api_key`: apiKey is the key). */
  kind?: string;
  /**
   * The fields to call the provider with, for kinds other than `api_key`
   * (apiKey is then empty): a string, or an object of strings for a map
   * field.
   */
  credential?: Record<string, unknown>;
  /** When a short-lived credential minted from the key stops working (RFC 3339). */
  expiresAt?: string;
  source: string;
  isBYOK: boolean;
  version: number;
  scope: Scope;
  keyId: string;
  fingerprint?: string;
  resolutionId: string;
  fallbackReason?: string;
  ttlSeconds?: number;
  /** When the provider key itself expires (RFC 3339): past it keybroker serves it no more. */
  keyExpiresAt?: string;
}

const REDACTED = "<redacted>";

/**
 * Resolution answers a resolve: the key to call the provider with and
 * where it came from. The key is read through `apiKey` only: printing,
 * inspecting, `String()` or `JSON.stringify` of a Resolution shows
 * `<redacted>`, so it does not end up in a log by accident.
 */
export class Resolution {
  /** The credential's kind: `api_key` (the key is `apiKey`), or another kind (its fields are `credential`). */
  readonly kind: string;
  /**
   * When the credential stops working: a short-lived credential minted
   * from the key (refresh before it); undefined for a long-lived one.
   */
  readonly expiresAt: Date | undefined;
  /** Where the key came from, e.g. `workspace`, `organization`, `hosted`. */
  readonly source: string;
  /** True when the key is the customer's own (the platform does not bill the call). */
  readonly isBYOK: boolean;
  /** The key's version in Vault. */
  readonly version: number;
  /** The scope whose pool served. */
  readonly scope: Scope;
  /** Which key of that pool served. */
  readonly keyId: string;
  /** Identifies the key (an HMAC, never the key). */
  readonly fingerprint: string | undefined;
  /** Names this answer in usage records; give it to `report`. */
  readonly resolutionId: string;
  /** Why an earlier scope did not serve; absent when the workspace's own key did. */
  readonly fallbackReason: string | undefined;
  /** How long keybroker caches the key (the local cache keeps it no longer). */
  readonly ttlSeconds: number | undefined;
  /**
   * When the provider key itself expires (its `expiresAt`): past it
   * keybroker serves it no more, and neither does the library's cache.
   */
  readonly keyExpiresAt: Date | undefined;
  readonly #apiKey: string;
  readonly #credential: Readonly<Record<string, CredentialValue>> | undefined;

  /** @internal */
  constructor(a: ResolveAnswer) {
    this.#apiKey = a.apiKey;
    this.#credential = a.credential === undefined ? undefined : credentialOf(a.credential);
    this.expiresAt = a.expiresAt === undefined ? undefined : new Date(a.expiresAt);
    this.kind = a.kind ?? "api_key";
    this.source = a.source;
    this.isBYOK = a.isBYOK;
    this.version = a.version;
    this.scope = a.scope;
    this.keyId = a.keyId;
    this.fingerprint = a.fingerprint;
    this.resolutionId = a.resolutionId;
    this.fallbackReason = a.fallbackReason;
    this.ttlSeconds = a.ttlSeconds;
    this.keyExpiresAt = a.keyExpiresAt === undefined ? undefined : new Date(a.keyExpiresAt);
  }

  /** The provider key. Keep it out of logs. */
  get apiKey(): string {
    return this.#apiKey;
  }

  /**
   * The credential's fields, for kinds other than `api_key`: a string, or
   * an object of strings for a map field. Keep it out of logs.
   */
  get credential(): Readonly<Record<string, CredentialValue>> | undefined {
    return this.#credential;
  }

  /**
   * The `aws_bedrock` credential by its fields (a session, or a Bedrock API
   * key, with the region and the model map). Throws a CredentialKindError
   * (a TypeError) when the answer is of another kind.
   */
  bedrock(): BedrockCredential {
    return bedrockOf(this.kind, this.#credential, this.expiresAt);
  }

  /**
   * The `azure_openai` credential by its fields (an Entra access token, or
   * the resource's API key, with the endpoint, the api-version and the
   * deployments). Throws a CredentialKindError when the answer is of
   * another kind.
   */
  azureOpenAI(): AzureOpenAICredential {
    return azureOpenAIOf(this.kind, this.#credential, this.expiresAt);
  }

  /**
   * The `gcp_vertex` credential by its fields (an access token, with the
   * project and the location). Throws a CredentialKindError when the answer
   * is of another kind.
   */
  vertex(): VertexCredential {
    return vertexOf(this.kind, this.#credential, this.expiresAt);
  }

  /** The answer with the key and the credential's fields redacted. */
  toJSON(): Record<string, unknown> {
    return {
      apiKey: REDACTED,
      kind: this.kind,
      credential: this.#credential === undefined ? undefined : Object.fromEntries(Object.keys(this.#credential).map((n) => [n, REDACTED])),
      expiresAt: this.expiresAt?.toISOString(),
      source: this.source,
      isBYOK: this.isBYOK,
      version: this.version,
      scope: this.scope,
      keyId: this.keyId,
      fingerprint: this.fingerprint,
      resolutionId: this.resolutionId,
      fallbackReason: this.fallbackReason,
      ttlSeconds: this.ttlSeconds,
      keyExpiresAt: this.keyExpiresAt?.toISOString(),
    };
  }

  toString(): string {
    return `Resolution{source:${this.source} scope:${this.scope} keyId:${this.keyId} apiKey:${REDACTED}}`;
  }

  [inspect.custom](): string {
    return this.toString();
  }
}

/** A field of a credential: a string, or an object of strings (a map field). */
export type CredentialValue = string | Readonly<Record<string, string>>;

/** credentialOf keeps the fields of a resolve answer's credential that are a string or an object of strings. */
function credentialOf(c: Record<string, unknown>): Readonly<Record<string, CredentialValue>> {
  const out: Record<string, CredentialValue> = {};
  for (const [name, v] of Object.entries(c)) {
    if (typeof v === "string") {
      out[name] = v;
    } else if (typeof v === "object" && v !== null && Object.values(v).every((e) => typeof e === "string")) {
      out[name] = Object.freeze({ ...(v as Record<string, string>) });
    }
  }
  return Object.freeze(out);
}

/** parseResolveAnswer checks that a resolve answer has the fields a Resolution needs. */
export function parseResolveAnswer(v: unknown): Resolution | undefined {
  if (typeof v !== "object" || v === null) return undefined;
  const a = v as Partial<ResolveAnswer>;
  const hasCredential = typeof a.credential === "object" && a.credential !== null && !Array.isArray(a.credential);
  if (typeof a.apiKey !== "string" || (a.apiKey === "" && !hasCredential) || typeof a.keyId !== "string" || typeof a.resolutionId !== "string") {
    return undefined;
  }
  if (a.expiresAt !== undefined && (typeof a.expiresAt !== "string" || Number.isNaN(Date.parse(a.expiresAt)))) {
    return undefined;
  }
  if (a.keyExpiresAt !== undefined && (typeof a.keyExpiresAt !== "string" || Number.isNaN(Date.parse(a.keyExpiresAt)))) {
    return undefined;
  }
  return new Resolution({
    apiKey: a.apiKey,
    source: String(a.source ?? ""),
    isBYOK: a.isBYOK === true,
    version: typeof a.version === "number" ? a.version : 0,
    scope: (a.scope ?? "workspace") as Scope,
    keyId: a.keyId,
    resolutionId: a.resolutionId,
    ...(typeof a.kind === "string" ? { kind: a.kind } : {}),
    ...(hasCredential ? { credential: a.credential as Record<string, unknown> } : {}),
    ...(typeof a.expiresAt === "string" ? { expiresAt: a.expiresAt } : {}),
    ...(typeof a.fingerprint === "string" ? { fingerprint: a.fingerprint } : {}),
    ...(typeof a.fallbackReason === "string" ? { fallbackReason: a.fallbackReason } : {}),
    ...(typeof a.ttlSeconds === "number" ? { ttlSeconds: a.ttlSeconds } : {}),
    ...(typeof a.keyExpiresAt === "string" ? { keyExpiresAt: a.keyExpiresAt } : {}),
  });
}

/** One field of a provider's credential kind (GET /v1/providers). */
export interface CredentialField {
  /** The field's name in a write's `credential` (`apiKey`). */
  name: string;
  /** Secret fields are never shown again after a write, only a masked preview. */
  secret: boolean;
  required: boolean;
  /** What a value looks like. */
  hint: string;
  /** `map` for a field written as an object of strings; absent for a string. */
  type?: "map";
  /** The field's name in words, for a form. */
  label: string;
  /** The way of signing in (`Provider.choices`) the field belongs to, when the kind has several. */
  choice?: string;
  /** The value is a document picked from disk (a service-account key file). */
  file?: boolean;
  /** For a map field: the words of its names and of its values. */
  mapLabels?: string[];
}

/** One of a credential kind's ways of signing in. */
export interface CredentialChoice {
  id: string;
  label: string;
  /** The fields this way needs. */
  required: string[];
}

/** A provider keybroker holds credentials for (GET /v1/providers). */
export interface Provider {
  id: string;
  displayName: string;
  formatHint: string;
  /** The credential kind (`api_key`). */
  kind: string;
  fields: CredentialField[];
  /** For a kind with several ways of signing in: the question and the ways; a credential gives the fields of exactly one. */
  choices?: { label: string; options: CredentialChoice[] };
}

/** The answer of GET /v1/providers. */
export interface ProviderList {
  providers: Provider[];
}

/** The body of POST /v1/proxy-tokens. */
export interface ProxyTokenRequest {
  /** The workspace whose keys the sandbox's calls use. */
  workspace: string;
  /** The providers it may call through the proxy (1 to 16). */
  providers: string[];
  /** The only models it may ask for (up to 32; none: any). */
  models?: string[];
  /** Its lifetime, 1 to 3600 s (default 900). */
  ttlSeconds?: number;
}

/**
 * ProxyToken is a short-lived token for the credential proxy
 * (`/proxy/{provider}/...`), minted by a resolver token for one sandbox or
 * execution: it calls the providers named, for the workspace named, and
 * never sees a key. The token is read through `token` only: printing,
 * inspecting, `String()` or `JSON.stringify` show `<redacted>`.
 */
export class ProxyToken {
  /** Names the token in the records of proxied calls (`ptk_...`); not a secret. */
  readonly id: string;
  readonly workspace: string;
  readonly providers: readonly string[];
  readonly models: readonly string[] | undefined;
  readonly expiresAt: Date;
  readonly #token: string;

  /** @internal */
  constructor(token: string, id: string, workspace: string, providers: string[], models: string[] | undefined, expiresAt: Date) {
    this.#token = token;
    this.id = id;
    this.workspace = workspace;
    this.providers = Object.freeze([...providers]);
    this.models = models === undefined ? undefined : Object.freeze([...models]);
    this.expiresAt = expiresAt;
  }

  /** The token (`kbp_...`): give it to the sandbox as its provider API key. */
  get token(): string {
    return this.#token;
  }

  /** The token's fields with the token redacted. */
  toJSON(): Record<string, unknown> {
    return { token: REDACTED, id: this.id, workspace: this.workspace, providers: this.providers, models: this.models, expiresAt: this.expiresAt };
  }

  toString(): string {
    return `ProxyToken{id:${this.id} workspace:${this.workspace} providers:${this.providers.join(",")} token:${REDACTED}}`;
  }

  [inspect.custom](): string {
    return this.toString();
  }
}

/** parseProxyToken checks that a mint answer has the fields a ProxyToken needs. */
export function parseProxyToken(v: unknown): ProxyToken | undefined {
  if (typeof v !== "object" || v === null) return undefined;
  const a = v as Record<string, unknown>;
  const strings = (x: unknown): x is string[] => Array.isArray(x) && x.every((s) => typeof s === "string");
  const expiresAt = typeof a.expiresAt === "string" ? new Date(a.expiresAt) : undefined;
  if (
    typeof a.token !== "string" ||
    !a.token.startsWith("kbp_") ||
    typeof a.id !== "string" ||
    typeof a.workspace !== "string" ||
    !strings(a.providers) ||
    (a.models !== undefined && !strings(a.models)) ||
    expiresAt === undefined ||
    Number.isNaN(expiresAt.getTime())
  ) {
    return undefined;
  }
  return new ProxyToken(a.token, a.id, a.workspace, a.providers, a.models as string[] | undefined, expiresAt);
}
