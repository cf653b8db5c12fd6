# keybroker-writer: the admin side's identity. It creates, rotates, deletes
# and purges keys of every scope (workspaces, organizations, the platform's
# hosted keys), and can never read a key back: there is no "read" on
# {{mount}}/data/. A compromise of the admin side reveals no key.
# "+" matches exactly one path segment, so nothing outside
# <scope>/providers/<provider>/keys/<keyId> (and the v1 layout below) is
# reachable.

# Write a new version of a key (create = first version, update = rotation;
# keybroker always sends check-and-set).
path "{{mount}}/data/workspaces/+/providers/+/keys/+" {
  capabilities = ["create", "update"]
}
path "{{mount}}/data/organizations/+/providers/+/keys/+" {
  capabilities = ["create", "update"]
}
path "{{mount}}/data/hosted/providers/+/keys/+" {
  capabilities = ["create", "update"]
}

# Read the admin credentials (openai-admin, anthropic-admin), and no other
# key: the key lifecycle (rotation and revocation at the provider) runs on
# the admin replicas and calls the provider's admin API with them. They
# are never resolved; the reader's policy denies them.
path "{{mount}}/data/workspaces/+/providers/openai-admin/keys/+" {
  capabilities = ["create", "update", "read"]
}
path "{{mount}}/data/organizations/+/providers/openai-admin/keys/+" {
  capabilities = ["create", "update", "read"]
}
path "{{mount}}/data/hosted/providers/openai-admin/keys/+" {
  capabilities = ["create", "update", "read"]
}
path "{{mount}}/data/workspaces/+/providers/anthropic-admin/keys/+" {
  capabilities = ["create", "update", "read"]
}
path "{{mount}}/data/organizations/+/providers/anthropic-admin/keys/+" {
  capabilities = ["create", "update", "read"]
}
path "{{mount}}/data/hosted/providers/anthropic-admin/keys/+" {
  capabilities = ["create", "update", "read"]
}

# Read a key's version history (never its value): the current version for
# check-and-set, the versions list. Delete it with every version and its
# metadata (destroy, purge).
path "{{mount}}/metadata/workspaces/+/providers/+/keys/+" {
  capabilities = ["read", "delete"]
}
path "{{mount}}/metadata/organizations/+/providers/+/keys/+" {
  capabilities = ["read", "delete"]
}
path "{{mount}}/metadata/hosted/providers/+/keys/+" {
  capabilities = ["read", "delete"]
}

# Soft-delete the current version (DELETE of a key). Nothing here can
# undelete a version: a key a customer deleted stays deleted. Destroying
# every version goes through metadata delete above.
path "{{mount}}/delete/workspaces/+/providers/+/keys/+" {
  capabilities = ["update"]
}
path "{{mount}}/delete/organizations/+/providers/+/keys/+" {
  capabilities = ["update"]
}
path "{{mount}}/delete/hosted/providers/+/keys/+" {
  capabilities = ["update"]
}

# List the scopes, their providers and the keys of each pool (purge, the
# reconciler).
path "{{mount}}/metadata/workspaces/" {
  capabilities = ["list"]
}
path "{{mount}}/metadata/workspaces/+/providers/" {
  capabilities = ["list"]
}
path "{{mount}}/metadata/workspaces/+/providers/+/keys/" {
  capabilities = ["list"]
}
path "{{mount}}/metadata/organizations/" {
  capabilities = ["list"]
}
path "{{mount}}/metadata/organizations/+/providers/" {
  capabilities = ["list"]
}
path "{{mount}}/metadata/organizations/+/providers/+/keys/" {
  capabilities = ["list"]
}
path "{{mount}}/metadata/hosted/providers/" {
  capabilities = ["list"]
}
path "{{mount}}/metadata/hosted/providers/+/keys/" {
  capabilities = ["list"]
}

# Where keybroker v1 kept a workspace's and a hosted key: whether one is
# still there (a first write refuses to start a key's history over beside
# it), and its removal once `keybroker vault migrate-layout` has copied it
# (or a purge).
path "{{mount}}/metadata/workspaces/+/providers/+" {
  capabilities = ["read", "delete"]
}
path "{{mount}}/metadata/hosted/providers/+" {
  capabilities = ["read", "delete"]
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
