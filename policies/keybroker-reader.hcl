# keybroker-reader: the execution path's identity. It reads the current (or
# an earlier) version of a key of any scope — a workspace's, an
# organization's, the platform's hosted keys — and nothing else: no writes,
# no metadata, no listing. "+" matches exactly one path segment.

# Keys of the pools: <scope>/providers/<provider>/keys/<keyId>.
path "{{mount}}/data/workspaces/+/providers/+/keys/+" {
  capabilities = ["read"]
}
path "{{mount}}/data/organizations/+/providers/+/keys/+" {
  capabilities = ["read"]
}
path "{{mount}}/data/hosted/providers/+/keys/+" {
  capabilities = ["read"]
}

# Never the admin credentials (openai-admin, anthropic-admin: an
# organization's admin key, which can create and delete keys at the
# provider): they are never resolved, so the execution pods have no use
# for them. A path without "+" where the grant above has one takes
# precedence in Vault, so these denials win; every admin provider of the
# registry is listed (TestReaderPolicyDeniesEveryAdminCredential).
path "{{mount}}/data/workspaces/+/providers/openai-admin/keys/+" {
  capabilities = ["deny"]
}
path "{{mount}}/data/organizations/+/providers/openai-admin/keys/+" {
  capabilities = ["deny"]
}
path "{{mount}}/data/hosted/providers/openai-admin/keys/+" {
  capabilities = ["deny"]
}
path "{{mount}}/data/workspaces/+/providers/anthropic-admin/keys/+" {
  capabilities = ["deny"]
}
path "{{mount}}/data/organizations/+/providers/anthropic-admin/keys/+" {
  capabilities = ["deny"]
}
path "{{mount}}/data/hosted/providers/anthropic-admin/keys/+" {
  capabilities = ["deny"]
}

# Where keybroker v1 kept a workspace's and a hosted key: read by resolve
# until `keybroker vault migrate-layout` has moved them, and by that
# command to copy them.
path "{{mount}}/data/workspaces/+/providers/+" {
  capabilities = ["read"]
}
path "{{mount}}/data/hosted/providers/+" {
  capabilities = ["read"]
}

# Token self-management (the roles set token_no_default_policy).
path "auth/token/lookup-self" {
  capabilities = ["read"]
}
path "auth/token/renew-self" {
  capabilities = ["update"]
}
path "auth/token/revoke-self" {
  capabilities = ["update"]
}
