# Metadata of a workspace's keys: masked previews and versions, never the keys.
data "keybroker_workspace_keys" "acme" {
  workspace_id = "acme"
}
