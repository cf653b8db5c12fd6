package providers

// Anthropic's Messages API: the key in x-api-key, an anthropic-version
// header on every call, and the anthropic-beta features a sandbox may
// turn on.
func init() {
	register(Provider{ID: "anthropic", DisplayName: "Anthropic",
		Credential: apiKey(`starts with "sk-ant-", 20 to 256 characters`, tokenRule(20, 256, "sk-ant-")),
		Authorize:  xAPIKey,
		Check: CheckSpec{BaseURL: "https://api.anthropic.com", Path: "/v1/models?limit=1",
			Headers: map[string]string{"anthropic-version": "2023-06-01"}},
		Proxy: ProxySpec{Endpoints: append([]Endpoint{post("/v1/messages", "model"), post("/v1/messages/count_tokens", "model")}, openAIListing("/v1")...),
			Headers: []ProxyHeader{{Name: "Anthropic-Version"}, {Name: "Anthropic-Beta", Values: anthropicBetas}}},
		KeyAdmin: anthropicKeyAdmin,
		Dev:      APIKey("sk-ant-FAKE-hosted-dev-key-not-real")})
}

// anthropicBetas are the anthropic-beta features a sandbox may turn on:
// those that change only how the model answers the call at hand. Not
// forwarded: the Files API (a message could read the key owner's stored
// files), code execution and skills (containers that outlive the call and
// are reused by id), the MCP connector, batches, and any feature not
// listed here.
var anthropicBetas = []string{
	"prompt-caching-2024-07-31", "extended-cache-ttl-2025-04-11", "token-counting-2024-11-01", "pdfs-2024-09-25",
	"output-128k-2025-02-19", "token-efficient-tools-2025-02-19", "interleaved-thinking-2025-05-14",
	"fine-grained-tool-streaming-2025-05-14", "context-1m-2025-08-07", "context-management-2025-06-27",
	"computer-use-2024-10-22", "computer-use-2025-01-24",
}
