// The Resolver against two real keybroker replicas (admin and resolver)
// over the real Vault and PostgreSQL: every change is made through the
// admin replica and must reach a Resolver connected to the resolver
// replica through the watch stream.
import assert from "node:assert/strict";
import { before, describe, test } from "node:test";
import { inspect } from "node:util";

import { Client, KeybrokerError, Resolution, Resolver, RevokedError, UnavailableError } from "../dist/index.js";
import { admin, cuttable, newKey, randomId, recordingLogger, resolverToken, resolverURL, resolverOptions, servedByResolver, tls, waitUntil } from "./ground.mjs";

const keyPath = (ws, provider) => `/v1/workspaces/${ws}/keys/${provider}`;
const poolPath = (ws, provider) => `/v1/workspaces/${ws}/providers/${provider}/keys`;

describe("Resolver", () => {
  let token;
  before(async () => {
    token = await resolverToken();
  });

  async function open(options = {}) {
    const r = new Resolver({ client: resolverOptions(token.token), ...options });
    await r.ready();
    return r;
  }

  test("answers hits from memory, and 1,000 concurrent misses send one request", async (t) => {
    const ws = randomId("ts");
    const key = newKey();
    await admin("PUT", keyPath(ws, "openai"), { apiKey: key });
    await servedByResolver(token.token, ws, "openai", key);
    const r = await open();
    t.after(() => r.close());

    const answers = await Promise.all(Array.from({ length: 1000 }, () => r.resolve(ws, "openai")));
    assert.equal(r.requests, 1);
    for (const a of answers) assert.equal(a.apiKey, key);
    assert.equal(answers[0].isBYOK, true);
    assert.equal(answers[0].scope, "workspace");
    assert.ok(answers[0].ttlSeconds > 0, "the answer carries the server's TTL");

    for (let i = 0; i < 100; i++) assert.equal((await r.resolve(ws, "openai")).apiKey, key);
    assert.equal(r.requests, 1, "hits make no request");
    assert.equal(r.size, 1);
  });

  test("a rotation and a deletion through the admin replica are evicted by the stream", async (t) => {
    const ws = randomId("ts");
    const first = newKey();
    await admin("PUT", keyPath(ws, "openai"), { apiKey: first });
    await servedByResolver(token.token, ws, "openai", first);
    const r = await open();
    t.after(() => r.close());
    assert.equal((await r.resolve(ws, "openai")).apiKey, first);

    // The library serves the new key once the stream evicted the old one
    // (well within the answer's 30 s TTL). An eviction may come first for
    // an earlier announcement (the creation's, heard late), and the replica
    // answers what it knows until it hears of the write: the library is
    // asked until it serves the new key.
    const second = newKey();
    const start = performance.now();
    await admin("PUT", keyPath(ws, "openai"), { apiKey: second });
    await waitUntil("the rotation reaches the library", 5000, async () => (await r.resolve(ws, "openai")).apiKey === second);
    const reach = performance.now() - start;
    t.diagnostic(`a rotation, from the write sent to the library serving it: ${reach.toFixed(1)} ms`);

    await admin("DELETE", keyPath(ws, "openai"));
    await waitUntil("the deletion reaches the library", 5000, async () => {
      try {
        await r.resolve(ws, "openai");
        return false;
      } catch (err) {
        assert.ok(err instanceof KeybrokerError && err.status === 404 && err.code === "no_key", `the deletion: ${err}`);
        return true;
      }
    });
  });

  test("a pool change and a health report reach the library", async (t) => {
    const ws = randomId("ts");
    const a = newKey("anthropic");
    const b = newKey("anthropic");
    await admin("POST", poolPath(ws, "anthropic"), { keyId: "a", name: "first", apiKey: a, priority: 0 });
    await admin("POST", poolPath(ws, "anthropic"), { keyId: "b", name: "second", apiKey: b, priority: 1 });
    await servedByResolver(token.token, ws, "anthropic", a);
    const r = await open();
    t.after(() => r.close());
    assert.equal((await r.resolve(ws, "anthropic")).keyId, "a");

    // Disabling the first key makes the second serve.
    await admin("PATCH", `${poolPath(ws, "anthropic")}/a`, { state: "disabled" });
    await waitUntil("the pool change evicts the answer", 5000, () => r.size === 0);
    const served = await r.resolve(ws, "anthropic");
    assert.equal(served.keyId, "b");
    assert.equal(served.apiKey, b);

    // The provider refused the second key: the report marks it, and the
    // change comes back on the stream and evicts the pool's answers.
    const before = r.requests;
    const rep = await r.report(served.resolutionId, "unauthorized");
    assert.equal(rep.keyId, "b");
    assert.equal(rep.changed, true);
    await waitUntil("the health change evicts the answer", 5000, () => r.size === 0);
    await assert.rejects(r.resolve(ws, "anthropic"), (err) => err instanceof KeybrokerError && err.status >= 400);
    assert.equal(r.requests, before + 1, "the next resolve asked keybroker again");
  });

  test("a report about a shared key drops the answer at once: nothing comes on the stream", async (t) => {
    const ws = randomId("ts");
    const org = randomId("org");
    await admin("POST", `/v1/organizations/${org}/providers/mistral/keys`, { keyId: "shared", apiKey: newKey("mistral") });
    await admin("PUT", `/v1/workspaces/${ws}/settings`, { organization: org, inherit: true, hostedFallback: false });
    const r = await open();
    t.after(() => r.close());
    await waitUntil("the resolver replica serves the organization's key", 5000, async () =>
      (await r.resolve(ws, "mistral").catch(() => undefined))?.scope === "organization");
    const served = await r.resolve(ws, "mistral");
    const before = r.requests;
    // The organization's key cools down for this workspace alone: keybroker
    // announces nothing, so the library must forget the answer itself.
    await r.report(served.resolutionId, "rate_limited", 60);
    await assert.rejects(r.resolve(ws, "mistral"), (err) => err instanceof KeybrokerError && err.status === 429);
    assert.equal(r.requests, before + 1, "the next resolve asked keybroker again");
  });

  test("a settings change reaches the library", async (t) => {
    const ws = randomId("ts");
    const org = randomId("org");
    const orgKey = newKey("mistral");
    await admin("POST", `/v1/organizations/${org}/providers/mistral/keys`, { keyId: "shared", apiKey: orgKey });
    await admin("PUT", `/v1/workspaces/${ws}/settings`, { organization: org, inherit: true });
    await servedByResolver(token.token, ws, "mistral", orgKey);
    const r = await open();
    t.after(() => r.close());
    const inherited = await r.resolve(ws, "mistral");
    assert.equal(inherited.apiKey, orgKey);
    assert.equal(inherited.scope, "organization");

    await admin("PUT", `/v1/workspaces/${ws}/settings`, { inherit: false, hostedFallback: false });
    await waitUntil("the settings change evicts the answer", 5000, () => r.size === 0);
    await assert.rejects(r.resolve(ws, "mistral"), (err) => err instanceof KeybrokerError && err.status === 404);
  });

  test("with the stream cut, no answer older than the bound is served, and the reconnection flushes", async (t) => {
    const ws = randomId("ts");
    const first = newKey();
    await admin("PUT", keyPath(ws, "openai"), { apiKey: first });
    await servedByResolver(token.token, ws, "openai", first);
    const proxy = await cuttable(resolverURL);
    t.after(() => proxy.close());
    const logger = recordingLogger();
    const boundMs = 1500;
    const r = new Resolver({ client: resolverOptions(token.token, proxy.url, { timeoutMs: 2000 }), maxDisconnectedAgeMs: boundMs, logger });
    t.after(() => r.close());
    await r.ready();
    assert.equal((await r.resolve(ws, "openai")).apiKey, first);
    const cachedAt = performance.now();

    proxy.cut(true);
    await waitUntil("the library sees the stream down", 5000, () => !r.connected);
    // The key rotates while the library cannot hear of it.
    const second = newKey();
    await admin("PUT", keyPath(ws, "openai"), { apiKey: second });
    // Within the bound the cached answer still serves (exactness is
    // bounded, not perfect, while the library cannot hear of changes).
    const requests = r.requests;
    assert.equal((await r.resolve(ws, "openai")).apiKey, first);
    assert.equal(r.requests, requests);
    assert.ok(performance.now() - cachedAt < boundMs, "the check above ran within the bound");
    await new Promise((res) => setTimeout(res, Math.max(0, boundMs - (performance.now() - cachedAt)) + 20));
    await assert.rejects(r.resolve(ws, "openai"), (err) => err instanceof UnavailableError, "past the bound nothing is served");

    proxy.allow();
    await r.ready(15_000);
    assert.equal(r.size, 0, "the reconnection flushed the cache");
    assert.equal((await r.resolve(ws, "openai")).apiKey, second);
    assert.ok(logger.lines.some((l) => l.includes("reconnecting")), "the drop was logged");
  });

  test("stale-if-error serves a cached answer while keybroker cannot be reached", async (t) => {
    const ws = randomId("ts");
    const key = newKey();
    await admin("PUT", keyPath(ws, "openai"), { apiKey: key });
    await servedByResolver(token.token, ws, "openai", key);
    const proxy = await cuttable(resolverURL);
    t.after(() => proxy.close());
    const logs = recordingLogger();
    const r = new Resolver({
      client: resolverOptions(token.token, proxy.url, { timeoutMs: 2000 }),
      maxDisconnectedAgeMs: 100,
      staleIfErrorMs: 60_000,
      logger: logs,
    });
    t.after(() => r.close());
    await r.ready().catch((e) => { throw new Error(e.message + "\n" + logs.lines.join("\n")); });
    await r.resolve(ws, "openai");
    proxy.cut(true);
    await waitUntil("the library sees the stream down", 5000, () => !r.connected);
    await new Promise((res) => setTimeout(res, 150));
    const before = r.requests;
    assert.equal((await r.resolve(ws, "openai")).apiKey, key);
    assert.equal(r.requests, before + 1, "it tried keybroker first");
  });

  test("an answer is kept no longer than its key's expiry, in memory or stale", async (t) => {
    const ws = randomId("ts");
    const key = newKey();
    await admin("PUT", keyPath(ws, "openai"), { apiKey: key });
    const expires = new Date(Date.now() + 4000);
    await admin("PATCH", `${poolPath(ws, "openai")}/default`, { expiresAt: expires.toISOString() });
    const c = new Client(resolverOptions(token.token));
    try {
      let last;
      await waitUntil("the resolver replica answers the key's expiry", 3000, async () => {
        const res = await c.resolve({ workspace: ws, provider: "openai" }).catch((e) => e);
        last = res;
        return res.apiKey === key && res.keyExpiresAt?.getTime() === expires.getTime();
      }).catch((e) => { throw new Error(`${e.message}; last answer ${inspect(last)} ${last?.keyExpiresAt}`); });
    } finally {
      c.close();
    }
    const proxy = await cuttable(resolverURL);
    t.after(() => proxy.close());
    // Neither the stream being down (an hour allowed) nor the server's TTL
    // (30 s) would drop the answer before the key's expiry.
    const r = new Resolver({
      client: resolverOptions(token.token, proxy.url, { timeoutMs: 2000 }),
      maxDisconnectedAgeMs: 3_600_000,
      staleIfErrorMs: 3_600_000,
    });
    t.after(() => r.close());
    await r.ready();
    const held = await r.resolve(ws, "openai");
    assert.equal(held.apiKey, key);
    assert.equal(held.keyExpiresAt.getTime(), expires.getTime());
    proxy.cut(true);
    assert.equal((await r.resolve(ws, "openai")).apiKey, key, "before the expiry the answer is held");
    await new Promise((res) => setTimeout(res, expires.getTime() - Date.now() + 100));
    await assert.rejects(r.resolve(ws, "openai"), (err) => err instanceof UnavailableError,
      "past the key's expiry the answer is neither served from memory nor served stale");
  });

  test("a revoked token empties the library for good", async (t) => {
    const own = await resolverToken("revoked in the test");
    const ws = randomId("ts");
    const key = newKey();
    await admin("PUT", keyPath(ws, "openai"), { apiKey: key });
    await servedByResolver(own.token, ws, "openai", key);
    const logger = recordingLogger();
    const r = new Resolver({ client: resolverOptions(own.token), logger });
    t.after(() => r.close());
    await r.ready();
    await r.resolve(ws, "openai");
    assert.equal(r.size, 1);

    await admin("DELETE", `/v1/tokens/${own.id}`);
    await waitUntil("the library hears of the revocation", 5000, () => r.revoked);
    assert.equal(r.size, 0);
    await assert.rejects(r.resolve(ws, "openai"), RevokedError);
    assert.ok(logger.lines.some((l) => l.startsWith("WARN") && l.includes("revoked")));
    assert.ok(!logger.lines.some((l) => l.includes(own.token)), "the token is not logged");
  });

  test("the cache is bounded in entries, the oldest answer going first", async (t) => {
    const wss = Array.from({ length: 5 }, () => randomId("ts"));
    for (const ws of wss) {
      const key = newKey();
      await admin("PUT", keyPath(ws, "openai"), { apiKey: key });
      await servedByResolver(token.token, ws, "openai", key);
    }
    const r = await open({ maxEntries: 3 });
    t.after(() => r.close());
    for (const ws of wss) await r.resolve(ws, "openai");
    assert.equal(r.size, 3);
    assert.equal(r.requests, 5);
    await r.resolve(wss[4], "openai");
    assert.equal(r.requests, 5, "the newest is still held");
    await r.resolve(wss[0], "openai");
    assert.equal(r.requests, 6, "the oldest was dropped");
  });

  test("a refused token ends in RevokedError without retrying", async () => {
    const r = new Resolver({ client: resolverOptions("kbt_notatoken"), logger: recordingLogger() });
    await assert.rejects(r.ready(), RevokedError);
    assert.equal(r.revoked, true);
    await r.close();
  });

  test("keys never show in a print, an inspection, JSON or an error", async (t) => {
    const ws = randomId("ts");
    const key = newKey();
    await admin("PUT", keyPath(ws, "openai"), { apiKey: key });
    await servedByResolver(token.token, ws, "openai", key);
    const logger = recordingLogger();
    const r = await open({ logger });
    t.after(() => r.close());
    const res = await r.resolve(ws, "openai");
    assert.ok(res instanceof Resolution);
    assert.equal(res.apiKey, key);
    for (const shown of [String(res), `${res}`, inspect(res), inspect(res, { showHidden: true, getters: true, depth: 10 }), JSON.stringify(res), JSON.stringify({ res }), inspect(r, { showHidden: true, depth: 10 }), inspect({ r })]) {
      assert.ok(!shown.includes(key), `the key shows in ${shown}`);
    }
    assert.match(JSON.stringify(res), /<redacted>/);
    assert.equal(Object.keys(res).includes("apiKey"), false, "the key is not an own enumerable field");
    const err = await r.resolve(ws, "no-such-provider").catch((e) => e);
    assert.ok(err instanceof KeybrokerError);
    assert.ok(!inspect(err).includes(key) && !inspect(err).includes(token.token));
    assert.ok(!logger.lines.join("\n").includes(key));
  });
});

