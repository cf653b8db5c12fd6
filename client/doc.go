// Package client is a small typed Go client of keybroker's HTTP API (v1),
// used by the admin CLI and the Terraform provider. It decodes the API's
// JSON error bodies back into typed errors.
package client
