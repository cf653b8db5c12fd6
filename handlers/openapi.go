package handlers

import (
	_ "embed"
	"net/http"

	"github.com/gin-gonic/gin"
)

// OpenAPIDocument is the OpenAPI 3 description of the API, served at
// /v1/openapi.json. It is generated from the route table (routes.go) and
// the wire types of package client by package handlers/apidoc (`make
// generate`); tests check every route and answer against it.
//
//go:embed openapi.json
var OpenAPIDocument []byte

func serveOpenAPI(c *gin.Context) {
	c.Data(http.StatusOK, "application/json", OpenAPIDocument)
}
