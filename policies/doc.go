// Package policies holds keybroker's Vault ACL policies as .hcl files,
// embedded in the binary: least-privilege writer and reader identities, and a
// writer for the platform's hosted keys. They are parameterised only by the
// KV v2 mount name, and are what `keybroker vault bootstrap` writes and
// `keybroker vault policies` prints.
package policies
