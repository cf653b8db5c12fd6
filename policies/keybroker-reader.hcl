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
