# A key of organization acme-corp: its workspaces use it when they have no
# usable key of their own (and inherit, the default). Link a workspace with
# keybroker_workspace_settings (an operator's token).
resource "keybroker_organization_key" "acme_corp_openai" {
  organization_id    = "acme-corp"
  provider_id        = "openai"
  key_id             = "shared"
  name               = "Acme Corp shared OpenAI key"
  api_key_wo         = var.acme_corp_openai_key
  api_key_wo_version = 1
}
