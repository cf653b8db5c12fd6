// The test ground the Node tests share: the replicas the Go test started
// (cmd/keybroker/typescript_test.go), admin calls through the operator
// token, provider keys that are recorded for the leak check, a TCP proxy
// that can cut the network, and polling.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { appendFileSync, readFileSync } from "node:fs";
import net from "node:net";

import { Client } from "../dist/index.js";

function env(name) {
  const v = process.env[name];
  assert.ok(v, `${name} is not set: run these tests through go test ./cmd/keybroker -run TypeScript`);
  return v;
}

export const adminURL = env("KEYBROKER_ADMIN_URL");
export const resolverURL = env("KEYBROKER_RESOLVER_URL");
/** The proxy replica (plain HTTP on loopback), in front of a stand-in for OpenAI. */
export const proxyURL = env("KEYBROKER_PROXY_URL");
const operatorToken = env("KEYBROKER_OPERATOR_TOKEN");
const keysFile = env("KEYBROKER_TEST_KEYS_FILE");

/** The resolver replica requires mutual TLS: its CA, and the execution path's certificate. */
export const tls = {
  ca: readFileSync(env("KEYBROKER_RESOLVER_CA_FILE")),
  cert: readFileSync(env("KEYBROKER_RESOLVER_CERT_FILE")),
  key: readFileSync(env("KEYBROKER_RESOLVER_KEY_FILE")),
};

/** Client options for the resolver replica (or for a proxy in front of it, at address). */
export function resolverOptions(token, address = resolverURL, extra = {}) {
  return { address, token, ...tls, ...extra };
}

export function randomId(prefix) {
  return prefix + randomBytes(5).toString("hex");
}

/** A key of the provider's shape, recorded so that the Go test can search for it afterwards. */
export function newKey(provider = "openai") {
  const hex = randomBytes(20).toString("hex");
  const key = provider === "anthropic" ? "sk-ant-ts" + hex : provider === "mistral" ? hex.slice(0, 32) : "sk-proj-ts" + hex;
  appendFileSync(keysFile, key + "\n");
  return key;
}

/** Records a secret (a token) for the Go test's leak search. */
export function recordSecret(secret) {
  appendFileSync(keysFile, secret + "\n");
  return secret;
}

/** An admin call with the operator token; throws on an unexpected status. */
export async function admin(method, path, body, expect = [200, 201, 204]) {
  const res = await fetch(adminURL + path, {
    method,
    headers: { authorization: `Bearer ${operatorToken}`, ...(body !== undefined ? { "content-type": "application/json" } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  assert.ok(expect.includes(res.status), `${method} ${path}: ${res.status} ${text}`);
  return text === "" ? undefined : JSON.parse(text);
}

/**
 * Waits until the resolver replica serves apiKey for the workspace and
 * provider: a replica applies another's change when its notification
 * arrives, a few milliseconds after the write's answer.
 */
export async function servedByResolver(token, ws, provider, apiKey) {
  const c = new Client(resolverOptions(token));
  try {
    await waitUntil(`the resolver replica serves the new key of ${ws}/${provider}`, 5000, async () => {
      const res = await c.resolve({ workspace: ws, provider }).catch(() => undefined);
      return res !== undefined && res.apiKey === apiKey;
    });
  } finally {
    c.close();
  }
}

/**
 * A new resolver token: { id, token }. Resolver tokens are never minted over
 * the API; the Go test minted these with the owner's `keybroker token create
 * --role resolver` and passes them in KEYBROKER_RESOLVER_TOKENS.
 */
const minted = JSON.parse(env("KEYBROKER_RESOLVER_TOKENS"));
// Each test file runs in a process of its own (one at a time): the tokens
// taken so far are counted in a file, so that no two tests share one (a
// test revokes its own).
const claimedFile = env("KEYBROKER_RESOLVER_TOKENS_CLAIMED");
export async function resolverToken() {
  let taken = 0;
  try {
    taken = readFileSync(claimedFile, "utf8").length;
  } catch {
    taken = 0;
  }
  appendFileSync(claimedFile, "x");
  const t = minted[taken];
  if (t === undefined) assert.fail("no minted resolver token left: mint more in cmd/keybroker/typescript_test.go");
  return { id: t.id, token: t.token };
}

/** Polls ok() every 2 ms until it is true; fails after withinMs. Returns how long it took. */
export async function waitUntil(what, withinMs, ok) {
  const start = performance.now();
  for (;;) {
    if (await ok()) return performance.now() - start;
    if (performance.now() - start > withinMs) assert.fail(`${what}: not within ${withinMs} ms`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** A TCP proxy to target whose connections the test can cut, and which can refuse new ones. */
export async function cuttable(target) {
  const { hostname, port } = new URL(target);
  const conns = new Set();
  let refused = false;
  const server = net.createServer((inbound) => {
    if (refused) {
      inbound.destroy();
      return;
    }
    const outbound = net.connect(Number(port), hostname);
    conns.add(inbound).add(outbound);
    const drop = () => {
      inbound.destroy();
      outbound.destroy();
      conns.delete(inbound);
      conns.delete(outbound);
    };
    inbound.on("error", drop).on("close", drop);
    outbound.on("error", drop).on("close", drop);
    inbound.pipe(outbound);
    outbound.pipe(inbound);
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `${new URL(target).protocol}//127.0.0.1:${server.address().port}`,
    cut(refuse) {
      refused = refuse;
      for (const c of conns) c.destroy();
      conns.clear();
    },
    allow() {
      refused = false;
    },
    close() {
      refused = true;
      for (const c of conns) c.destroy();
      return new Promise((r) => server.close(r));
    },
  };
}

/** A logger that keeps what it is given, to search it. */
export function recordingLogger() {
  const lines = [];
  return {
    lines,
    info: (msg, attrs) => lines.push(`INFO ${msg} ${JSON.stringify(attrs ?? {})}`),
    warn: (msg, attrs) => lines.push(`WARN ${msg} ${JSON.stringify(attrs ?? {})}`),
  };
}
