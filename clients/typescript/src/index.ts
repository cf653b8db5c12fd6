/**
 * keybroker's execution-path library for Node.js 20+: a Resolver that
 * answers from a cache in the caller's memory, kept exact by keybroker's
 * watch stream, and the Client beneath it. No runtime dependency beyond
 * Node's standard library.
 */
export { MAX_ASSERTION_TTL_SECONDS, signAssertion, type AssertionClaims } from "./assertion.js";
export { Client, type ClientOptions } from "./client.js";
export { KIND_AWS_BEDROCK, KIND_AZURE_OPENAI, KIND_GCP_VERTEX, type AwsCredentials, type AzureOpenAICredential, type BedrockCredential, type VertexCredential } from "./cloud.js";
export { ClosedError, CredentialKindError, KeybrokerError, RevokedError, UnavailableError } from "./errors.js";
export { Resolver, type Logger, type ResolverOptions } from "./resolver.js";
export { ProxyToken, Resolution, type CredentialChoice, type CredentialField, type CredentialValue, type Outcome, type Provider, type ProviderList, type ProxyTokenRequest, type ReportRequest, type ReportResult, type ResolveRequest, type Scope, type WatchEvent } from "./types.js";
