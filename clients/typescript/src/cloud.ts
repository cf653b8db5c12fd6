/**
 * Typed views of a resolve answer's cloud credential (`resolution.bedrock()`,
 * `azureOpenAI()`, `vertex()`): the fields of each kind by name, so that a
 * program need not know them. A view's secret fields are getters over
 * private fields: printing, `util.inspect`, `String()` and
 * `JSON.stringify` show the non-secret fields and a masked preview of each
 * secret one, never a secret.
 */
import { inspect } from "node:util";

import { CredentialKindError } from "./errors.js";
import type { CredentialValue } from "./types.js";

/** The credential kinds of the three clouds (`Resolution.kind`). */
export const KIND_AWS_BEDROCK = "aws_bedrock";
export const KIND_AZURE_OPENAI = "azure_openai";
export const KIND_GCP_VERTEX = "gcp_vertex";

/**
 * Credentials as the AWS SDK for JavaScript v3 takes them (an
 * `AwsCredentialIdentity`): give `() => Promise.resolve(c)` as a client's
 * `credentials`. A plain object: keep it out of logs.
 */
export interface AwsCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
  expiration?: Date;
}

/**
 * An `aws_bedrock` answer: an STS session (accessKeyId, secretAccessKey,
 * sessionToken) that stops working at `expiresAt`; or a Bedrock API key
 * (`bedrockApiKey`, no expiry); or, only for a provider whose long-lived
 * credentials the operator exposes, the key pair itself with the role to
 * assume.
 */
export interface BedrockCredential {
  readonly kind: "aws_bedrock";
  /** The AWS region where Bedrock runs. */
  readonly region: string;
  readonly accessKeyId: string | undefined;
  readonly secretAccessKey: string | undefined;
  readonly sessionToken: string | undefined;
  readonly bedrockApiKey: string | undefined;
  /** Only with an exposed long-lived key pair. */
  readonly roleArn: string | undefined;
  readonly externalId: string | undefined;
  readonly sessionName: string | undefined;
  /** A caller's model name → inference profile id or ARN. */
  readonly modelMap: Readonly<Record<string, string>>;
  /** When the session stops working; undefined for a long-lived credential. */
  readonly expiresAt: Date | undefined;
  /** The id or ARN to call for model: its modelMap entry, else model. */
  modelId(model: string): string;
  /** Bedrock's runtime in the region: `https://bedrock-runtime.<region>.amazonaws.com`. */
  runtimeEndpoint(): string;
  /** The key pair or session as the AWS SDK takes it; throws a TypeError for a Bedrock API key. */
  awsCredentials(): AwsCredentials;
}

/**
 * An `azure_openai` answer: an Entra access token (a bearer token) that
 * stops working at `expiresAt`; or the resource's API key (`apiKey`, sent
 * as `api-key`; no expiry); or, only for a provider whose long-lived
 * credentials the operator exposes, the Entra client credentials.
 */
export interface AzureOpenAICredential {
  readonly kind: "azure_openai";
  /** The resource: `https://<resource>.openai.azure.com`. */
  readonly endpoint: string;
  /** The api-version of Azure's own paths. */
  readonly apiVersion: string | undefined;
  readonly apiKey: string | undefined;
  readonly accessToken: string | undefined;
  /** Only with exposed long-lived Entra client credentials. */
  readonly tenantId: string | undefined;
  readonly clientId: string | undefined;
  readonly clientSecret: string | undefined;
  /** A model name → the resource's deployment that serves it. */
  readonly deployments: Readonly<Record<string, string>>;
  readonly expiresAt: Date | undefined;
  /** The deployment that serves model, or undefined. */
  deployment(model: string): string | undefined;
}

/**
 * A `gcp_vertex` answer: a Google access token minted from the service
 * account (a bearer token) that stops working at `expiresAt`; or, only for
 * a provider whose long-lived credentials the operator exposes, the
 * service account's key file.
 */
export interface VertexCredential {
  readonly kind: "gcp_vertex";
  readonly project: string;
  readonly location: string;
  readonly accessToken: string | undefined;
  /** Only with an exposed long-lived key file. */
  readonly serviceAccountJson: string | undefined;
  readonly expiresAt: Date | undefined;
  /** `https://<location>-aiplatform.googleapis.com`, or `https://aiplatform.googleapis.com` for `global`. */
  baseURL(): string;
}

type Fields = Readonly<Record<string, CredentialValue>>;

/** The masked preview keybroker's answers show: ≤ 8 characters → 8 dots; ≤ 12 → first 4...last 4; else first 6...last 4; a document shows nothing of itself. */
export function maskSecret(s: string): string {
  if (s.length <= 8 || s.includes("\n") || s.includes("{")) return "••••••••";
  if (s.length <= 12) return `${s.slice(0, 4)}...${s.slice(-4)}`;
  return `${s.slice(0, 6)}...${s.slice(-4)}`;
}

