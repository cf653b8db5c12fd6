// The typed views of a cloud credential (resolution.bedrock(),
// azureOpenAI(), vertex()): each reads its kind's fields by name, refuses
// an answer of another kind with a CredentialKindError, and shows no
// secret when printed, inspected or serialized. First on the answers
// keybroker writes for minted credentials (a stand-in on loopback, as
// credential.test.mjs), then on real answers: keys of the kinds that mint
// nothing (a Bedrock API key, an Azure resource's API key) written through
// the admin replica and resolved by a Resolver from the resolver replica.
import assert from "node:assert/strict";
import http from "node:http";
import { randomBytes } from "node:crypto";
import { inspect } from "node:util";
import { before, describe, test } from "node:test";

import { Client, CredentialKindError, KIND_AWS_BEDROCK, KIND_AZURE_OPENAI, KIND_GCP_VERTEX, Resolver } from "../dist/index.js";
import { admin, randomId, recordSecret, resolverOptions, resolverToken, waitUntil } from "./ground.mjs";

const token = "kbt_cloud-view-test-token-0123456789abcdefghijklmn";
const secretAccessKey = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY";
const sessionToken = "IQoJb3JpZ2luX2VjEXAMPLE-session-token-0123456789abcdef";
const accessKeyId = "ASIAEXAMPLE012345678";
const azureToken = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.azure-access-token-example";
const vertexToken = "ya29.c.vertex-access-token-example-0123456789abcdef";
const expiresAt = "2031-01-02T03:04:05Z";

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
  return c.resolve({ workspace: "ws1", provider: "p" });
}

const base = { apiKey: "", source: "byok", isBYOK: true, version: 1, scope: "workspace", keyId: "prod", resolutionId: "res_x", ttlSeconds: 30 };

/** Every way a value reaches a log or an answer by mistake. */
function printed(v) {
  return [JSON.stringify(v), JSON.stringify({ nested: [v] }), String(v), `${v}`, inspect(v), inspect({ nested: v }, { depth: 5, showHidden: true }), inspect(v, { customInspect: false, showHidden: true })];
}

function noSecret(v, ...secrets) {
  for (const p of printed(v)) {
    for (const s of secrets) assert.ok(!p.includes(s), `a print shows a secret: ${p}`);
  }
}

describe("typed views of a cloud credential", () => {
  test("bedrock(): a minted session by its fields, for the AWS SDK; printed without a secret", async (t) => {
    const r = await standIn(t, {
      ...base,
      kind: "aws_bedrock",
      expiresAt,
      credential: { region: "eu-west-1", accessKeyId, secretAccessKey, sessionToken, modelMap: { "claude-sonnet": "eu.anthropic.claude-sonnet-4-20250514-v1:0" } },
    });
    assert.equal(KIND_AWS_BEDROCK, r.kind);
    const b = r.bedrock();
    assert.equal(b.region, "eu-west-1");
    assert.equal(b.accessKeyId, accessKeyId);
    assert.equal(b.secretAccessKey, secretAccessKey);
    assert.equal(b.sessionToken, sessionToken);
    assert.equal(b.bedrockApiKey, undefined);
    assert.equal(b.expiresAt.toISOString(), "2031-01-02T03:04:05.000Z");
    assert.equal(b.modelId("claude-sonnet"), "eu.anthropic.claude-sonnet-4-20250514-v1:0");
    assert.equal(b.modelId("amazon.nova-lite-v1:0"), "amazon.nova-lite-v1:0");
    assert.equal(b.runtimeEndpoint(), "https://bedrock-runtime.eu-west-1.amazonaws.com");
    assert.deepEqual(b.awsCredentials(), { accessKeyId, secretAccessKey, sessionToken, expiration: new Date(expiresAt) });
    noSecret(b, secretAccessKey, sessionToken, accessKeyId);
    const shown = JSON.parse(JSON.stringify(b));
    assert.equal(shown.region, "eu-west-1");
    assert.equal(shown.secretAccessKey, "wJalrX...EKEY", "a secret is shown as its mask");
    assert.deepEqual(shown.modelMap, { "claude-sonnet": "eu.anthropic.claude-sonnet-4-20250514-v1:0" });
    assert.ok(inspect(b).includes("eu-west-1") && inspect(b).includes("ASIAEX...5678"), inspect(b));
  });

  test("azureOpenAI(): an Entra token, the endpoint and the deployments; printed without a secret", async (t) => {
    const r = await standIn(t, {
      ...base,
      kind: "azure_openai",
      expiresAt,
      credential: { endpoint: "https://acme-prod.openai.azure.com", apiVersion: "2024-10-21", deployments: { "gpt-4o": "acme-gpt-4o" }, accessToken: azureToken },
    });
    assert.equal(KIND_AZURE_OPENAI, r.kind);
    const a = r.azureOpenAI();
    assert.equal(a.endpoint, "https://acme-prod.openai.azure.com");
    assert.equal(a.apiVersion, "2024-10-21");
    assert.equal(a.accessToken, azureToken);
    assert.equal(a.apiKey, undefined);
    assert.equal(a.deployment("gpt-4o"), "acme-gpt-4o");
    assert.equal(a.deployment("o3"), undefined);
    assert.equal(a.deployment("toString"), undefined, "only the map's own names");
    assert.equal(a.expiresAt.getTime(), Date.parse(expiresAt));
    noSecret(a, azureToken);
    assert.ok(String(a).includes("acme-prod.openai.azure.com") && String(a).includes("acme-gpt-4o"), String(a));
  });

  test("vertex(): the token, the project and the location; the base URL; printed without a secret", async (t) => {
    const r = await standIn(t, { ...base, kind: "gcp_vertex", expiresAt, credential: { project: "acme-ml", location: "europe-west4", accessToken: vertexToken } });
    assert.equal(KIND_GCP_VERTEX, r.kind);
    const v = r.vertex();
    assert.equal(v.project, "acme-ml");
    assert.equal(v.location, "europe-west4");
    assert.equal(v.accessToken, vertexToken);
    assert.equal(v.baseURL(), "https://europe-west4-aiplatform.googleapis.com");
    noSecret(v, vertexToken);
    const global = (await standIn(t, { ...base, kind: "gcp_vertex", credential: { project: "acme-ml", location: "global", accessToken: vertexToken } })).vertex();
    assert.equal(global.baseURL(), "https://aiplatform.googleapis.com");
    assert.equal(global.expiresAt, undefined);
  });

  test("a view of another kind throws a CredentialKindError naming both kinds; a credential lacking a field a TypeError naming it", async (t) => {
    const apiKey = await standIn(t, { ...base, apiKey: "sk-proj-0123456789abcdef0123", kind: "api_key" });
    const vertex = await standIn(t, { ...base, kind: "gcp_vertex", credential: { project: "acme-ml", location: "us-central1", accessToken: vertexToken } });
    for (const [r, got] of [
      [apiKey, "api_key"],
      [vertex, "gcp_vertex"],
    ]) {
      for (const [view, want] of [
        ["bedrock", "aws_bedrock"],
        ["azureOpenAI", "azure_openai"],
        ["vertex", "gcp_vertex"],
      ]) {
        if (got === want) continue;
        assert.throws(
          () => r[view](),
          (e) => e instanceof CredentialKindError && e instanceof TypeError && e.kind === got && e.expected === want && e.message.includes(got) && !e.message.includes(vertexToken),
          `${view}() of a ${got} answer`,
        );
      }
    }
    const noRegion = await standIn(t, { ...base, kind: "aws_bedrock", credential: { accessKeyId, secretAccessKey } });
    assert.throws(() => noRegion.bedrock(), (e) => e instanceof TypeError && e.message.includes("region") && !e.message.includes(secretAccessKey));
    const noToken = await standIn(t, { ...base, kind: "azure_openai", credential: { endpoint: "https://a.openai.azure.com" } });
    assert.throws(() => noToken.azureOpenAI(), (e) => e instanceof TypeError && e.message.includes("accessToken"));
    const noKeyForSDK = await standIn(t, { ...base, kind: "aws_bedrock", credential: { region: "us-east-1", bedrockApiKey: "ABSKexample0123456789abcdef" } });
    assert.throws(() => noKeyForSDK.bedrock().awsCredentials(), TypeError);
  });
});

