package providers

import (
	"maps"
	"strings"
	"testing"
)

func TestMintEndpointsFromEnv(t *testing.T) {
	reg := NewRegistry(Provider{ID: "cloud"}, Provider{ID: "cloud_gov"}, Provider{ID: "openai"})
	got, err := MintEndpointsFromEnv(reg, []string{
		"KEYBROKER_PROVIDER_CLOUD_STS_URL=http://127.0.0.1:9000/sts/",
		"KEYBROKER_PROVIDER_CLOUD_GOOGLE_TOKEN_URL=https://token.example/t",
		"KEYBROKER_PROVIDER_CLOUD_GOV_ENTRA_URL=https://login.example", // the longer id wins
		"KEYBROKER_PROVIDER_CLOUD_BASE_URL=https://base.example",       // a base URL, not a token service
		"KEYBROKER_PROVIDER_NOSUCH_STS_URL=https://x.example",          // no such provider
		"KEYBROKER_PROVIDER_OPENAI_STS_URL=",                           // empty
		"PATH=/usr/bin",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]map[string]string{
		"cloud":     {"sts": "http://127.0.0.1:9000/sts", "google_token": "https://token.example/t"},
		"cloud_gov": {"entra": "https://login.example"},
	}
	if len(got) != len(want) || !maps.Equal(got["cloud"], want["cloud"]) || !maps.Equal(got["cloud_gov"], want["cloud_gov"]) {
		t.Fatalf("got %v, want %v", got, want)
	}
	env := MintEnv{Endpoints: got["cloud"]}
	if env.Endpoint("sts", "https://sts.amazonaws.com") != "http://127.0.0.1:9000/sts" || env.Endpoint("entra", "https://def") != "https://def" {
		t.Fatalf("Endpoint: %v", env)
	}
	if MintEndpointEnvName("cloud", "sts") != "KEYBROKER_PROVIDER_CLOUD_STS_URL" {
		t.Fatal(MintEndpointEnvName("cloud", "sts"))
	}
	for _, bad := range []string{"ftp://x.example", "http://", "not a url"} {
		_, err := MintEndpointsFromEnv(reg, []string{"KEYBROKER_PROVIDER_CLOUD_STS_URL=" + bad})
		if err == nil || !strings.Contains(err.Error(), "KEYBROKER_PROVIDER_CLOUD_STS_URL") || strings.Contains(err.Error(), bad) {
			t.Fatalf("%q: %v", bad, err)
		}
	}
}
