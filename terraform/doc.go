// Package terraform owns keybroker's Terraform provider, built on
// terraform-plugin-framework: the key resources keybroker_workspace_key,
// keybroker_organization_key and keybroker_hosted_key (one generic resource,
// one key of a pool each: its name, priority, state and models; the key
// itself through the write-only api_key_wo, kept out of plan and state, or
// api_key on CLIs without write-only attributes; the clouds' credentials of
// several fields in azure_openai, bedrock or vertex, every secret field
// write-only: credentials.go), the
// keybroker_workspace_settings resource (organization link, inheritance,
// hosted fallback), and the keybroker_workspace_keys and keybroker_providers
// data sources. Its generated documentation is in docs/ and the examples it
// is tested with in examples/. It talks to keybroker through package client
// only.
package terraform
