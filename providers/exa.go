package providers

// Exa's search API: a UUID key in x-api-key, and search calls (one of
// which, answer, names a model).
func init() {
	register(Provider{ID: "exa", DisplayName: "Exa",
		Credential: apiKey("a UUID: 36 characters, hexadecimal digits in groups of 8-4-4-4-12",
			keyRule{minLen: 36, maxLen: 36, allowed: isHexOrDash, allowedText: "hexadecimal digits and '-'", shape: uuidShape}),
		Authorize: xAPIKey,
		// Listing websets is authenticated and spends no search credit.
		Check: CheckSpec{BaseURL: "https://api.exa.ai", Path: "/websets/v0/websets?limit=1"},
		Proxy: ProxySpec{Endpoints: []Endpoint{post("/search"), post("/contents"), post("/findSimilar"), post("/answer", "model")}},
		Dev:   APIKey("deadbeef-0000-4000-8000-00000000fa4e")}) // a UUID, as Exa's keys are
}
