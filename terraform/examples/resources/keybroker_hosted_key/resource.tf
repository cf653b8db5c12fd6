# The platform's own key (billed to workspaces that fall back to it).
# Needs an operator token. Two keys of equal priority take turns.
resource "keybroker_hosted_key" "openai_a" {
  provider_id        = "openai"
  key_id             = "platform-a"
  api_key_wo         = var.platform_openai_key_a
  api_key_wo_version = 1
}

resource "keybroker_hosted_key" "openai_b" {
  provider_id        = "openai"
  key_id             = "platform-b"
  api_key_wo         = var.platform_openai_key_b
  api_key_wo_version = 1
}
