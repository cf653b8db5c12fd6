package handlers_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/client"
	"github.com/keybroker/keybroker/handlers"
	"github.com/keybroker/keybroker/internal/fixtures/cloudstub"
	"github.com/keybroker/keybroker/providers"
)

// randomHex is n random bytes in hexadecimal.
func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// awsKeyPair is a fresh access key id (AKIA and 16 capitals and digits)
// and secret access key (40 base64 characters), both remembered for the
// leak checks.
func awsKeyPair(t *testing.T) (string, string) {
	t.Helper()
	b := make([]byte, 30)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return remember("AKIA" + strings.ToUpper(randomHex(t, 8))), remember(base64.StdEncoding.EncodeToString(b))
}

func uuidOf(h string) string {
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// screenshotOf saves the element sel as name.png (screenshotDir).
func screenshotOf(t *testing.T, ctx context.Context, sel, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.Screenshot(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(screenshotDir(t), name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// consoleLog records what the page writes to the browser's console.
type consoleLog struct {
	mu    sync.Mutex
	lines []string
}

func recordConsole(t *testing.T, ctx context.Context) *consoleLog {
	t.Helper()
	c := &consoleLog{}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			c.mu.Lock()
			c.lines = append(c.lines, m.String())
			c.mu.Unlock()
		}
	}()
	return c
}

func (c *consoleLog) holds(s string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range c.lines {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}

// The forms of the cloud credential kinds, built from each provider's
// schema, end to end in Chromium against a real keybroker, Vault and
// PostgreSQL: a Bedrock key pair (the way chosen by keyboard too), a
// field-named 422 for a bad region that changes nothing, a Vertex
// service-account file picked from disk and read in the browser, an Azure
// key with Entra client credentials and two deployments (a row added and
// one removed), and a replacement of one secret field. After each, no
// secret value is in the page, the browser's console or the server's log,
// and the key's masks show.
func TestAdminPageCloudCredentialFormsInARealBrowser(t *testing.T) {
	a := newAPI(t, handlers.ModeAll)
	ctx0 := context.Background()
	ctx := browser(t)
	console := recordConsole(t, ctx)
	var secrets []string
	noLeak := func(step string) {
		t.Helper()
		l := logs.String()
		for _, s := range secrets {
			switch {
			case pageHolds(t, ctx, s):
				t.Fatalf("%s: a secret value (%s...) is in the DOM or sessionStorage", step, s[:6])
			case console.holds(s):
				t.Fatalf("%s: a secret value (%s...) is in the browser's console", step, s[:6])
			case strings.Contains(l, s):
				t.Fatalf("%s: a secret value (%s...) is in the server's log", step, s[:6])
			}
		}
	}
	// The console is recorded: a line the page writes is seen.
	eval[bool](t, ctx, `console.log('console-probe-'+'ok'), true`)
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("waited 20 s for %s", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitFor("the console probe", func() bool { return console.holds("console-probe-ok") })

	unfold := func(provider string) { t.Helper(); openAddForm(t, ctx, provider) }
	submit := func(provider string) chromedp.Action[chromedp.Void] {
		return chromedp.Click(chromedp.CSS(`form[data-form="` + provider + `"] button[type=submit]`))
	}
	// maskShows waits until the key card shows the field's mask.
	maskShows := func(key, field, mask string) {
		t.Helper()
		q, _ := json.Marshal(mask)
		waitTrue(t, ctx, key+"'s "+field+" mask "+mask,
			`(document.querySelector('[data-mask="`+key+`/`+field+`"]') || {}).textContent === `+string(q))
	}
	getKey := func(provider, id string) broker.KeyMeta {
		t.Helper()
		m, err := a.ground.keys.GetKey(ctx0, broker.WorkspaceKey("ws1", provider, id))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}

	signIn(t, ctx, a, "admin", "workspace-section")
	// Bedrock: the form offers the two ways as a radio group; the arrow
	// keys switch between them and only the chosen way's fields show.
	unfold("bedrock")
	waitText(t, ctx, "#panel-title", "Amazon Bedrock")
	visible := func(id string) bool {
		return eval[bool](t, ctx, `(() => { const e = document.getElementById('`+id+`'); return !!e && e.offsetParent !== null && !e.disabled; })()`)
	}
	if !visible("add-bedrock-accessKeyId") || !visible("add-bedrock-secretAccessKey") || visible("add-bedrock-bedrockApiKey") {
		t.Fatal("the Bedrock form does not start with the key pair's fields alone")
	}
	if typ := eval[string](t, ctx, `document.getElementById('add-bedrock-secretAccessKey').type + ' ' + document.getElementById('add-bedrock-secretAccessKey').autocomplete + ' ' + document.getElementById('add-bedrock-region').type`); typ != "password off text" {
		t.Fatalf("secret field type, autocomplete and public field type: %q", typ)
	}
	waitText(t, ctx, `label[for="add-bedrock-region"]`, "Region (required)")
	waitText(t, ctx, `label[for="add-bedrock-roleArn"]`, "Role ARN (optional)")
	run(t, ctx, "choose the Bedrock API key with the arrow key",
		chromedp.Focus(chromedp.ID("add-bedrock-way-keyPair")), chromedp.KeyEvent(kb.ArrowDown))
	if !visible("add-bedrock-bedrockApiKey") || visible("add-bedrock-accessKeyId") || visible("add-bedrock-roleArn") {
		t.Fatal("choosing the Bedrock API key does not show its field alone")
	}
	run(t, ctx, "back to the key pair", chromedp.KeyEvent(kb.ArrowUp))
	if !visible("add-bedrock-accessKeyId") || visible("add-bedrock-bedrockApiKey") {
		t.Fatal("choosing the key pair again does not show its fields alone")
	}

	// A key pair.
	keyID, secretKey := awsKeyPair(t)
	secrets = append(secrets, keyID, secretKey)
	run(t, ctx, "add a Bedrock key pair",
		chromedp.SetValue(chromedp.ID("add-bedrock-region"), "eu-west-1"),
		chromedp.SetValue(chromedp.ID("add-bedrock-accessKeyId"), keyID),
		chromedp.SetValue(chromedp.ID("add-bedrock-secretAccessKey"), secretKey),
		submit("bedrock"))
	answerConfirm(t, ctx, "Amazon Bedrock calls will use the new key from now on", true)
	waitToast(t, ctx, "Added Amazon Bedrock key 'default'")
	maskShows("bedrock/default", "accessKeyId", providers.MaskKey(keyID))
	maskShows("bedrock/default", "secretAccessKey", providers.MaskKey(secretKey))
	waitText(t, ctx, `[data-field="bedrock/default/region"]`, "eu-west-1")
	if m := getKey("bedrock", "default"); m.Kind != providers.KindAWSBedrock || m.Fields["region"] != "eu-west-1" ||
		m.Masked["secretAccessKey"] != providers.MaskKey(secretKey) || len(m.Masked) != 2 {
		t.Fatalf("the Bedrock key written: kind %s fields %v masked %v", m.Kind, m.Fields, m.Masked)
	}
	noLeak("a Bedrock key pair added")

	// A region that is no AWS region: the server's 422 next to the region
	// field (tied to it, the focus on it), the secrets cleared, nothing
	// written.
	unfold("bedrock")
	keyID2, secretKey2 := awsKeyPair(t)
	secrets = append(secrets, keyID2, secretKey2)
	run(t, ctx, "add a Bedrock key with a bad region",
		chromedp.SetValue(chromedp.ID("add-bedrock-region"), "moon-base"),
		chromedp.SetValue(chromedp.ID("add-bedrock-accessKeyId"), keyID2),
		chromedp.SetValue(chromedp.ID("add-bedrock-secretAccessKey"), secretKey2),
		chromedp.SetValue(chromedp.ID("newname-bedrock"), "Second"),
		chromedp.SetValue(chromedp.ID("priority-bedrock"), "200"),
		submit("bedrock"))
	waitText(t, ctx, "#add-bedrock-region-err", "region is not an AWS region")
	waitToast(t, ctx, "region is not an AWS region")
	noConfirmOpen(t, ctx, "adding a backup key")
	if got := eval[string](t, ctx, `[document.activeElement.id, document.getElementById('add-bedrock-region').getAttribute('aria-invalid'),
		document.getElementById('add-bedrock-region').getAttribute('aria-describedby'), document.getElementById('add-bedrock-region').value,
		...['accessKeyId', 'secretAccessKey'].map(n => document.getElementById('add-bedrock-' + n).value === '' ? 'empty' : 'filled'),
		document.getElementById('err-bedrock').textContent].join('|')`); got != "add-bedrock-region|true|add-bedrock-region-hint add-bedrock-region-err|moon-base|empty|empty|" {
		// (the secret fields said as empty or filled: a failure prints no secret)
		t.Fatalf("after the refused region (focus|aria-invalid|described by|region|key id|secret|form error): %q", got)
	}
	if r := a.call("admin", "GET", "/v1/workspaces/ws1/providers/bedrock/keys", nil); r.status != 200 {
		t.Fatalf("list: %d %s", r.status, r.body)
	} else {
		var l client.KeyList
		r.decode(t, &l)
		if len(l.Keys) != 1 || l.Keys[0].Version != 1 {
			t.Fatalf("a refused write changed the pool: %+v", l.Keys)
		}
	}
	noLeak("a refused Bedrock key")

	// A cloud form with a field's error: no serious or critical axe-core
	// violation (the Vertex and Azure forms are checked as they open).
	axeCheck(t, ctx, "the Bedrock form with a field's error")
	screenshotOf(t, ctx, "#panel", "cloud-forms")
	// On a 390 px phone nothing of the forms scrolls sideways.
	run(t, ctx, "a phone's viewport", chromedp.EmulateViewport(390, 844))
	if w := eval[int](t, ctx, `document.documentElement.scrollWidth`); w > 390 {
		t.Fatalf("at 390 px the cloud forms are %d px wide: they scroll sideways", w)
	}
	run(t, ctx, "back to a desktop viewport", chromedp.EmulateViewport(1200, 900))

	// Vertex: the service-account file picked from disk, read in the
	// browser; the page shows the account it names, never the file.
	email := "kb-test@my-project-123.iam.gserviceaccount.com"
	sa, _ := cloudstub.ServiceAccountFile(t, email, "my-project-123", "https://oauth2.googleapis.com/token")
	var saFields struct {
		PrivateKey string `json:"private_key"`
	}
	if err := json.Unmarshal([]byte(sa), &saFields); err != nil {
		t.Fatal(err)
	}
	pemLines := strings.Split(saFields.PrivateKey, "\n")
	secrets = append(secrets, remember(sa), remember(pemLines[1]), remember(pemLines[len(pemLines)-3]))
	saPath := filepath.Join(t.TempDir(), "sa.json")
	if err := os.WriteFile(saPath, []byte(sa), 0o600); err != nil {
		t.Fatal(err)
	}
	// A file that is no service-account key file is refused in the page.
	notSA := filepath.Join(t.TempDir(), "notes.json")
	if err := os.WriteFile(notSA, []byte(`{"type": "authorized_user"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	unfold("vertex")
	axeCheck(t, ctx, "the Vertex form")
	run(t, ctx, "pick a file that is no key file",
		chromedp.SetUploadFiles(chromedp.ID("add-vertex-serviceAccountJson-file"), []string{notSA}))
	waitText(t, ctx, "#add-vertex-serviceAccountJson-err", "notes.json is not a service-account key file")
	run(t, ctx, "pick the service-account file",
		chromedp.SetValue(chromedp.ID("add-vertex-project"), "my-project-123"),
		chromedp.SetValue(chromedp.ID("add-vertex-location"), "us-central1"),
		chromedp.SetUploadFiles(chromedp.ID("add-vertex-serviceAccountJson-file"), []string{saPath}))
	waitText(t, ctx, "#add-vertex-serviceAccountJson-picked", "Read sa.json: service account "+email)
	noLeak("a service-account file picked")
	run(t, ctx, "add the Vertex key", submit("vertex"))
	answerConfirm(t, ctx, "Google Vertex AI calls will use the new key from now on", true)
	waitToast(t, ctx, "Added Google Vertex AI key 'default'")
	// A service-account file's preview is its account and key id.
	vertex, _ := providers.DefaultRegistry().Lookup("vertex")
	saMask := vertex.Credential.Masks(providers.New(providers.KindGCPVertex, map[string]string{providers.FieldServiceAccountJSON: sa}))[providers.FieldServiceAccountJSON]
	if !strings.HasPrefix(saMask, email+" (key ") {
		t.Fatalf("the service-account file's preview is %q", saMask)
	}
	maskShows("vertex/default", "serviceAccountJson", saMask)
	waitText(t, ctx, `[data-field="vertex/default/project"]`, "my-project-123")
	if m := getKey("vertex", "default"); m.Masked["serviceAccountJson"] != saMask || m.Fields["location"] != "us-central1" {
		t.Fatalf("the Vertex key written: fields %v masked %v", m.Fields, m.Masked)
	}
	if v, err := a.kv.Get(ctx0, broker.WorkspaceKey("ws1", "vertex", "default").VaultPath()); err != nil || v.Data["service_account_json"] != sa {
		t.Fatalf("Vault does not hold the file as picked: %v", err)
	}
	noLeak("a Vertex key added")

	// Azure: Entra client credentials and two deployments (a third row
	// added, then removed).
	tenant, clientID := uuidOf(randomHex(t, 16)), uuidOf(randomHex(t, 16))
	clientSecret := remember("kb~" + randomHex(t, 20))
	secrets = append(secrets, clientSecret)
	unfold("azure-openai")
	run(t, ctx, "fill the Azure form",
		chromedp.SetValue(chromedp.ID("add-azure-openai-endpoint"), "https://my-resource.openai.azure.com"),
		chromedp.SetValue(chromedp.ID("add-azure-openai-apiVersion"), "2024-10-21"),
		chromedp.SetValue(chromedp.ID("add-azure-openai-deployments-k1"), "gpt-4o"),
		chromedp.SetValue(chromedp.ID("add-azure-openai-deployments-v1"), "my-gpt-4o"),
		chromedp.Click(chromedp.CSS(`button[data-add-row="add-azure-openai-deployments"]`)),
		chromedp.SetValue(chromedp.ID("add-azure-openai-deployments-k2"), "gpt-4o-mini"),
		chromedp.SetValue(chromedp.ID("add-azure-openai-deployments-v2"), "my-mini"),
		chromedp.Click(chromedp.CSS(`button[data-add-row="add-azure-openai-deployments"]`)),
		chromedp.SetValue(chromedp.ID("add-azure-openai-deployments-k3"), "o1"),
		chromedp.Click(chromedp.CSS(`button[aria-label="Remove row 3 of Deployments"]`)),
		chromedp.Click(chromedp.ID("add-azure-openai-way-entra")),
		chromedp.SetValue(chromedp.ID("add-azure-openai-tenantId"), tenant),
		chromedp.SetValue(chromedp.ID("add-azure-openai-clientId"), clientID),
		chromedp.SetValue(chromedp.ID("add-azure-openai-clientSecret"), clientSecret))
	if visible("add-azure-openai-apiKey") || eval[int](t, ctx, `document.querySelectorAll('[data-map="add-azure-openai-deployments"] .map-row').length`) != 2 {
		t.Fatal("the Azure form shows the API key beside the Entra credentials, or the removed row")
	}
	axeCheck(t, ctx, "the Azure form with Entra credentials and two deployments")
	run(t, ctx, "add the Azure key", submit("azure-openai"))
	answerConfirm(t, ctx, "Azure OpenAI calls will use the new key from now on", true)
	waitToast(t, ctx, "Added Azure OpenAI key 'default'")
	maskShows("azure-openai/default", "clientSecret", providers.MaskKey(clientSecret))
	waitText(t, ctx, `[data-field="azure-openai/default/deployments"]`, "gpt-4o → my-gpt-4o, gpt-4o-mini → my-mini")
	waitText(t, ctx, `[data-field="azure-openai/default/tenantId"]`, tenant)
	if m := getKey("azure-openai", "default"); len(m.Masked) != 1 || m.Masked["clientSecret"] == "" {
		t.Fatalf("the Azure key's masks: %v", m.Masked)
	} else if d, ok := m.Fields["deployments"].(map[string]any); !ok || len(d) != 2 || d["gpt-4o-mini"] != "my-mini" {
		t.Fatalf("the Azure key's deployments: %v", m.Fields["deployments"])
	}
	noLeak("an Azure key added")

	// Replace one secret field of the Bedrock key: the public fields come
	// filled in, the secret ones empty; the access key id typed again, a
	// new secret access key.
	_, newSecret := awsKeyPair(t)
	secrets = append(secrets, newSecret)
	keyMenu(t, ctx, keyRow("bedrock/default"), "data-replace")
	run(t, ctx, "open the replace form", chromedp.WaitVisible(chromedp.ID("rotate-bedrock-default-secretAccessKey")))
	if got := eval[string](t, ctx, `['region', 'accessKeyId', 'secretAccessKey'].map((n, i) => { const v = document.getElementById('rotate-bedrock-default-' + n).value; return i && v ? 'filled' : v; }).join('|')`); got != "eu-west-1||" {
		t.Fatalf("the replace form starts with %q (region|key id|secret): the public fields filled in, no secret", got)
	}
	// A secret that breaks its rule: the error under that field, the key
	// unchanged.
	short := remember("short/secret/value")
	secrets = append(secrets, short)
	run(t, ctx, "replace with a short secret access key",
		chromedp.SetValue(chromedp.ID("rotate-bedrock-default-accessKeyId"), keyID),
		chromedp.SetValue(chromedp.ID("rotate-bedrock-default-secretAccessKey"), short),
		chromedp.Click(chromedp.CSS(`form[data-rotate="bedrock/default"] button[type=submit]`)))
	answerConfirm(t, ctx, "use the new value at once", true)
	waitText(t, ctx, "#rotate-bedrock-default-secretAccessKey-err", "secretAccessKey is 18 characters long; expected 40 to 40")
	if m := getKey("bedrock", "default"); m.Version != 1 {
		t.Fatalf("a refused replacement changed the key: version %d", m.Version)
	}
	noLeak("a refused replacement")
	run(t, ctx, "replace the secret access key",
		chromedp.SetValue(chromedp.ID("rotate-bedrock-default-accessKeyId"), keyID),
		chromedp.SetValue(chromedp.ID("rotate-bedrock-default-secretAccessKey"), newSecret),
		chromedp.Click(chromedp.CSS(`form[data-rotate="bedrock/default"] button[type=submit]`)))
	answerConfirm(t, ctx, "use the new value at once", true)
	waitToast(t, ctx, "Replaced Amazon Bedrock key 'default': now version 2")
	maskShows("bedrock/default", "secretAccessKey", providers.MaskKey(newSecret))
	maskShows("bedrock/default", "accessKeyId", providers.MaskKey(keyID))
	if m := getKey("bedrock", "default"); m.Version != 2 || m.Masked["secretAccessKey"] != providers.MaskKey(newSecret) || m.Fields["region"] != "eu-west-1" {
		t.Fatalf("after the replacement: version %d fields %v masked %v", m.Version, m.Fields, m.Masked)
	}
	noLeak("a secret field replaced")

	// A reader sees the fields and masks, and no form.
	signIn(t, ctx, a, "reader", "workspace-section")
	maskShows("azure-openai/default", "clientSecret", providers.MaskKey(clientSecret))
	waitText(t, ctx, `[data-field="azure-openai/default/endpoint"]`, "https://my-resource.openai.azure.com")
	if n := eval[int](t, ctx, `document.querySelectorAll('form[data-form], form[data-rotate], input[type=file]').length`); n != 0 {
		t.Fatalf("a reader is offered %d credential forms", n)
	}
	noLeak("a reader's view")
}
