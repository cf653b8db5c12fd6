// The unmodified openai SDK's AzureOpenAI client calls Azure OpenAI
// through keybroker's credential proxy: its endpoint is the proxy's Azure
// base, its apiKey the proxy token (the SDK sends it in api-key, where it
// sends an Azure key), and its calls go on Azure's own paths,
// /openai/deployments/{deployment}/chat/completions?api-version=...; the
// proxy sends them on with the workspace's Azure key. {deployment} is a
// model of the key's deployments map (the proxy calls the deployment it
// maps to) or a deployment's own name.
//
// Run by cmd/keybroker/sdkcompat_test.go, which sets KEYBROKER_PROXY_URL,
// KEYBROKER_PROXY_TOKEN and AZURE_OPENAI_API_VERSION; its stand-in has
// one deployment, gpt4o-prod, which the key maps gpt-4o to, and answers
// "Hello from <deployment>".
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AzureOpenAI } from 'openai';

const proxy = must('KEYBROKER_PROXY_URL');
const proxyToken = must('KEYBROKER_PROXY_TOKEN');
const apiVersion = must('AZURE_OPENAI_API_VERSION');

function must(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
}

const azure = (deployment) =>
  new AzureOpenAI({ endpoint: `${proxy}/proxy/azure-openai`, apiKey: proxyToken, apiVersion, deployment, maxRetries: 0 });

const messages = [{ role: 'user', content: 'hello from node' }];

test('chat.completions.create on the deployment a model maps to', async () => {
  const out = await azure('gpt-4o').chat.completions.create({ model: 'gpt-4o', messages });
  assert.equal(out.object, 'chat.completion');
  assert.equal(out.choices[0].message.content, 'Hello from gpt4o-prod');
  assert.equal(out.usage.total_tokens, 5);
});

test('chat.completions.create on a deployment named as it is', async () => {
  const out = await azure('gpt4o-prod').chat.completions.create({ model: 'gpt-4o', messages });
  assert.equal(out.choices[0].message.content, 'Hello from gpt4o-prod');
});

test('chat.completions.create, streamed', async () => {
  const stream = await azure('gpt-4o').chat.completions.create({ model: 'gpt-4o', messages, stream: true });
  let text = '';
  let finish;
  let chunks = 0;
  for await (const chunk of stream) {
    chunks++;
    text += chunk.choices[0]?.delta?.content ?? '';
    finish = chunk.choices[0]?.finish_reason ?? finish;
  }
  assert.ok(chunks > 1, `${chunks} chunks`);
  assert.equal(text, 'Hello from gpt4o-prod');
  assert.equal(finish, 'stop');
});

test('with no deployment set, the SDK names the body model in the path', async () => {
  const out = await azure(undefined).chat.completions.create({ model: 'gpt-4o', messages });
  assert.equal(out.choices[0].message.content, 'Hello from gpt4o-prod');
});

test('a call with another key than a proxy token is refused by the proxy', async () => {
  const client = new AzureOpenAI({ endpoint: `${proxy}/proxy/azure-openai`, apiKey: '0123456789abcdef0123456789abcdef', apiVersion, deployment: 'gpt-4o', maxRetries: 0 });
  await assert.rejects(client.chat.completions.create({ model: 'gpt-4o', messages }), (err) => err.status === 401);
});
