# Terraform/OpenTofu >= 1.11: the key is write-only, never in plan or state.
# Bump api_key_wo_version to rotate.
resource "keybroker_workspace_key" "acme_openai" {
  workspace_id       = "acme"
  provider_id        = "openai"
  api_key_wo         = var.acme_openai_key # an ephemeral variable
  api_key_wo_version = 1
}

# A second key in the same pool: served only when the first is disabled or
# does not allow the model (priority 200 > 100), and only for gpt-4o-mini.
resource "keybroker_workspace_key" "acme_openai_mini" {
  workspace_id       = "acme"
  provider_id        = "openai"
  key_id             = "mini"
  name               = "Acme's key for the small model"
  priority           = 200
  models             = ["gpt-4o-mini"]
  api_key_wo         = var.acme_openai_mini_key
  api_key_wo_version = 1
}

# Older CLIs (Terraform 1.5.7): api_key, kept in state as a sensitive value.
resource "keybroker_workspace_key" "globex_anthropic" {
  workspace_id = "globex"
  provider_id  = "anthropic"
  api_key      = var.globex_anthropic_key
}
