// A resolve answer of a kind with several fields: the Resolution holds
// the credential's fields (a map field as an object) and the expiry of a
// minted credential, and shows neither field's value when printed. The
// server is a stand-in on loopback answering as keybroker does.
import assert from "node:assert/strict";
import http from "node:http";
import { inspect } from "node:util";
import { describe, test } from "node:test";

import { Client } from "../dist/index.js";

const token = "kbt_credential-test-token-0123456789abcdefghijklmn";
const session = "session-token-that-must-not-be-printed-0123456789";

async function standIn(t, answer) {
  const server = http.createServer((req, res) => {
    if (req.method !== "POST" || req.url !== "/v1/resolve" || req.headers.authorization !== `Bearer ${token}`) {
      res.writeHead(404, { "content-type": "application/json" }).end('{"error":{"code":"not_found","message":"no"}}');
      return;
    }
    res.writeHead(200, { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" }).end(JSON.stringify(answer));
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  t.after(() => server.close());
  const c = new Client({ address: `http://127.0.0.1:${server.address().port}`, token });
  t.after(() => c.close());
  return c;
}

const base = { apiKey: "", source: "byok", isBYOK: true, version: 2, scope: "workspace", keyId: "default", resolutionId: "res_x", ttlSeconds: 30 };

describe("a credential of several fields", () => {
  test("a minted credential: its fields and its expiry, never printed", async (t) => {
    const expiresAt = "2031-01-02T03:04:05Z";
    const c = await standIn(t, {
      ...base,
      kind: "aws_bedrock",
      credential: { accessKeyId: "ASIAEXAMPLE", sessionToken: session, modelMap: { sonnet: "anthropic.claude" } },
      expiresAt,
    });
    const r = await c.resolve({ workspace: "ws1", provider: "bedrock" });
    assert.equal(r.kind, "aws_bedrock");
    assert.equal(r.credential.sessionToken, session);
    assert.deepEqual(r.credential.modelMap, { sonnet: "anthropic.claude" });
    assert.equal(r.expiresAt.toISOString(), "2031-01-02T03:04:05.000Z");
    for (const shown of [JSON.stringify(r), String(r), inspect(r)]) {
      assert.ok(!shown.includes(session), shown);
    }
    assert.equal(JSON.parse(JSON.stringify(r)).credential.sessionToken, "<redacted>");
  });

  test("an answer with neither an apiKey nor a credential is refused", async (t) => {
    const c = await standIn(t, { ...base, kind: "aws_bedrock" });
    await assert.rejects(c.resolve({ workspace: "ws1", provider: "bedrock" }));
  });

  test("an api_key answer has no credential and no expiry", async (t) => {
    const c = await standIn(t, { ...base, apiKey: "sk-proj-0123456789abcdef", kind: "api_key" });
    const r = await c.resolve({ workspace: "ws1", provider: "openai" });
    assert.equal(r.apiKey, "sk-proj-0123456789abcdef");
    assert.equal(r.credential, undefined);
    assert.equal(r.expiresAt, undefined);
  });
});
