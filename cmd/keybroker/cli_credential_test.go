package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keybroker/keybroker/client"
	"github.com/keybroker/keybroker/internal/fixtures/cloudstub"
	"github.com/keybroker/keybroker/internal/fixtures/testenv"
	"github.com/keybroker/keybroker/internal/fixtures/testenv/kbtest"
)

// startCLIServer runs keybroker serve over a real Vault and PostgreSQL and
// returns the environment of an admin of workspace ws.
func startCLIServer(t *testing.T, ws string) []string {
	t.Helper()
	vaultAddr, vaultToken := testenv.Vault(t)
	mount := testenv.NewKVMount(t)
	dbURL := testenv.DatabaseURL(t)
	runtimeURL := testenv.RuntimeURL(t, dbURL)
	run(t, []string{"DATABASE_URL=" + dbURL}, "", false, "migrate", "--runtime-role", testenv.RuntimeRole(t))
	addr, metricsAddr := freeAddr(t), freeAddr(t)
	serve := keybroker("serve")
	serve.Env = append(serve.Env, "KEYBROKER_LISTEN_ADDR="+addr, "DATABASE_URL="+runtimeURL, "VAULT_ADDR="+vaultAddr, "KEYBROKER_VAULT_AUTH=token",
		"VAULT_TOKEN="+vaultToken, "KEYBROKER_KV_MOUNT="+mount, "KEYBROKER_FINGERPRINT_PEPPER=cli-test-pepper-0123456789", "KEYBROKER_METRICS_ADDR="+metricsAddr)
	serve.Env = append(serve.Env, kbtest.KeysEnv("all")...)
	var serverLog testenv.SyncBuffer
	serve.Stdout, serve.Stderr = &serverLog, &serverLog
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = serve.Process.Kill(); _ = serve.Wait() })
	testenv.WaitReady(t, "http://"+addr+"/readyz", 30*time.Second, serverLog.String)
	db := append([]string{"DATABASE_URL=" + dbURL}, kbtest.KeysEnv("all")...)
	token, _ := run(t, db, "", false, "token", "create", "--role", "admin", "--workspace", ws, "--ttl", "1h")
	return []string{"KEYBROKER_ADDR=http://" + addr, "KEYBROKER_TOKEN=" + strings.TrimSpace(token)}
}

