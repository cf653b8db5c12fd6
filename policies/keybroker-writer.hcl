# keybroker-writer: the admin side's identity. It creates, rotates, deletes
# and purges workspace keys, and can never read a key back: there is no
# "read" on {{mount}}/data/. A compromise of the admin side reveals no key.
# "+" matches exactly one path segment, so nothing outside
# workspaces/<workspace>/providers/<provider> is reachable.

# Write a new version of a workspace's key (create = first version, update =
# rotation; keybroker always sends check-and-set).
path "{{mount}}/data/workspaces/+/providers/+" {
  capabilities = ["create", "update"]
}

# Read a key's version history (never its value): the current version for
# check-and-set, the versions list. Delete it with every version and its
# metadata (workspace purge).
path "{{mount}}/metadata/workspaces/+/providers/+" {
  capabilities = ["read", "delete"]
}

# List a workspace's providers (purge) and the workspaces (reconciler).
path "{{mount}}/metadata/workspaces/+/providers/" {
  capabilities = ["list"]
}
path "{{mount}}/metadata/workspaces/" {
  capabilities = ["list"]
}

# Whether the platform has a hosted key for a provider (its metadata:
# versions, never the key), for GET /v1/workspaces/{ws}/effective.
path "{{mount}}/metadata/hosted/providers/+" {
  capabilities = ["read"]
}

# Soft-delete the current version (DELETE of a key). Nothing here can
# undelete a version: a key a customer deleted stays deleted. Destroying
# every version goes through metadata delete above.
path "{{mount}}/delete/workspaces/+/providers/+" {
  capabilities = ["update"]
}

# Token self-management, stated here because keybroker's roles set
# token_no_default_policy: look the token up (readiness, telling a revoked
# token from a policy denial), renew it, revoke it on shutdown.
path "auth/token/lookup-self" {
  capabilities = ["read"]
}
path "auth/token/renew-self" {
  capabilities = ["update"]
}
path "auth/token/revoke-self" {
  capabilities = ["update"]
}
