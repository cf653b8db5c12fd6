// Proxy tokens minted with the library, against the real resolver replica
// (mutual TLS), used on the real proxy replica in front of a stand-in for
// OpenAI that answers the SHA-256 of the key it was given.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { describe, test } from "node:test";
import { inspect } from "node:util";

import { Client, KeybrokerError, ProxyToken } from "../dist/index.js";
import { admin, newKey, proxyURL, randomId, recordSecret, resolverOptions, resolverToken, servedByResolver } from "./ground.mjs";

/** A call a sandbox makes with its proxy token as its OpenAI API key, as the OpenAI SDK would. */
async function completion(token, model = "gpt-4o") {
  const res = await fetch(`${proxyURL}/proxy/openai/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ model, messages: [{ role: "user", content: "hi" }] }),
  });
  return { status: res.status, headers: res.headers, body: await res.json() };
}

describe("proxy tokens", () => {
  test("a minted token calls the provider through the proxy with the workspace's key, and only as allowed", async (t) => {
    const token = await resolverToken("typescript proxy test");
    recordSecret(token.token);
    const ws = randomId("ts");
    const key = newKey();
    await admin("PUT", `/v1/workspaces/${ws}/keys/openai`, { apiKey: key });
    await servedByResolver(token.token, ws, "openai", key);
    const c = new Client(resolverOptions(token.token));
    t.after(() => c.close());

    const pt = await c.mintProxyToken({ workspace: ws, providers: ["openai"], models: ["gpt-4o"], ttlSeconds: 120 });
    recordSecret(pt.token);
    assert.ok(pt instanceof ProxyToken);
    assert.match(pt.token, /^kbp_/);
    assert.match(pt.id, /^ptk_[0-9a-f]{16}$/);
    assert.equal(pt.workspace, ws);
    assert.deepEqual([...pt.providers], ["openai"]);
    assert.deepEqual([...pt.models], ["gpt-4o"]);
    const ttl = pt.expiresAt.getTime() - Date.now();
    assert.ok(ttl > 100_000 && ttl <= 121_000, `expires in ${ttl} ms`);
    for (const shown of [String(pt), inspect(pt), inspect(pt, { showHidden: true, getters: true }), JSON.stringify(pt), JSON.stringify({ pt })]) {
      assert.ok(!shown.includes(pt.token), `the token shows in ${shown}`);
    }
    assert.equal(Object.keys(pt).includes("token"), false, "the token is not an own enumerable field");

    const ok = await completion(pt.token);
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.equal(ok.body.keySha256, createHash("sha256").update(key).digest("hex"), "the provider got the workspace's key");
    assert.equal(ok.headers.get("x-keybroker-key-id"), "default");
    assert.equal(ok.headers.get("x-keybroker-byok"), "true");

    const otherModel = await completion(pt.token, "gpt-4.1");
    assert.equal(otherModel.status, 403);
    assert.equal(otherModel.body.error.code, "model_not_allowed");

    // The call is recorded for billing under the token's id.
    let calls;
    for (let i = 0; i < 100; i++) {
      calls = await admin("GET", `/v1/workspaces/${ws}/proxy-calls`);
      if (calls.calls.length > 0) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(calls.calls[0].caller, pt.id);
    assert.equal(calls.calls[0].status, 200);

    // Revoking the resolver token that minted it ends it.
    await admin("DELETE", `/v1/tokens/${token.id}`);
    let status;
    for (let i = 0; i < 100; i++) {
      status = (await completion(pt.token)).status;
      if (status === 401) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(status, 401, "the proxy token outlived its issuer's revocation");
  });

  test("a mint that keybroker refuses throws KeybrokerError, without the token in it", async (t) => {
    const token = await resolverToken("typescript proxy refusals");
    const c = new Client(resolverOptions(token.token));
    t.after(() => c.close());
    for (const [req, code] of [
      [{ workspace: "ws1", providers: ["no-such-provider"] }, "unknown_provider"],
      [{ workspace: "ws1", providers: ["openai"], ttlSeconds: 3601 }, "invalid_request"],
      [{ workspace: "ws1", providers: [] }, "invalid_request"],
      [{ workspace: "Bad/Id", providers: ["openai"] }, "invalid_id"],
    ]) {
      const err = await c.mintProxyToken(req).catch((e) => e);
      assert.ok(err instanceof KeybrokerError, `${JSON.stringify(req)}: ${err}`);
      assert.equal(err.status, 400, `${JSON.stringify(req)}: ${err.status} ${err.code}`);
      assert.equal(err.code, code, JSON.stringify(req));
      assert.ok(!inspect(err).includes(token.token));
    }
  });
});