// writeSecretFile writes a secret to a file of its own.
func writeSecretFile(t *testing.T, name, value string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(value+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// noSecret fails the test when any output holds a secret (or a telling
// part of one).
func noSecret(t *testing.T, what string, outputs []string, secrets ...string) {
	t.Helper()
	for _, out := range outputs {
		for _, s := range secrets {
			if strings.Contains(out, s) || (len(s) > 24 && strings.Contains(out, s[8:24])) {
				t.Fatalf("%s printed a secret: %q", what, out)
			}
		}
	}
}

func TestCLIWritesCredentialsOfEveryKindWithSecretsNeverAsFlags(t *testing.T) {
	api := startCLIServer(t, "ws1")
	const ws = "ws1"

	// Bedrock: non-secret fields as flags (a map field both ways), the
	// access key id from a file, the secret access key from stdin.
	accessKeyID := "AKIA" + strings.ToUpper(testenv.RandomID(t) + testenv.RandomID(t))[:16]
	secretKey := (testenv.RandomID(t) + testenv.RandomID(t) + testenv.RandomID(t) + testenv.RandomID(t))[:40]
	idFile := writeSecretFile(t, "access-key-id", accessKeyID)
	bedrock := []string{"--workspace", ws, "--provider", "bedrock", "--key", "prod"}
	out, msg := run(t, api, secretKey+"\n", false, append([]string{"keys", "add", "--json",
		"--field", "region=eu-west-1", "--field", "roleArn=arn:aws:iam::123456789012:role/x",
		"--field", "modelMap=claude=eu.anthropic.claude-sonnet-4-v1:0", "--field", `modelMap={"haiku":"eu.anthropic.claude-haiku-4-v1:0"}`,
		"--secret-file", "accessKeyId=" + idFile, "--secret-stdin", "secretAccessKey"}, bedrock...)...)
	noSecret(t, "keys add (bedrock)", []string{out, msg}, accessKeyID, secretKey)
	var meta client.KeyMetadata
	if err := json.Unmarshal([]byte(out), &meta); err != nil {
		t.Fatalf("keys add --json printed %q: %v", out, err)
	}
	wantMap := map[string]any{"claude": "eu.anthropic.claude-sonnet-4-v1:0", "haiku": "eu.anthropic.claude-haiku-4-v1:0"}
	if meta.Kind != "aws_bedrock" || meta.Fields["region"] != "eu-west-1" || meta.Fields["roleArn"] != "arn:aws:iam::123456789012:role/x" ||
		len(meta.Fields["modelMap"].(map[string]any)) != 2 || meta.Fields["modelMap"].(map[string]any)["haiku"] != wantMap["haiku"] ||
		meta.Fields["modelMap"].(map[string]any)["claude"] != wantMap["claude"] ||
		meta.Masked["accessKeyId"] == "" || meta.Masked["secretAccessKey"] == "" || meta.Fields["accessKeyId"] != nil || meta.Fields["secretAccessKey"] != nil {
		t.Fatalf("keys add stored %+v", meta)
	}
	if !strings.Contains(msg, "added workspace ws1/bedrock/prod: aws_bedrock") || !strings.Contains(msg, "region=eu-west-1") ||
		!strings.Contains(msg, "secretAccessKey="+meta.Masked["secretAccessKey"]) {
		t.Fatalf("keys add said %q", msg)
	}

	// A secret given as a flag value is refused, not echoed, and changes
	// nothing; so is a field the provider does not have.
	for _, bad := range [][]string{
		{"keys", "rotate", "--field", "region=eu-west-1", "--field", "secretAccessKey=" + secretKey, "--secret-file", "accessKeyId=" + idFile},
		{"keys", "add", "--field", "region=eu-west-1", "--field", "accessKeyId=" + accessKeyID},
	} {
		out, msg = run(t, api, "", true, append(bad, bedrock...)...)
		noSecret(t, "a secret given as --field", []string{out, msg}, accessKeyID, secretKey)
		if !strings.Contains(msg, "is secret: it is never taken as a flag value") || !strings.Contains(msg, "--secret-file") {
			t.Fatalf("a secret given as --field said %q", msg)
		}
	}
	_, msg = run(t, api, "", true, append([]string{"keys", "rotate", "--field", "colour=blue"}, bedrock...)...)
	if !strings.Contains(msg, `bedrock has no field "colour"`) {
		t.Fatalf("an unknown field said %q", msg)
	}
	// A required secret not given, with no terminal to prompt on.
	_, msg = run(t, api, "", true, "keys", "add", "--workspace", ws, "--provider", "vertex", "--field", "project=p", "--field", "location=us-central1")
	if !strings.Contains(msg, "secret field serviceAccountJson is required") {
		t.Fatalf("a missing secret said %q", msg)
	}
	out, _ = run(t, api, "", false, append([]string{"keys", "get", "--json"}, bedrock...)...)
	var after client.KeyMetadata
	if err := json.Unmarshal([]byte(out), &after); err != nil || after.Version != 1 || after.Masked["secretAccessKey"] != meta.Masked["secretAccessKey"] {
		t.Fatalf("after the refusals the key is %q (%v)", out, err)
	}
	out, _ = run(t, api, "", false, "keys", "list", "--workspace", ws, "--json")
	if strings.Count(out, `"keyId"`) != 1 {
		t.Fatalf("after the refusals the workspace holds %q", out)
	}

	// Rotating it: the other way in, a Bedrock API key from a file.
	apiKey := "ABSK" + testenv.RandomID(t) + testenv.RandomID(t)
	out, msg = run(t, api, "", false, append([]string{"keys", "rotate", "--json", "--if-version", "1", "--field", "region=us-east-1",
		"--secret-file", "bedrockApiKey=" + writeSecretFile(t, "bedrock-api-key", apiKey)}, bedrock...)...)
	noSecret(t, "keys rotate (bedrock)", []string{out, msg}, apiKey, accessKeyID, secretKey)
	after = client.KeyMetadata{} // json would merge into the old maps
	if err := json.Unmarshal([]byte(out), &after); err != nil || after.Version != 2 || after.Fields["region"] != "us-east-1" ||
		after.Masked["bedrockApiKey"] == "" || after.Masked["secretAccessKey"] != "" || !strings.Contains(msg, "rotated workspace ws1/bedrock/prod: aws_bedrock") {
		t.Fatalf("keys rotate printed %q and said %q (%v)", out, msg, err)
	}

	// Vertex: the service-account key file, as Google writes it.
	sa, _ := cloudstub.ServiceAccountFile(t, "broker@kb-cli-project.iam.gserviceaccount.com", "kb-cli-project", "https://oauth2.googleapis.com/token")
	var saFields struct {
		PrivateKey   string `json:"private_key"`
		PrivateKeyID string `json:"private_key_id"`
	}
	if err := json.Unmarshal([]byte(sa), &saFields); err != nil || saFields.PrivateKey == "" {
		t.Fatalf("the service-account file: %v", err)
	}
	pemBody := strings.Split(saFields.PrivateKey, "\n")[3] // a line of the key itself
	out, msg = run(t, api, "", false, "keys", "rotate", "--json", "--workspace", ws, "--provider", "vertex",
		"--field", "project=kb-cli-project", "--field", "location=us-central1", "--secret-file", "serviceAccountJson="+writeSecretFile(t, "sa.json", sa))
	noSecret(t, "keys rotate (vertex)", []string{out, msg}, sa, pemBody, saFields.PrivateKey)
	meta = client.KeyMetadata{}
	if err := json.Unmarshal([]byte(out), &meta); err != nil || meta.Kind != "gcp_vertex" || meta.Fields["project"] != "kb-cli-project" ||
		meta.Masked["serviceAccountJson"] == "" || meta.Fields["serviceAccountJson"] != nil || !strings.Contains(msg, "created workspace ws1/vertex/default") {
		t.Fatalf("keys rotate (vertex) printed %q and said %q (%v)", out, msg, err)
	}

	// An api_key provider keeps reading its key from stdin, and takes it
	// from a file too.
	k := "sk-proj-cli-" + testenv.RandomID(t) + testenv.RandomID(t)
	out, msg = run(t, api, "", false, "keys", "rotate", "--json", "--workspace", ws, "--provider", "openai", "--secret-file", "apiKey="+writeSecretFile(t, "openai", k))
	noSecret(t, "keys rotate (openai)", []string{out, msg}, k)
	meta = client.KeyMetadata{}
	if err := json.Unmarshal([]byte(out), &meta); err != nil || meta.MaskedKey != k[:6]+"..."+k[len(k)-4:] {
		t.Fatalf("keys rotate --secret-file apiKey printed %q (%v)", out, err)
	}
}
