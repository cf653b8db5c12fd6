# workspace/<workspace_id>/<provider_id>/<key_id>; the key itself is never
# read back. v1's <workspace_id>/<provider_id> imports key "default".
terraform import keybroker_workspace_key.acme_openai workspace/acme/openai/default

# A cloud key imports the same way; its non-secret fields are read back, its
# secret fields never are: the first apply after the import sends them again
# (the *_wo_version attributes were not imported).
terraform import keybroker_workspace_key.acme_bedrock workspace/acme/bedrock/default