describe("Client", () => {
  test("refuses bad options", () => {
    assert.throws(() => new Client({ address: "not a url", token: "x" }), TypeError);
    assert.throws(() => new Client({ address: "ftp://127.0.0.1", token: "x" }), TypeError);
    assert.throws(() => new Client({ address: resolverURL, token: "" }), TypeError);
    assert.throws(() => new Resolver({}), TypeError);
  });

  test("maps keybroker's errors and an unreachable keybroker", async () => {
    const wrong = new Client(resolverOptions("kbt_wrong"));
    await assert.rejects(wrong.resolve({ workspace: "ws1", provider: "openai" }), (err) => {
      assert.ok(err instanceof KeybrokerError);
      assert.equal(err.status, 401);
      assert.equal(err.code, "unauthenticated");
      assert.ok(err.requestId, "the request id is kept");
      assert.ok(!err.message.includes("kbt_wrong"));
      return true;
    });
    wrong.close();

    const token = await resolverToken();
    const c = new Client(resolverOptions(token.token));
    await assert.rejects(c.resolve({ workspace: "Bad/Id", provider: "openai" }), (err) => err instanceof KeybrokerError && err.status === 400);
    await assert.rejects(c.report({ resolutionId: "nope", outcome: "ok" }), (err) => err instanceof KeybrokerError && err.status >= 400 && err.status < 500);
    c.close();

    // Mutual TLS: without the client certificate, or without the CA, no
    // answer at all.
    const noCert = new Client({ address: resolverURL, token: token.token, ca: tls.ca });
    await assert.rejects(noCert.resolve({ workspace: "ws1", provider: "openai" }), UnavailableError);
    noCert.close();
    const noCA = new Client({ address: resolverURL, token: token.token, cert: tls.cert, key: tls.key });
    await assert.rejects(noCA.resolve({ workspace: "ws1", provider: "openai" }), (err) => err instanceof UnavailableError && /certificate/.test(err.message));
    noCA.close();

    const proxy = await cuttable(resolverURL);
    proxy.cut(true);
    const down = new Client(resolverOptions(token.token, proxy.url, { timeoutMs: 1000 }));
    await assert.rejects(down.resolve({ workspace: "ws1", provider: "openai" }), UnavailableError);
    down.close();
    await proxy.close();
  });

  test("a caller's abort stops its wait, not the request others share", async (t) => {
    const token = await resolverToken();
    const ws = randomId("ts");
    const key = newKey();
    await admin("PUT", keyPath(ws, "openai"), { apiKey: key });
    await servedByResolver(token.token, ws, "openai", key);
    const r = new Resolver({ client: resolverOptions(token.token), logger: recordingLogger() });
    t.after(() => r.close());
    await r.ready();
    const ac = new AbortController();
    const aborted = r.resolve(ws, "openai", "", { signal: ac.signal });
    const other = r.resolve(ws, "openai");
    ac.abort();
    await assert.rejects(aborted, (err) => err.name === "AbortError");
    assert.equal((await other).apiKey, key);
    assert.equal(r.requests, 1);
  });
});
