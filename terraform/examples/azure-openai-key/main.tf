# An Azure OpenAI resource's credentials as code, in two keys of one pool:
# the resource's API key, and Entra ID client credentials (from which
# keybroker mints short-lived access tokens; the client secret never leaves
# it). Secret fields are write-only (Terraform/OpenTofu >= 1.11): they come
# from ephemeral variables and are in no plan or state. Bump key_version to
# send them again (rotation); changing endpoint, api_version or deployments
# writes the credential again too.
#
#   export KEYBROKER_ADDR=https://keybroker.example.com KEYBROKER_TOKEN=kbt_...   # an admin of workspace acme
#   export TF_VAR_azure_openai_api_key=... TF_VAR_entra_client_secret=...
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

variable "azure_openai_api_key" {
  description = "The Azure OpenAI resource's key (Keys and Endpoint in the Azure portal)."
  type        = string
  sensitive   = true
  ephemeral   = true
}

variable "entra_client_secret" {
  description = "The client secret of the Entra ID application that may call the resource."
  type        = string
  sensitive   = true
  ephemeral   = true
}

variable "key_version" {
  description = "Bump to rotate: the write-only secrets are sent again."
  type        = number
  default     = 1
}

# Callers name OpenAI models; the proxy sends them to these deployments.
locals {
  deployments = {
    "gpt-4o"      = "gpt-4o-prod"
    "gpt-4o-mini" = "gpt-4o-mini-prod"
  }
}

resource "keybroker_workspace_key" "acme_azure" {
  workspace_id = "acme"
  provider_id  = "azure-openai"
  azure_openai = {
    endpoint           = "https://acme-prod.openai.azure.com"
    api_version        = "2024-10-21"
    deployments        = local.deployments
    api_key_wo         = var.azure_openai_api_key
    api_key_wo_version = var.key_version
  }
}

# The same resource through Entra ID: served when the key above is
# disabled (priority 200 > 100).
resource "keybroker_workspace_key" "acme_azure_entra" {
  workspace_id = "acme"
  provider_id  = "azure-openai"
  key_id       = "entra"
  priority     = 200
  azure_openai = {
    endpoint                 = "https://acme-prod.openai.azure.com"
    api_version              = "2024-10-21"
    deployments              = local.deployments
    tenant_id                = "8a5c1e0f-3b2d-4c7a-9e61-0d4f2b7a9c35"
    client_id                = "3f1c0a52-8d6e-4b0e-9a57-2c1d5e8f4a10"
    client_secret_wo         = var.entra_client_secret
    client_secret_wo_version = var.key_version
  }
}

output "masked" {
  description = "The masked preview of each secret field (never the secrets)."
  value       = [keybroker_workspace_key.acme_azure.masked, keybroker_workspace_key.acme_azure_entra.masked]
}
