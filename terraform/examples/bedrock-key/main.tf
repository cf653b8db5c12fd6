# Amazon Bedrock credentials as code, in two keys of one pool: an IAM key
# pair with a role keybroker assumes (AssumeRole with the external id its
# trust policy requires; callers get only the STS session), and a Bedrock
# API key. Secret fields are write-only (Terraform/OpenTofu >= 1.11): they
# come from ephemeral variables and are in no plan or state. Bump
# key_version to send them again (rotation); changing region, model_map or
# the role writes the credential again too.
#
#   export KEYBROKER_ADDR=https://keybroker.example.com KEYBROKER_TOKEN=kbt_...   # an admin of workspace acme
#   export TF_VAR_aws_access_key_id=AKIA... TF_VAR_aws_secret_access_key=... TF_VAR_bedrock_api_key=ABSK...
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

variable "aws_access_key_id" {
  description = "The access key id of the IAM user keybroker signs in as."
  type        = string
  sensitive   = true
  ephemeral   = true
}

variable "aws_secret_access_key" {
  description = "Its secret access key."
  type        = string
  sensitive   = true
  ephemeral   = true
}

variable "bedrock_api_key" {
  description = "A Bedrock API key (ABSK...)."
  type        = string
  sensitive   = true
  ephemeral   = true
}

variable "key_version" {
  description = "Bump to rotate: the write-only secrets are sent again."
  type        = number
  default     = 1
}

resource "keybroker_workspace_key" "acme_bedrock" {
  workspace_id = "acme"
  provider_id  = "bedrock"
  bedrock = {
    region = "eu-west-1"
    # Callers name a model; Bedrock is called with this inference profile.
    model_map = {
      "claude-sonnet-4" = "eu.anthropic.claude-sonnet-4-20250514-v1:0"
    }
    access_key_id_wo      = var.aws_access_key_id
    secret_access_key_wo  = var.aws_secret_access_key
    access_key_wo_version = var.key_version
    role_arn              = "arn:aws:iam::123456789012:role/acme-bedrock-invoke"
    external_id           = "acme-keybroker"
    session_name          = "keybroker-acme"
  }
}

# A Bedrock API key (sent as a bearer token), served when the key pair
# above is disabled (priority 200 > 100).
resource "keybroker_workspace_key" "acme_bedrock_api_key" {
  workspace_id = "acme"
  provider_id  = "bedrock"
  key_id       = "apikey"
  priority     = 200
  bedrock = {
    region             = "us-east-1"
    api_key_wo         = var.bedrock_api_key
    api_key_wo_version = var.key_version
  }
}

output "masked" {
  description = "The masked preview of each secret field (never the secrets)."
  value       = [keybroker_workspace_key.acme_bedrock.masked, keybroker_workspace_key.acme_bedrock_api_key.masked]
}
