package vault

// Where keys live inside the KV v2 mount (DESIGN.md, "Where things live").
// These are the only places that spell the layout; the policies in
// package policies match it.

// WorkspaceKeyPath is the secret path of a workspace's key for a provider.
func WorkspaceKeyPath(workspace, provider string) string {
	return "workspaces/" + workspace + "/providers/" + provider
}

// WorkspaceProvidersDir is the folder listing a workspace's provider keys.
func WorkspaceProvidersDir(workspace string) string {
	return "workspaces/" + workspace + "/providers/"
}

// HostedKeyPath is the secret path of the platform's hosted key for a
// provider.
func HostedKeyPath(provider string) string {
	return "hosted/providers/" + provider
}

// ValueField is the field of a secret that holds the key.
const ValueField = "api_key"
