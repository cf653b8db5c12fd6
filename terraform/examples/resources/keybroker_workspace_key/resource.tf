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

# The clouds take a credential of several fields, in the attribute of their
# kind; secret fields are write-only (Terraform/OpenTofu >= 1.11), each sent
# again when its *_wo_version is bumped. Complete examples:
# terraform/examples/azure-openai-key, bedrock-key and vertex-key.
resource "keybroker_workspace_key" "acme_azure" {
  workspace_id = "acme"
  provider_id  = "azure-openai"
  azure_openai = {
    endpoint           = "https://acme-prod.openai.azure.com"
    api_version        = "2024-10-21"
    deployments        = { "gpt-4o" = "gpt-4o-prod" }
    api_key_wo         = var.azure_openai_api_key # or tenant_id, client_id, client_secret_wo
    api_key_wo_version = 1
  }
}

resource "keybroker_workspace_key" "acme_bedrock" {
  workspace_id = "acme"
  provider_id  = "bedrock"
  bedrock = {
    region                = "eu-west-1"
    model_map             = { "claude-sonnet-4" = "eu.anthropic.claude-sonnet-4-20250514-v1:0" }
    access_key_id_wo      = var.aws_access_key_id # or api_key_wo, a Bedrock API key
    secret_access_key_wo  = var.aws_secret_access_key
    access_key_wo_version = 1
    role_arn              = "arn:aws:iam::123456789012:role/acme-bedrock-invoke"
    external_id           = "acme-keybroker"
  }
}

resource "keybroker_workspace_key" "acme_vertex" {
  workspace_id = "acme"
  provider_id  = "vertex"
  vertex = {
    project                         = "acme-vertex-prod"
    location                        = "europe-west4"
    service_account_json_wo         = var.vertex_service_account_json
    service_account_json_wo_version = 1
  }
}
