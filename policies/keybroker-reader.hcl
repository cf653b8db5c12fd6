# keybroker-reader: the execution path's identity. It reads the current (or
# an earlier) version of a workspace's key and of the platform's hosted keys,
# and nothing else: no writes, no metadata, no listing.
# "+" matches exactly one path segment.

# A workspace's own key (BYOK).
path "{{mount}}/data/workspaces/+/providers/+" {
  capabilities = ["read"]
}

# The platform's hosted key of a provider (the fallback).
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
