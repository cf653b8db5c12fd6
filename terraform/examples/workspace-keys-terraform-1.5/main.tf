# Two workspaces' provider keys as code for CLIs without write-only
# attributes and ephemeral variables (Terraform 1.5.7, the last MPL-2.0
# Terraform): api_key, which Terraform keeps in state as a sensitive value.
# Protect the state (an encrypted backend), or use ../workspace-keys with
# Terraform/OpenTofu >= 1.11, which keeps the keys out of plans and state.
# With the local backend, terraform.tfstate.backup keeps both keys in
# plaintext even after `terraform destroy`: delete it, or pass -backup=-
# (docs/terraform.md).
#
#   export KEYBROKER_ADDR=http://127.0.0.1:8080 KEYBROKER_TOKEN=kbt_...   # an operator token, or an admin of both workspaces
#   export TF_VAR_acme_openai_key=sk-proj-...  TF_VAR_globex_anthropic_key=sk-ant-...
#   terraform apply

terraform {
  required_version = ">= 1.5"
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
}

variable "globex_anthropic_key" {
  description = "Anthropic key of workspace globex."
  type        = string
  sensitive   = true
}

resource "keybroker_workspace_key" "acme_openai" {
  workspace_id = "acme"
  provider_id  = "openai"
  api_key      = var.acme_openai_key
}

resource "keybroker_workspace_key" "globex_anthropic" {
  workspace_id = "globex"
  provider_id  = "anthropic"
  api_key      = var.globex_anthropic_key
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
