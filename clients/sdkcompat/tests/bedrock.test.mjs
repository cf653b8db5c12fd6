// The unmodified AWS SDK for JavaScript v3 (@aws-sdk/client-bedrock-runtime)
// calls Amazon Bedrock through keybroker's credential proxy. The client's
// endpoint is the proxy's Bedrock base; it signs with dummy credentials of
// its own (the proxy drops that signature and signs again with the session
// it minted from the workspace's key), and the proxy token rides in
// x-api-key, added by a middleware. A second client sends the proxy token
// as a Bedrock API key (bearer). Both speak the SDK's default transport:
// HTTP/2 over TLS.
//
// Run by cmd/keybroker/sdkcompat_test.go, which sets KEYBROKER_PROXY_URL,
// KEYBROKER_PROXY_TOKEN and BEDROCK_REGION, and checks what the stand-in
// saw.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  BedrockRuntimeClient,
  ConverseCommand,
  ConverseStreamCommand,
  InvokeModelCommand,
  InvokeModelWithResponseStreamCommand,
} from '@aws-sdk/client-bedrock-runtime';

const proxy = must('KEYBROKER_PROXY_URL');
const proxyToken = must('KEYBROKER_PROXY_TOKEN');
const region = must('BEDROCK_REGION');

function must(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
}

// sigv4Client signs with dummy credentials, as any AWS SDK must; the proxy
// token goes in x-api-key.
function sigv4Client() {
  const client = new BedrockRuntimeClient({
    region,
    endpoint: `${proxy}/proxy/bedrock`,
    credentials: { accessKeyId: 'AKIADUMMYSDKCALLER00', secretAccessKey: 'dummy/dummy/dummy/dummy/dummy/dummy/dumm' },
    maxAttempts: 1,
  });
  client.middlewareStack.add(
    (next) => async (args) => {
      args.request.headers['x-api-key'] = proxyToken;
      return next(args);
    },
    { step: 'build', name: 'keybrokerProxyToken' },
  );
  return client;
}

// bearerClient sends the proxy token as a Bedrock API key.
function bearerClient() {
  return new BedrockRuntimeClient({
    region,
    endpoint: `${proxy}/proxy/bedrock`,
    token: { token: proxyToken },
    authSchemePreference: ['httpBearerAuth'],
    maxAttempts: 1,
  });
}

const messages = (text) => [{ role: 'user', content: [{ text }] }];

test('Converse', async () => {
  const out = await sigv4Client().send(
    new ConverseCommand({ modelId: 'anthropic.claude-3-haiku-20240307-v1:0', messages: messages('hello from node') }),
  );
  assert.equal(out.$metadata.httpStatusCode, 200);
  assert.equal(out.stopReason, 'end_turn');
  assert.deepEqual(out.output.message.content, [{ text: 'stand-in reply to: hello from node' }]);
  assert.equal(out.usage.totalTokens, 12);
});

test('ConverseStream, the event stream iterated', async () => {
  // claude-haiku is a name of the key's modelMap: the proxy calls the
  // model it maps to.
  const out = await sigv4Client().send(
    new ConverseStreamCommand({ modelId: 'claude-haiku', messages: messages('stream it') }),
  );
  const kinds = [];
  let text = '';
  for await (const ev of out.stream) {
    const kind = Object.keys(ev)[0];
    kinds.push(kind);
    if (kind === 'contentBlockDelta') text += ev.contentBlockDelta.delta.text;
  }
  assert.deepEqual(kinds, ['messageStart', 'contentBlockDelta', 'contentBlockDelta', 'contentBlockStop', 'messageStop', 'metadata']);
  assert.equal(text, 'stand-in reply to: stream it');
});

test('InvokeModel', async () => {
  const body = JSON.stringify({ anthropic_version: 'bedrock-2023-05-31', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] });
  const out = await sigv4Client().send(
    new InvokeModelCommand({ modelId: 'amazon.nova-micro-v1:0', contentType: 'application/json', accept: 'application/json', body }),
  );
  const answer = JSON.parse(new TextDecoder().decode(out.body));
  assert.deepEqual(answer, { model: 'amazon.nova-micro-v1:0', completion: 'stand-in reply', stop_reason: 'end_turn' });
});

test('InvokeModelWithResponseStream', async () => {
  const body = JSON.stringify({ anthropic_version: 'bedrock-2023-05-31', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] });
  const out = await sigv4Client().send(
    new InvokeModelWithResponseStreamCommand({ modelId: 'amazon.nova-micro-v1:0', contentType: 'application/json', body }),
  );
  const chunks = [];
  for await (const ev of out.body) {
    chunks.push(JSON.parse(new TextDecoder().decode(ev.chunk.bytes)));
  }
  assert.deepEqual(chunks, [{ completion: 'stand-in reply', stop_reason: 'end_turn' }]);
});

test('Converse with the proxy token as a Bedrock API key', async () => {
  const out = await bearerClient().send(
    new ConverseCommand({ modelId: 'amazon.nova-micro-v1:0', messages: messages('bearer') }),
  );
  assert.deepEqual(out.output.message.content, [{ text: 'stand-in reply to: bearer' }]);
});

test('a call without the proxy token is refused by the proxy, not sent on', async () => {
  const client = new BedrockRuntimeClient({
    region,
    endpoint: `${proxy}/proxy/bedrock`,
    credentials: { accessKeyId: 'AKIADUMMYSDKCALLER00', secretAccessKey: 'dummy/dummy/dummy/dummy/dummy/dummy/dumm' },
    maxAttempts: 1,
  });
  await assert.rejects(
    client.send(new ConverseCommand({ modelId: 'amazon.nova-micro-v1:0', messages: messages('no token') })),
    (err) => err.$metadata?.httpStatusCode === 401,
  );
});
