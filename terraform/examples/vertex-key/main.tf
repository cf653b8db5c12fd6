# A Google Vertex AI credential as code: a project, a location and a
# service-account key file, from which keybroker mints short-lived access
# tokens (the file's private key never leaves keybroker). The file is
# write-only (Terraform/OpenTofu >= 1.11): it comes from an ephemeral
# variable and is in no plan or state. Bump key_version to send it again
# (rotation); changing project or location writes the credential again
# too.
#
#   export KEYBROKER_ADDR=https://keybroker.example.com KEYBROKER_TOKEN=kbt_...   # an admin of workspace acme
#   export TF_VAR_vertex_service_account_json="$(cat acme-vertex-sa.json)"
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

variable "vertex_service_account_json" {
  description = "The service account's key file (JSON), with the Vertex AI User role on the project."
  type        = string
  sensitive   = true
  ephemeral   = true
}

variable "key_version" {
  description = "Bump to rotate: the key file is sent again."
  type        = number
  default     = 1
}

resource "keybroker_workspace_key" "acme_vertex" {
  workspace_id = "acme"
  provider_id  = "vertex"
  vertex = {
    project                         = "acme-vertex-prod"
    location                        = "europe-west4"
    service_account_json_wo         = var.vertex_service_account_json
    service_account_json_wo_version = var.key_version
  }
}

output "masked" {
  description = "The masked preview of the key file (never the file)."
  value       = keybroker_workspace_key.acme_vertex.masked
}
