// Package providers owns what a model or tool provider is to keybroker:
// the catalogue (one file per provider family: openai.go for OpenAI and
// the OpenAI-compatible APIs, anthropic.go, google.go, exa.go,
// bedrock.go, vertex.go, azure.go), each
// provider's credential kind and field schema, the format rule and hint of
// each field, masking and fingerprints, how a credential goes into a
// request, the key check (the provider's cheapest authenticated call),
// reading the model a request names, the development credential
// `keybroker dev` seeds, and the base-URL overrides
// (KEYBROKER_PROVIDER_<ID>_BASE_URL).
//
// A credential travels as a Credential: named fields whose String,
// GoString, LogValue and MarshalJSON never show a secret; only Reveal and
// Field hand one out, for the resolve answer, the Vault write and the
// request to the provider.
//
// The package imports the standard library, aws-sdk-go-v2's STS client
// and SigV4 signer (Amazon Bedrock), and golang.org/x/oauth2 with its
// google and clientcredentials packages (Vertex AI, Azure OpenAI's Entra
// tokens): the cloud kinds mint their short-lived credentials here
// (Provider.Derive); the broker caches them. broker and the credential
// proxy import it. Adding a provider of an existing kind is one entry in
// its family's file (docs/providers.md); catalogue_test.go fails when an
// entry lacks a piece.
package providers