describe("typed views of real answers", () => {
  let tok;
  before(async () => {
    tok = await resolverToken();
  });

  test("a Bedrock API key and an Azure API key, resolved through the resolver replica", async (t) => {
    const ws = randomId("tscloud");
    const bedrockKey = recordSecret("ABSK" + randomBytes(24).toString("base64url").replace(/[-_]/g, "A"));
    const azureKey = recordSecret(randomBytes(16).toString("hex"));
    await admin("PUT", `/v1/workspaces/${ws}/providers/bedrock/keys/main`, {
      credential: { region: "eu-west-1", bedrockApiKey: bedrockKey, modelMap: { "claude-sonnet": "eu.anthropic.claude-sonnet-4-20250514-v1:0" } },
    });
    await admin("PUT", `/v1/workspaces/${ws}/providers/azure-openai/keys/main`, {
      credential: { endpoint: "https://kb-ts-typed.openai.azure.com", apiVersion: "2024-10-21", deployments: { "gpt-4o": "gpt4o-prod" }, apiKey: azureKey },
    });
    const r = new Resolver({ client: resolverOptions(tok.token) });
    t.after(() => r.close());
    await r.ready();

    // The resolver replica applies the admin replica's write when its
    // notification arrives: wait until it serves the key.
    const resolveNew = async (provider) => {
      let res;
      await waitUntil(`the resolver replica serves ${ws}/${provider}`, 5000, async () => {
        res = await r.resolve(ws, provider).catch((e) => {
          if (e?.code === "no_key") return undefined;
          throw e;
        });
        return res !== undefined;
      });
      return res;
    };
    const bedrock = await resolveNew("bedrock");
    const b = bedrock.bedrock();
    assert.equal(b.region, "eu-west-1");
    assert.equal(b.bedrockApiKey, bedrockKey);
    assert.equal(b.accessKeyId, undefined);
    assert.equal(b.expiresAt, undefined, "a Bedrock API key is not minted: no expiry");
    assert.equal(b.modelId("claude-sonnet"), "eu.anthropic.claude-sonnet-4-20250514-v1:0");
    assert.throws(() => bedrock.azureOpenAI(), CredentialKindError);
    noSecret(b, bedrockKey);
    noSecret(bedrock, bedrockKey);

    const azure = await resolveNew("azure-openai");
    const a = azure.azureOpenAI();
    assert.equal(a.endpoint, "https://kb-ts-typed.openai.azure.com");
    assert.equal(a.apiKey, azureKey);
    assert.equal(a.accessToken, undefined);
    assert.equal(a.deployment("gpt-4o"), "gpt4o-prod");
    assert.throws(() => azure.vertex(), (e) => e instanceof CredentialKindError && e.kind === "azure_openai");
    noSecret(a, azureKey);
    noSecret(azure, azureKey);
  });
});
