package providers

// OpenAI and the APIs that speak its protocol: an API key, sent as a
// bearer token (Baseten: "Api-Key <key>"), checked by listing models,
// chat completions and a models listing through the proxy. They differ
// only in data (base URL, paths, key format), so they share this file;
// a provider whose protocol differs gets a file of its own.
func init() {
	register(
		Provider{ID: "openai", DisplayName: "OpenAI",
			Credential: apiKey(`starts with "sk-" (not "sk-ant-", nor an admin key's "sk-admin-"), 20 to 256 characters`, openAIKeyRule),
			Authorize:  bearerKey,
			Check:      CheckSpec{BaseURL: "https://api.openai.com", Path: "/v1/models"},
			Proxy: ProxySpec{Endpoints: append([]Endpoint{post("/v1/chat/completions", "model"), post("/v1/completions", "model"),
				post("/v1/responses", "model", "tools[type=image_generation].model"), post("/v1/embeddings", "model")}, openAIListing("/v1")...),
				Headers: []ProxyHeader{{Name: "X-Client-Request-Id"}}},
			KeyAdmin: openAIKeyAdmin,
			Dev:      APIKey("sk-FAKE-hosted-dev-key-not-real-openai")},
		Provider{ID: "mistral", DisplayName: "Mistral AI",
			Credential: apiKey("32 letters and digits", keyRule{minLen: 32, maxLen: 32, allowed: isAlnum, allowedText: "letters and digits"}),
			Authorize:  bearerKey,
			Check:      CheckSpec{BaseURL: "https://api.mistral.ai", Path: "/v1/models"},
			Proxy: ProxySpec{Endpoints: append([]Endpoint{post("/v1/chat/completions", "model"), post("/v1/fim/completions", "model"),
				post("/v1/embeddings", "model")}, openAIListing("/v1")...)},
			Dev: APIKey("FAKEhostedDevKeyNotRealMistral00")},
		Provider{ID: "xai", DisplayName: "xAI (Grok)",
			Credential: apiKey(`starts with "xai-", 20 to 256 characters`, tokenRule(20, 256, "xai-")),
			Authorize:  bearerKey,
			Check:      CheckSpec{BaseURL: "https://api.x.ai", Path: "/v1/models"},
			Proxy: ProxySpec{Endpoints: append([]Endpoint{post("/v1/chat/completions", "model"), post("/v1/responses", "model", "tools[].model"),
				post("/v1/messages", "model"), post("/v1/embeddings", "model")}, openAIListing("/v1")...)},
			Dev: APIKey("xai-FAKE-hosted-dev-key-not-real")},
		Provider{ID: "zai", DisplayName: "Z.ai (GLM)",
			Credential: apiKey("letters and digits with one '.' (id.secret), 20 to 128 characters", idDotSecret),
			Authorize:  bearerKey,
			Check:      CheckSpec{BaseURL: "https://api.z.ai", Path: "/api/paas/v4/models"},
			Proxy:      ProxySpec{Endpoints: []Endpoint{post("/api/paas/v4/chat/completions", "model"), post("/api/paas/v4/embeddings", "model"), get("/api/paas/v4/models")}},
			Dev:        APIKey("FAKEhostedDevKeyNotRealZai.notreal0")},
		Provider{ID: "moonshot", DisplayName: "Moonshot AI (Kimi)",
			Credential: apiKey(`starts with "sk-", 20 to 256 characters`, skRule),
			Authorize:  bearerKey,
			Check:      CheckSpec{BaseURL: "https://api.moonshot.ai", Path: "/v1/models"},
			Proxy:      ProxySpec{Endpoints: append([]Endpoint{post("/v1/chat/completions", "model")}, openAIListing("/v1")...)},
			Dev:        APIKey("sk-FAKE-hosted-dev-key-not-real-moonshot")},
		Provider{ID: "fireworks", DisplayName: "Fireworks AI",
			Credential: apiKey(`starts with "fw_", 20 to 256 characters`, tokenRule(20, 256, "fw_")),
			Authorize:  bearerKey,
			Check:      CheckSpec{BaseURL: "https://api.fireworks.ai", Path: "/inference/v1/models"},
			Proxy: ProxySpec{Endpoints: []Endpoint{post("/inference/v1/chat/completions", "model"), post("/inference/v1/completions", "model"),
				post("/inference/v1/embeddings", "model"), get("/inference/v1/models")}},
			Dev: APIKey("fw_FAKE-hosted-dev-key-not-real")},
		Provider{ID: "together", DisplayName: "Together AI",
			Credential: apiKey("letters, digits, '-' and '_', 40 to 256 characters", tokenRule(40, 256)),
			Authorize:  bearerKey,
			Check:      CheckSpec{BaseURL: "https://api.together.xyz", Path: "/v1/models"},
			Proxy: ProxySpec{Endpoints: []Endpoint{post("/v1/chat/completions", "model"), post("/v1/completions", "model"),
				post("/v1/embeddings", "model"), get("/v1/models")}},
			Dev: APIKey("FAKE-hosted-dev-key-not-real-together-000")},
		Provider{ID: "baseten", DisplayName: "Baseten",
			Credential: apiKey("letters and digits with one '.' (prefix.secret), 20 to 128 characters", idDotSecret),
			Authorize:  headerKey("Authorization", "Api-Key "),
			Check:      CheckSpec{BaseURL: "https://api.baseten.co", Path: "/v1/models"},
			Proxy:      ProxySpec{Endpoints: []Endpoint{post("/v1/chat/completions", "model"), get("/v1/models")}},
			Dev:        APIKey("FAKEbaseten.hostedDevKeyNotReal0")},
	)
}

// skRule is OpenAI's key format, which Moonshot's keys share: "sk-" and
// not Anthropic's "sk-ant-".
var skRule = keyRule{prefixes: []string{"sk-"}, notPrefixes: []string{"sk-ant-"}, minLen: 20, maxLen: 256, allowed: isTokenChar,
	allowedText: "letters, digits, '-' and '_'"}

// openAIKeyRule is skRule without OpenAI's admin keys ("sk-admin-"): an
// admin key in the openai pool would be resolved and served to sandboxes;
// it belongs in the openai-admin pool, which is never resolved.
var openAIKeyRule = keyRule{prefixes: []string{"sk-"}, notPrefixes: []string{"sk-ant-", "sk-admin-"}, minLen: 20, maxLen: 256,
	allowed: isTokenChar, allowedText: "letters, digits, '-' and '_'"}

// idDotSecret is the format of keys made of an id and a secret joined by
// one '.'.
var idDotSecret = keyRule{minLen: 20, maxLen: 128, allowed: isAlnumOrDot, allowedText: "letters, digits and '.'", shape: oneDot}

// openAIListing is the models listing of an OpenAI-compatible API under
// prefix: the list, and one model.
func openAIListing(prefix string) []Endpoint {
	return []Endpoint{get(prefix + "/models"), get(prefix + "/models/{model}")}
}
