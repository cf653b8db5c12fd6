# Terraform/OpenTofu >= 1.11: the key is write-only, never in plan or state.
# Bump api_key_wo_version to rotate.
resource "keybroker_workspace_key" "acme_openai" {
  workspace_id       = "acme"
  provider_id        = "openai"
  api_key_wo         = var.acme_openai_key # an ephemeral variable
  api_key_wo_version = 1
}

# Older CLIs (Terraform 1.5.7): api_key, kept in state as a sensitive value.
resource "keybroker_workspace_key" "globex_anthropic" {
  workspace_id = "globex"
  provider_id  = "anthropic"
  api_key      = var.globex_anthropic_key
}
