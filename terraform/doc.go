// Package terraform is keybroker's Terraform provider, built on
// terraform-plugin-framework: the keybroker_workspace_key resource (keys as
// code, kept out of Terraform state) and the keybroker_workspace_keys and
// keybroker_providers data sources. It talks to keybroker through the client
// package only.
package terraform
