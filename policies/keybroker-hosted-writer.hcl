# keybroker-hosted-writer: for the operators (or their pipeline) who load
# the platform's hosted keys. Like keybroker-writer, but for
# hosted/providers/<provider> only, and also without read on data/.

# Write a new version of a hosted key.
path "{{mount}}/data/hosted/providers/+" {
  capabilities = ["create", "update"]
}

# Version history (never the value), and removal with all versions.
path "{{mount}}/metadata/hosted/providers/+" {
  capabilities = ["read", "delete"]
}
path "{{mount}}/metadata/hosted/providers/" {
  capabilities = ["list"]
}

# Soft-delete the current version (no undelete: a deleted key stays
# deleted).
path "{{mount}}/delete/hosted/providers/+" {
  capabilities = ["update"]
}

# Token self-management.
path "auth/token/lookup-self" {
  capabilities = ["read"]
}
path "auth/token/renew-self" {
  capabilities = ["update"]
}
path "auth/token/revoke-self" {
  capabilities = ["update"]
}
