/**
 * Platform assertions: the short JWTs a platform's backend signs to call
 * keybroker's admin API for one of its users (docs/platforms.md). The
 * claims and algorithms are those of the Go library's SignAssertion.
 */
import { createPrivateKey, randomBytes, sign, type KeyObject } from "node:crypto";

/** The longest an assertion may live. */
export const MAX_ASSERTION_TTL_SECONDS = 300;

/** What an assertion says. */
export interface AssertionClaims {
  /** The platform's registered issuer. */
  issuer: string;
  /** keybroker's configured audience (`--assertion-audience`). */
  audience: string;
  /** The platform's id of the user. */
  subject: string;
  /** The user's name and email, for keybroker's audit trail. */
  name?: string;
  email?: string;
  /** Workspace and organization ids → "admin" or "reader". */
  workspaces?: Record<string, "admin" | "reader">;
  organizations?: Record<string, "admin" | "reader">;
  /** Lifetime in seconds: at most 300; default 60. */
  ttlSeconds?: number;
}

function b64url(b: Buffer | string): string {
  return Buffer.from(b).toString("base64url");
}

/** The JWS algorithm of a private key, as the Go library picks it. */
function algorithmOf(key: KeyObject): "RS256" | "ES256" | "ES384" | "EdDSA" {
  const d = key.asymmetricKeyDetails ?? {};
  switch (key.asymmetricKeyType) {
    case "rsa":
      if ((d.modulusLength ?? 0) < 2048) throw new TypeError("signAssertion: an RSA key must have at least 2048 bits");
      return "RS256";
    case "ec":
      if (d.namedCurve === "prime256v1" || d.namedCurve === "P-256") return "ES256";
      if (d.namedCurve === "secp384r1" || d.namedCurve === "P-384") return "ES384";
      throw new TypeError("signAssertion: an ECDSA key must be on P-256 or P-384");
    case "ed25519":
      return "EdDSA";
  }
  throw new TypeError("signAssertion: the key must be RSA, ECDSA (P-256, P-384) or Ed25519");
}

/**
 * Signs an assertion with the platform's private key (a KeyObject or a
 * PEM string) under key id `kid`, with a fresh `jti`; keybroker accepts
 * each assertion once.
 */
export function signAssertion(privateKey: KeyObject | string, kid: string, claims: AssertionClaims): string {
  const key = typeof privateKey === "string" ? createPrivateKey(privateKey) : privateKey;
  if (key.type !== "private") throw new TypeError("signAssertion: a private key is needed");
  if (!kid) throw new TypeError("signAssertion: the kid is required");
  if (!claims.issuer || !claims.audience || !claims.subject) throw new TypeError("signAssertion: issuer, audience and subject are required");
  const ttl = claims.ttlSeconds ?? 60;
  if (!(ttl > 0 && ttl <= MAX_ASSERTION_TTL_SECONDS)) throw new RangeError(`signAssertion: ttlSeconds must be within (0, ${MAX_ASSERTION_TTL_SECONDS}]`);
  for (const roles of [claims.workspaces ?? {}, claims.organizations ?? {}]) {
    for (const r of Object.values(roles)) {
      if (r !== "admin" && r !== "reader") throw new TypeError('signAssertion: a role must be "admin" or "reader"');
    }
  }
  const alg = algorithmOf(key);
  const now = Math.floor(Date.now() / 1000);
  const body: Record<string, unknown> = {
    iss: claims.issuer, aud: [claims.audience], sub: claims.subject, iat: now, exp: now + Math.floor(ttl), jti: b64url(randomBytes(16)),
  };
  if (claims.name) body.name = claims.name;
  if (claims.email) body.email = claims.email;
  const ws = claims.workspaces ?? {}, orgs = claims.organizations ?? {};
  if (Object.keys(ws).length || Object.keys(orgs).length) {
    body.keybroker = { ...(Object.keys(ws).length ? { workspaces: ws } : {}), ...(Object.keys(orgs).length ? { organizations: orgs } : {}) };
  }
  const input = b64url(JSON.stringify({ alg, kid, typ: "JWT" })) + "." + b64url(JSON.stringify(body));
  const digest = alg === "EdDSA" ? null : alg === "ES384" ? "sha384" : "sha256";
  const signature = sign(digest, Buffer.from(input), alg.startsWith("ES") ? { key, dsaEncoding: "ieee-p1363" } : key);
  return input + "." + b64url(signature);
}
