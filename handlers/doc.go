// Package handlers is keybroker's HTTP surface on gin: the v1 JSON API, the
// authentication and authorisation middleware, the one JSON error shape
// ({"error":{"code","message"}}), the health and readiness endpoints, the
// OpenAPI document and the embedded admin web page.
//
// Handlers decode, validate the request's shape, make one call into the
// domain and render; they hold no business rules. Internal causes of errors
// are logged once and never reach a response.
package handlers
