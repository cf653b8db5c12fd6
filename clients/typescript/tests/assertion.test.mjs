// Platform assertions signed with the library, sent to the real admin
// replica, which the Go test started with a platforms file registering
// this platform (its public key in a JWKS file) for one workspace.
import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";

import { signAssertion } from "../dist/index.js";
import { adminURL, admin, newKey, recordSecret } from "./ground.mjs";

const platformKey = readFileSync(process.env.KEYBROKER_TEST_PLATFORM_KEY_FILE ?? "", "utf8");
const issuer = process.env.KEYBROKER_TEST_PLATFORM_ISSUER ?? "";
const workspace = process.env.KEYBROKER_TEST_PLATFORM_WORKSPACE ?? "";

async function call(method, path, jwt, body) {
  const res = await fetch(adminURL + path, {
    method,
    headers: { authorization: `Bearer ${jwt}`, ...(body ? { "content-type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  return { status: res.status, body: await res.json().catch(() => ({})) };
}

describe("platform assertions", () => {
  test("an assertion the library signs acts for the platform's user, within its roles, once", async () => {
    assert.ok(platformKey && issuer && workspace, "the Go test passes the platform's key, issuer and workspace");
    await admin("PUT", `/v1/workspaces/${workspace}/keys/openai`, { apiKey: newKey() });
    const claims = { issuer, audience: "keybroker", subject: "ts-user-7", name: "Tess Script", email: "tess@platform.example" };

    const reader = recordSecret(signAssertion(platformKey, "k1", { ...claims, workspaces: { [workspace]: "reader" } }));
    assert.equal(reader.split(".").length, 3);
    const listed = await call("GET", `/v1/workspaces/${workspace}/keys`, reader);
    assert.equal(listed.status, 200, JSON.stringify(listed.body));
    const replayed = await call("GET", `/v1/workspaces/${workspace}/keys`, reader);
    assert.equal(replayed.status, 401);
    assert.equal(replayed.body.error.code, "invalid_assertion");

    const readerAgain = recordSecret(signAssertion(platformKey, "k1", { ...claims, workspaces: { [workspace]: "reader" } }));
    const refused = await call("PUT", `/v1/workspaces/${workspace}/keys/openai`, readerAgain, { apiKey: newKey() });
    assert.equal(refused.status, 403);

    const adminJWT = recordSecret(signAssertion(platformKey, "k1", { ...claims, workspaces: { [workspace]: "admin" }, ttlSeconds: 120 }));
    const written = await call("PUT", `/v1/workspaces/${workspace}/keys/openai`, adminJWT, { apiKey: newKey() });
    assert.equal(written.status, 200, JSON.stringify(written.body));

    const who = await call("GET", "/v1/whoami", recordSecret(signAssertion(platformKey, "k1", { ...claims, workspaces: { [workspace]: "admin" } })));
    assert.equal(who.status, 200);
    assert.equal(who.body.person.subject, "ts-user-7");
    assert.equal(who.body.person.name, "Tess Script");
    assert.equal(who.body.scopedRoles.workspaces[workspace], "admin");
  });

  test("the signer refuses what keybroker would", () => {
    const claims = { issuer: "https://p.example", audience: "keybroker", subject: "u" };
    assert.throws(() => signAssertion(platformKey, "k1", { ...claims, ttlSeconds: 301 }), RangeError);
    assert.throws(() => signAssertion(platformKey, "", claims), TypeError);
    assert.throws(() => signAssertion(platformKey, "k1", { ...claims, subject: "" }), TypeError);
    assert.throws(() => signAssertion(platformKey, "k1", { ...claims, workspaces: { ws1: "owner" } }), TypeError);
    const weak = generateKeyPairSync("rsa", { modulusLength: 1024 }).privateKey;
    assert.throws(() => signAssertion(weak, "k1", claims), /2048/);
    const ed = generateKeyPairSync("ed25519").privateKey;
    const header = JSON.parse(Buffer.from(signAssertion(ed, "k2", claims).split(".")[0], "base64url").toString());
    assert.deepEqual(header, { alg: "EdDSA", kid: "k2", typ: "JWT" });
  });
});
