// The unmodified Google Gen AI SDK (@google/genai) on Vertex AI calls
// Gemini through keybroker's credential proxy: vertexai with the project
// and location of the workspace's key, the base URL the proxy's Vertex
// base, and the proxy token as the client's API key (the SDK sends it in
// x-goog-api-key and asks for no Google credentials). Its calls go on
// Vertex's own paths,
// /v1/projects/{project}/locations/{location}/publishers/google/models/{model}:generateContent
// (and :streamGenerateContent?alt=sse); the proxy sends them on with the
// access token it minted from the key's service account.
//
// Run by cmd/keybroker/sdkcompat_test.go, which sets KEYBROKER_PROXY_URL,
// KEYBROKER_PROXY_TOKEN, VERTEX_PROJECT and VERTEX_LOCATION; its stand-in
// answers "Hello from <model>" (streamed in two chunks).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GoogleGenAI } from '@google/genai';

const proxy = must('KEYBROKER_PROXY_URL');
const proxyToken = must('KEYBROKER_PROXY_TOKEN');
const project = must('VERTEX_PROJECT');
const location = must('VERTEX_LOCATION');

function must(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
}

const vertex = () =>
  new GoogleGenAI({
    vertexai: true,
    project,
    location,
    apiKey: proxyToken,
    apiVersion: 'v1',
    httpOptions: { baseUrl: `${proxy}/proxy/vertex` },
  });

const model = 'gemini-2.0-flash-001';

test('models.generateContent', async () => {
  const out = await vertex().models.generateContent({ model, contents: 'hello from node' });
  assert.equal(out.text, `Hello from ${model}`);
  assert.equal(out.candidates[0].finishReason, 'STOP');
  assert.equal(out.usageMetadata.totalTokenCount, 5);
});

test('models.generateContentStream', async () => {
  const stream = await vertex().models.generateContentStream({ model, contents: 'stream it' });
  const pieces = [];
  for await (const chunk of stream) pieces.push(chunk.text);
  assert.deepEqual(pieces, ['Hello', ` from ${model}`]);
});
