# address and token may also come from KEYBROKER_ADDR and KEYBROKER_TOKEN.
provider "keybroker" {
  address = "https://keybroker.example.internal"
  token   = var.keybroker_token # an operator token, or an admin of the workspaces managed
}

variable "keybroker_token" {
  type      = string
  sensitive = true
}