/** A view's fields as printing shows them: the non-secret ones as they are, the secret ones masked, absent ones left out. */
type Shown = Array<[name: string, value: string | Readonly<Record<string, string>> | Date | undefined, secret: boolean]>;

function shownJSON(shown: Shown): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, v, secret] of shown) {
    if (v === undefined || (typeof v === "object" && !(v instanceof Date) && Object.keys(v).length === 0)) continue;
    out[name] = secret && typeof v === "string" ? maskSecret(v) : v instanceof Date ? v.toISOString() : v;
  }
  return out;
}

function shownText(type: string, shown: Shown): string {
  const parts = Object.entries(shownJSON(shown)).map(([n, v]) => `${n}:${typeof v === "string" ? v : JSON.stringify(v)}`);
  return `${type}{${parts.join(" ")}}`;
}

/** Reads a view's fields from a resolution's credential, naming the first one that is missing. */
class Reader {
  constructor(
    private readonly kind: string,
    private readonly fields: Fields,
  ) {}

  str(name: string): string | undefined {
    const v = this.fields[name];
    return typeof v === "string" && v !== "" ? v : undefined;
  }

  map(name: string): Readonly<Record<string, string>> {
    const v = this.fields[name];
    return typeof v === "object" ? v : Object.freeze({});
  }

  /** Throws a TypeError unless one of the groups of fields is all present. */
  need(...groups: string[][]): void {
    if (groups.some((g) => g.every((n) => this.str(n) !== undefined))) return;
    const want = groups.map((g) => g.join("+"));
    throw new TypeError(`keybroker: the ${this.kind} credential ${want.length === 1 ? "lacks" : "has none of"} ${want.join(", ")}`);
  }
}

function reader(want: string, kind: string, fields: Fields | undefined): Reader {
  if (kind !== want) throw new CredentialKindError(want, kind);
  return new Reader(want, fields ?? {});
}

class Bedrock implements BedrockCredential {
  readonly kind = "aws_bedrock" as const;
  readonly region: string;
  readonly roleArn: string | undefined;
  readonly externalId: string | undefined;
  readonly sessionName: string | undefined;
  readonly modelMap: Readonly<Record<string, string>>;
  readonly expiresAt: Date | undefined;
  readonly #accessKeyId: string | undefined;
  readonly #secretAccessKey: string | undefined;
  readonly #sessionToken: string | undefined;
  readonly #bedrockApiKey: string | undefined;

  constructor(r: Reader, expiresAt: Date | undefined) {
    r.need(["region"]);
    r.need(["accessKeyId", "secretAccessKey"], ["bedrockApiKey"]);
    this.region = r.str("region") ?? "";
    this.#accessKeyId = r.str("accessKeyId");
    this.#secretAccessKey = r.str("secretAccessKey");
    this.#sessionToken = r.str("sessionToken");
    this.#bedrockApiKey = r.str("bedrockApiKey");
    this.roleArn = r.str("roleArn");
    this.externalId = r.str("externalId");
    this.sessionName = r.str("sessionName");
    this.modelMap = r.map("modelMap");
    this.expiresAt = expiresAt;
  }

  get accessKeyId(): string | undefined {
    return this.#accessKeyId;
  }
  get secretAccessKey(): string | undefined {
    return this.#secretAccessKey;
  }
  get sessionToken(): string | undefined {
    return this.#sessionToken;
  }
  get bedrockApiKey(): string | undefined {
    return this.#bedrockApiKey;
  }

  modelId(model: string): string {
    return this.modelMap[model] || model;
  }

  runtimeEndpoint(): string {
    return `https://bedrock-runtime.${this.region}.amazonaws.com`;
  }

