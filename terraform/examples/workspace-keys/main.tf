# Two workspaces' provider keys as code, with the keys kept out of plans and
# state: write-only api_key_wo (Terraform/OpenTofu >= 1.11) fed by ephemeral
# variables. Bump key_version to rotate (send the keys again).
#
#   export KEYBROKER_ADDR=http://127.0.0.1:8080 KEYBROKER_TOKEN=kbt_...   # an operator token, or an admin of both workspaces
#   export TF_VAR_acme_openai_key=sk-proj-...  TF_VAR_globex_anthropic_key=sk-ant-...
#   tofu apply

terraform {
  required_version = ">= 1.11"
  required_providers {
    keybroker = {
      source = "keybroker/keybroker"
    }
  }
}

# address and token come from KEYBROKER_ADDR and KEYBROKER_TOKEN.
provider "keybroker" {}

variable "acme_openai_key" {
  description = "OpenAI key of workspace acme."
  type        = string
  sensitive   = true
  ephemeral   = true
}

variable "globex_anthropic_key" {
  description = "Anthropic key of workspace globex."
  type        = string
  sensitive   = true
  ephemeral   = true
}

variable "key_version" {
  description = "Bump to rotate: the write-only keys are sent again."
  type        = number
  default     = 1
}

resource "keybroker_workspace_key" "acme_openai" {
  workspace_id       = "acme"
  provider_id        = "openai"
  api_key_wo         = var.acme_openai_key
  api_key_wo_version = var.key_version
}

resource "keybroker_workspace_key" "globex_anthropic" {
  workspace_id       = "globex"
  provider_id        = "anthropic"
  api_key_wo         = var.globex_anthropic_key
  api_key_wo_version = var.key_version
}

data "keybroker_workspace_keys" "acme" {
  workspace_id = "acme"
  depends_on   = [keybroker_workspace_key.acme_openai]
}

data "keybroker_providers" "all" {}

output "acme_keys" {
  description = "Metadata of acme's keys (masked previews, versions), never the keys."
  value       = data.keybroker_workspace_keys.acme.keys
}

output "providers" {
  value = [for p in data.keybroker_providers.all.providers : p.id]
}
