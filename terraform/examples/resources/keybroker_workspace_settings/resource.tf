# Acme's workspace belongs to the acme organization (an operator token sets
# the link) and never falls back to the platform's hosted keys, which would
# be billed: without a key of its own, calls fail with no_key.
resource "keybroker_workspace_settings" "acme" {
  workspace_id    = "acme"
  organization    = "acme"
  inherit         = true
  hosted_fallback = false
}