  awsCredentials(): AwsCredentials {
    if (this.#accessKeyId === undefined || this.#secretAccessKey === undefined) {
      throw new TypeError("keybroker: this aws_bedrock credential is a Bedrock API key (bedrockApiKey), not AWS credentials");
    }
    return {
      accessKeyId: this.#accessKeyId,
      secretAccessKey: this.#secretAccessKey,
      ...(this.#sessionToken !== undefined ? { sessionToken: this.#sessionToken } : {}),
      ...(this.expiresAt !== undefined ? { expiration: this.expiresAt } : {}),
    };
  }

  #shown(): Shown {
    return [
      ["kind", this.kind, false],
      ["region", this.region, false],
      ["accessKeyId", this.#accessKeyId, true],
      ["secretAccessKey", this.#secretAccessKey, true],
      ["sessionToken", this.#sessionToken, true],
      ["bedrockApiKey", this.#bedrockApiKey, true],
      ["roleArn", this.roleArn, false],
      ["externalId", this.externalId, false],
      ["sessionName", this.sessionName, false],
      ["modelMap", this.modelMap, false],
      ["expiresAt", this.expiresAt, false],
    ];
  }

  /** The non-secret fields and the masks. */
  toJSON(): Record<string, unknown> {
    return shownJSON(this.#shown());
  }
  toString(): string {
    return shownText("BedrockCredential", this.#shown());
  }
  [inspect.custom](): string {
    return this.toString();
  }
}

class AzureOpenAI implements AzureOpenAICredential {
  readonly kind = "azure_openai" as const;
  readonly endpoint: string;
  readonly apiVersion: string | undefined;
  readonly tenantId: string | undefined;
  readonly clientId: string | undefined;
  readonly deployments: Readonly<Record<string, string>>;
  readonly expiresAt: Date | undefined;
  readonly #apiKey: string | undefined;
  readonly #accessToken: string | undefined;
  readonly #clientSecret: string | undefined;

  constructor(r: Reader, expiresAt: Date | undefined) {
    r.need(["endpoint"]);
    r.need(["accessToken"], ["apiKey"], ["tenantId", "clientId", "clientSecret"]);
    this.endpoint = r.str("endpoint") ?? "";
    this.apiVersion = r.str("apiVersion");
    this.#apiKey = r.str("apiKey");
    this.#accessToken = r.str("accessToken");
    this.tenantId = r.str("tenantId");
    this.clientId = r.str("clientId");
    this.#clientSecret = r.str("clientSecret");
    this.deployments = r.map("deployments");
    this.expiresAt = expiresAt;
  }

  get apiKey(): string | undefined {
    return this.#apiKey;
  }
  get accessToken(): string | undefined {
    return this.#accessToken;
  }
  get clientSecret(): string | undefined {
    return this.#clientSecret;
  }

  deployment(model: string): string | undefined {
    return Object.hasOwn(this.deployments, model) && this.deployments[model] !== "" ? this.deployments[model] : undefined;
  }

  #shown(): Shown {
    return [
      ["kind", this.kind, false],
      ["endpoint", this.endpoint, false],
      ["apiVersion", this.apiVersion, false],
      ["apiKey", this.#apiKey, true],
      ["accessToken", this.#accessToken, true],
      ["tenantId", this.tenantId, false],
      ["clientId", this.clientId, false],
      ["clientSecret", this.#clientSecret, true],
      ["deployments", this.deployments, false],
      ["expiresAt", this.expiresAt, false],
    ];
  }

  /** The non-secret fields and the masks. */
  toJSON(): Record<string, unknown> {
    return shownJSON(this.#shown());
  }
  toString(): string {
    return shownText("AzureOpenAICredential", this.#shown());
  }
  [inspect.custom](): string {
    return this.toString();
  }
}

class Vertex implements VertexCredential {
  readonly kind = "gcp_vertex" as const;
  readonly project: string;
  readonly location: string;
  readonly expiresAt: Date | undefined;
  readonly #accessToken: string | undefined;
  readonly #serviceAccountJson: string | undefined;

  constructor(r: Reader, expiresAt: Date | undefined) {
    r.need(["project", "location"]);
    r.need(["accessToken"], ["serviceAccountJson"]);
    this.project = r.str("project") ?? "";
    this.location = r.str("location") ?? "";
    this.#accessToken = r.str("accessToken");
    this.#serviceAccountJson = r.str("serviceAccountJson");
    this.expiresAt = expiresAt;
  }

  get accessToken(): string | undefined {
    return this.#accessToken;
  }
  get serviceAccountJson(): string | undefined {
    return this.#serviceAccountJson;
  }

  baseURL(): string {
    return this.location === "global" || this.location === "" ? "https://aiplatform.googleapis.com" : `https://${this.location}-aiplatform.googleapis.com`;
  }

  #shown(): Shown {
    return [
      ["kind", this.kind, false],
      ["project", this.project, false],
      ["location", this.location, false],
      ["accessToken", this.#accessToken, true],
      ["serviceAccountJson", this.#serviceAccountJson, true],
      ["expiresAt", this.expiresAt, false],
    ];
  }

  /** The non-secret fields and the masks. */
  toJSON(): Record<string, unknown> {
    return shownJSON(this.#shown());
  }
  toString(): string {
    return shownText("VertexCredential", this.#shown());
  }
  [inspect.custom](): string {
    return this.toString();
  }
}

/** @internal */
export function bedrockOf(kind: string, fields: Fields | undefined, expiresAt: Date | undefined): BedrockCredential {
  return new Bedrock(reader(KIND_AWS_BEDROCK, kind, fields), expiresAt);
}

/** @internal */
export function azureOpenAIOf(kind: string, fields: Fields | undefined, expiresAt: Date | undefined): AzureOpenAICredential {
  return new AzureOpenAI(reader(KIND_AZURE_OPENAI, kind, fields), expiresAt);
}

/** @internal */
export function vertexOf(kind: string, fields: Fields | undefined, expiresAt: Date | undefined): VertexCredential {
  return new Vertex(reader(KIND_GCP_VERTEX, kind, fields), expiresAt);
}
