# workspace/<workspace_id>/<provider_id>/<key_id>; the key itself is never
# read back. v1's <workspace_id>/<provider_id> imports key "default".
terraform import keybroker_workspace_key.acme_openai workspace/acme/openai/default
