// Package vault owns every conversation keybroker has with HashiCorp Vault:
// building the client (address, namespace, TLS, deadlines), authenticating
// and keeping a short-lived token alive, reading and writing KV v2 secrets at
// paths it is given, and bootstrapping mounts, policies and roles.
//
// It knows nothing of workspaces or providers beyond the paths callers pass
// in; callers depend on its small interfaces, never on *api.Client.
package vault
