// Package policies owns keybroker's two Vault ACL policies, as .hcl files
// embedded in the binary: keybroker-writer (the admin side: creates,
// rotates, deletes and purges the keys of every scope — workspaces,
// organizations, the platform's hosted keys — and can never read one back)
// and keybroker-reader (the execution path: reads a key's versions and
// nothing else). Both keep the grants the v1 key layout still needs until
// `keybroker vault migrate-layout` has moved it, and the token
// self-management keybroker's roles need. They are parameterised only by the
// KV v2 mount (Render), and are what `keybroker vault bootstrap` writes,
// `keybroker vault policies` prints and `keybroker dev` installs.
package policies
