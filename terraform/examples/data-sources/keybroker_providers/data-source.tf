# The providers keybroker supports, with their key format hints.
data "keybroker_providers" "all" {}
