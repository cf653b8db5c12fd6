package main

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/jackc/pgx/v5"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/client"
	"github.com/keybroker/keybroker/internal/fixtures/testenv"
)

// The credential proxy as deployed: an admin, a resolver and a proxy
// replica over the real Vault and PostgreSQL, and a stand-in for OpenAI
// that checks the key it gets and refuses the first one with a 429. A
// proxy token minted on the resolver replica works on the proxy replica;
// the refused key is retried with the next, and cools down on every
// replica; revoking the resolver token ends the proxy token at once.
func TestTheCredentialProxyAcrossReplicas(t *testing.T) {
	ctx := context.Background()
	first := "sk-proj-first-" + testenv.RandomID(t) + testenv.RandomID(t)
	second := "sk-proj-second-" + testenv.RandomID(t) + testenv.RandomID(t)
	var mu sync.Mutex
	var seen []string
	answered := 0 // calls the stand-in served (200): each is one record of a proxied call
	probed := 0   // the probes' listings of models it answered (for either key), apart
	openai := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if r.Method == http.MethodGet && r.URL.Path == "/v1/models" && (key == first || key == second) {
			mu.Lock()
			probed++
			mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"object":"list","data":[]}`)
			return
		}
		mu.Lock()
		seen = append(seen, key)
		if key == second {
			answered++
		}
		mu.Unlock()
		switch key {
		case first:
			w.Header().Set("Retry-After", "60")
			http.Error(w, `{"error":{"message":"rate limited"}}`, http.StatusTooManyRequests)
		case second:
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"id":"cmpl-1","choices":[]}`)
		default:
			http.Error(w, `{"error":{"message":"invalid key"}}`, http.StatusUnauthorized)
		}
	}))
	defer openai.Close()

	g := newApproleGround(t, nil)
	adminAddr, adminLogs := startServe(t, g.modeEnv(t, "admin"))
	resolverAddr, resolverLogs := startServe(t, g.modeEnv(t, "resolver"))
	proxyAddr, proxyLogs := startServe(t, g.modeEnv(t, "proxy", "KEYBROKER_PROVIDER_OPENAI_BASE_URL="+openai.URL))

	admin, _ := client.New(client.Config{Address: "http://" + adminAddr, Token: g.opToken})
	tok := g.mintResolver(t, "sandbox launcher")
	// The second key (priority 1) goes in before the first (priority 0): a
	// replica that serves the first has re-read the pool after both were
	// added, so it holds the second too.
	for _, k := range []struct {
		id, key string
		prio    int
	}{{"second", second, 1}, {"first", first, 0}} {
		if _, err := admin.AddKey(ctx, client.Workspace("ws1"), "openai", client.AddKeyRequest{KeyID: k.id, APIKey: k.key, Priority: &k.prio}); err != nil {
			t.Fatal(err)
		}
	}
	resolver, _ := client.New(client.Config{Address: "http://" + resolverAddr, Token: tok.Token})
	waitUntil(t, "the resolver replica serves the first key", 30*time.Second, func() bool {
		r, err := resolver.ResolveFor(ctx, client.ResolveRequest{Workspace: "ws1", Provider: "openai"})
		return err == nil && r.KeyID == "first"
	})
	// The proxy replica learns of the keys by NOTIFY too, on its own time:
	// wait until it serves the first key, probing with a token of its own
	// on the models listing (which the stand-in answers for either key and
	// counts apart from the calls below).
	probe, err := resolver.MintProxyToken(ctx, client.ProxyTokenRequest{Workspace: "ws1", Providers: []string{"openai"}, TTLSeconds: 300})
	if err != nil {
		t.Fatal(err)
	}
	probes := 0 // each is recorded: a 404 no_key until the replica has the pool, then a 200
	waitUntil(t, "the proxy replica serves the first key", 30*time.Second, func() bool {
		probes++
		req, _ := http.NewRequest(http.MethodGet, "http://"+proxyAddr+"/proxy/openai/v1/models", nil)
		req.Header.Set("Authorization", "Bearer "+probe.Token)
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK && resp.Header.Get("X-Keybroker-Key-Id") == "first"
	})

	// The sandbox's token, minted on the resolver replica.
	minted, err := resolver.MintProxyToken(ctx, client.ProxyTokenRequest{Workspace: "ws1", Providers: []string{"openai"}, TTLSeconds: 300})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(fmt.Sprint(minted), minted.Token) {
		t.Fatal("a ProxyToken prints its token")
	}

	// Used on the proxy replica: the first key's 429 is retried with the
	// second.
	resp, answer := proxied(t, "http://"+proxyAddr+"/proxy/openai/v1/chat/completions", "Bearer "+minted.Token, `{"model":"gpt-4o","messages":[]}`)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Keybroker-Key-Id") != "second" || resp.Header.Get("X-Keybroker-Byok") != "true" {
		t.Fatalf("through the proxy: %d, key %q: %s", resp.StatusCode, resp.Header.Get("X-Keybroker-Key-Id"), answer)
	}
	mu.Lock()
	if len(seen) != 2 || seen[0] != first || seen[1] != second {
		t.Fatalf("the provider saw %d calls; want the first key then the second", len(seen))
	}
	mu.Unlock()
	// The 429 answered the sandbox's call: the first key cools down for that
	// proxy token alone, and the workspace's other callers keep it.
	if r, err := resolver.ResolveFor(ctx, client.ResolveRequest{Workspace: "ws1", Provider: "openai"}); err != nil || r.KeyID != "first" {
		t.Fatalf("after a sandbox's 429 the workspace's resolver gets %+v (%v), want its first key", r, err)
	}

	// A revocation forged with NOTIFY (any database login may send one)
	// ends no proxy token: the replicas read the revocations themselves.
	forger, err := pgx.Connect(ctx, testenv.ResolverURL(t, g.dbURL))
	if err != nil {
		t.Fatal(err)
	}
	defer forger.Close(ctx)
	if _, err := forger.Exec(ctx, `SELECT pg_notify('keybroker_keys', $1)`, `{"pt":"`+minted.ID+`"}`); err != nil {
		t.Fatal(err)
	}

	// One proxy token ends by itself: revoked on the resolver replica, the
	// proxy replica refuses it at once (NOTIFY), while a sibling works.
	sibling, err := resolver.MintProxyToken(ctx, client.ProxyTokenRequest{Workspace: "ws1", Providers: []string{"openai"}, TTLSeconds: 300})
	if err != nil {
		t.Fatal(err)
	}
	if err := resolver.RevokeProxyToken(ctx, sibling.Token); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the revoked proxy token stops working on the proxy replica", 30*time.Second, func() bool {
		resp, _ := proxied(t, "http://"+proxyAddr+"/proxy/openai/v1/chat/completions", "Bearer "+sibling.Token, `{"model":"gpt-4o"}`)
		return resp.StatusCode == http.StatusUnauthorized
	})
	if resp, answer := proxied(t, "http://"+proxyAddr+"/proxy/openai/v1/chat/completions", "Bearer "+minted.Token, `{"model":"gpt-4o","messages":[]}`); resp.StatusCode != http.StatusOK {
		t.Fatalf("the first proxy token stopped working with its sibling: %d %s", resp.StatusCode, answer)
	}
	// A proxy replica started after the revocation knows it too.
	lateAddr, _ := startServe(t, g.modeEnv(t, "proxy", "KEYBROKER_PROVIDER_OPENAI_BASE_URL="+openai.URL))
	if resp, _ := proxied(t, "http://"+lateAddr+"/proxy/openai/v1/chat/completions", "Bearer "+sibling.Token, `{"model":"gpt-4o"}`); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a replica started after the revocation accepted the token: %d", resp.StatusCode)
	}

	// Revoking the resolver token that minted it ends the proxy token.
	if err := admin.RevokeToken(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the proxy token stops working", 30*time.Second, func() bool {
		resp, _ := proxied(t, "http://"+proxyAddr+"/proxy/openai/v1/chat/completions", "Bearer "+minted.Token, `{"model":"gpt-4o"}`)
		return resp.StatusCode == http.StatusUnauthorized
	})

	// The calls are recorded in PostgreSQL: the first, retried, and any
	// made while a revocation was on its way (milliseconds, the sibling's
	// among them); none by the first key, which never answered one. The
	// replicas record in batches (every second): wait until there is one
	// record per call the provider served, the listings below compare
	// pages.
	recorded := func(calls []broker.ProxyCall) bool {
		retried := 0
		for _, c := range calls {
			if c.Caller == probe.ID {
				if !(c.KeyID != "" && c.Status == http.StatusOK && c.BYOK) && !(c.KeyID == "" && c.Status == http.StatusNotFound) {
					return false
				}
				continue
			}
			if c.KeyID != "second" || c.Status != http.StatusOK || (c.Caller != minted.ID && c.Caller != sibling.ID) || !c.BYOK {
				return false
			}
			if c.Retried && c.Caller == minted.ID {
				retried++
			}
		}
		return retried == 1
	}
	mu.Lock()
	served := answered + probes // one record per call the provider answered, and per probe
	if probed == 0 || probed > probes {
		t.Fatalf("the stand-in answered %d of %d probes", probed, probes)
	}
	mu.Unlock()
	var calls []broker.ProxyCall
	waitUntil(t, "a record of every call the provider served", 60*time.Second, func() bool {
		calls, err = g.st.QueryProxyCalls(ctx, broker.ProxyCallQuery{Workspace: "ws1", Limit: 100})
		return err == nil && len(calls) >= served
	})
	if len(calls) != served || !recorded(calls) {
		t.Fatalf("the proxied calls are not recorded as they were (%d calls made and probes): %+v\n%s", served, calls, proxyLogs.String())
	}
	for _, secret := range []string{first, second, minted.Token, tok.Token} {
		for name, logs := range map[string]*testenv.SyncBuffer{"admin": adminLogs, "resolver": resolverLogs, "proxy": proxyLogs} {
			if strings.Contains(logs.String(), secret) {
				t.Errorf("a secret is in the %s replica's log", name)
			}
		}
	}
	testenv.AssertDumpLacks(t, g.dbURL, []string{first, second, minted.Token, tok.Token})

	// The platform reads them back over the admin API; retention is the
	// owner's (the runtime role may only add them).
	page, err := admin.ProxyCalls(ctx, "ws1", client.ProxyCallQuery{Provider: "openai"})
	if err != nil || len(page.Calls) == 0 || page.Calls[0].KeyID != "second" || page.Calls[0].Caller != minted.ID {
		t.Fatalf("the admin API lists %+v, %v", page, err)
	}
	prune := func(dbURL, age string) (string, error) {
		cmd := keybroker("proxy-calls", "prune", "--older-than", age)
		cmd.Env = append(cmd.Env, "DATABASE_URL="+dbURL)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := prune(testenv.RuntimeURL(t, g.dbURL), "1d"); err == nil || !strings.Contains(out, "only the owner role may") {
		t.Fatalf("the runtime role pruned proxied calls (%v): %s", err, out)
	}
	if out, err := prune(g.dbURL, "1h"); err == nil || !strings.Contains(out, "at least one day") {
		t.Fatalf("a prune of the last hour was taken (%v): %s", err, out)
	}
	if out, err := prune(g.dbURL, "1d"); err != nil || !strings.Contains(out, "deleted 0 proxied calls older than 1d") {
		t.Fatalf("the owner's prune (%v): %s", err, out)
	}
	// Every call listed before is still there (a call still being
	// recorded by a replica may have joined them).
	after, err := admin.ProxyCalls(ctx, "ws1", client.ProxyCallQuery{})
	if err != nil {
		t.Fatal(err)
	}
	kept := map[string]bool{}
	for _, c := range after.Calls {
		kept[c.ID] = true
	}
	for _, c := range page.Calls {
		if !kept[c.ID] {
			t.Fatalf("the prune took recent call %s: %+v after", c.ID, after)
		}
	}

	// The CLI's billing export: every page, one JSON object per call.
	list := func(token string, args ...string) (string, error) {
		cmd := keybroker(append([]string{"proxy-calls", "list"}, args...)...)
		cmd.Env = append(cmd.Env, "KEYBROKER_ADDR=http://"+adminAddr, "KEYBROKER_TOKEN="+token)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := list(g.opToken, "--all", "--json", "--limit", "1", "--since", "1h", "--provider", "openai")
	if err != nil {
		t.Fatalf("proxy-calls list: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != len(page.Calls) {
		t.Fatalf("the export printed %d calls in pages of 1, the API lists %d:\n%s", len(lines), len(page.Calls), out)
	}
	for _, line := range lines {
		var pc client.ProxyCall
		if err := json.Unmarshal([]byte(line), &pc); err != nil || pc.Workspace != "ws1" || (pc.KeyID != "second" && pc.Caller != probe.ID) {
			t.Fatalf("an exported line: %s (%v)", line, err)
		}
	}
	if out, err := list(g.opToken, "--workspace", "ws1"); err != nil || !strings.Contains(out, "workspace/second") || !strings.Contains(out, minted.ID) {
		t.Fatalf("the table (%v):\n%s", err, out)
	}
	if out, err := list(g.opToken, "--since", "yesterday"); err == nil || !strings.Contains(out, "RFC 3339") {
		t.Fatalf("a bad --since was taken (%v): %s", err, out)
	}
	if out, err := list(tok.Token); err == nil || strings.Contains(out, tok.Token) || !strings.Contains(out, "401") && !strings.Contains(out, "unauthenticated") {
		t.Fatalf("a revoked token listed the calls (%v): %s", err, out)
	}
}

func proxied(t *testing.T, url, auth, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", auth)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(fmt.Errorf("POST %s: %w", url, err))
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// A replica told to stop (SIGTERM, as Kubernetes does in a rolling update)
// first fails its readiness while it goes on serving (the shutdown delay,
// while load balancers take it out), then lets a proxied stream in flight
// finish, every event of it, while it ends its watch streams at once
// (their clients reconnect elsewhere), so that they do not hold the
// shutdown for the whole grace (here ten minutes).
func TestAShutdownLetsAProxiedStreamFinishAndEndsWatchStreams(t *testing.T) {
	ctx := context.Background()
	const events = 6
	// The stand-in sends the first event, then the rest only once the test
	// releases it: when the shutdown proper has begun, so that the stream is
	// in flight through it whatever the machine's speed.
	firstSent, release := make(chan struct{}), make(chan struct{})
	var releaseOnce sync.Once
	releaseStream := func() { releaseOnce.Do(func() { close(release) }) }
	openai := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range events {
			fmt.Fprintf(w, "data: {\"chunk\":%d}\n\n", i)
			w.(http.Flusher).Flush()
			if i == 0 {
				close(firstSent)
				select {
				case <-release:
				case <-r.Context().Done():
					return
				}
			}
		}
		_, _ = io.WriteString(w, "data: [DONE]\n\n")
	}))
	defer openai.Close()
	defer releaseStream()

	g := newApproleGround(t, nil)
	addr, logs, proc := startServeProcess(t, g.modeEnv(t, "all", "KEYBROKER_SHUTDOWN_GRACE=10m", "KEYBROKER_SHUTDOWN_DELAY=8s",
		"KEYBROKER_PROVIDER_OPENAI_BASE_URL="+openai.URL))
	admin, _ := client.New(client.Config{Address: "http://" + addr, Token: g.opToken})
	if _, _, err := admin.PutKey(ctx, client.KeyRef{Scope: client.Workspace("ws1"), Provider: "openai", KeyID: "default"}, "sk-proj-stop-"+testenv.RandomID(t)+testenv.RandomID(t), 0); err != nil {
		t.Fatal(err)
	}
	resolver, _ := client.New(client.Config{Address: "http://" + addr, Token: g.resolverToken})
	stream, err := resolver.Watch(ctx)
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	defer stream.Close()
	if ev, err := stream.Next(); err != nil || ev.Type != "hello" {
		t.Fatalf("the watch stream opened with %+v, %v", ev, err)
	}
	watchEnded := make(chan error, 1)
	go func() {
		for {
			if _, err := stream.Next(); err != nil {
				watchEnded <- err
				return
			}
		}
	}()

	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/proxy/openai/v1/chat/completions", strings.NewReader(`{"model":"gpt-4o","stream":true}`))
	req.Header.Set("Authorization", "Bearer "+g.resolverToken)
	req.Header.Set("X-Keybroker-Workspace", "ws1")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("proxied stream: %d %s", resp.StatusCode, b)
	}
	<-firstSent
	exited := make(chan struct{})
	if err := proc.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = proc.Wait(); close(exited) }()
	waitUntil(t, "readiness fails once the stop begins", 8*time.Second, func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(string(b), "not ready: serving unavailable")
	})
	if who, err := resolver.WhoAmI(ctx); err != nil || who.Role != "resolver" {
		t.Fatalf("the replica stopped serving during its shutdown delay: %+v %v", who, err)
	}

	// The shutdown proper ends the watch streams at once; the proxied
	// stream, still in flight, then goes on to its end.
	select {
	case <-watchEnded:
	case <-time.After(30 * time.Second):
		t.Fatal("the watch stream was not ended by the shutdown")
	}
	releaseStream()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("the stream was cut by the shutdown after %q: %v", body, err)
	}
	if got := strings.Count(string(body), "data: {\"chunk\":"); got != events || !strings.HasSuffix(string(body), "data: [DONE]\n\n") {
		t.Fatalf("the stream lost events at shutdown: %d of %d chunks:\n%s", got, events, body)
	}
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("the replica still runs 30 s after the stream ended (its grace is 10 minutes: something holds it)\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), `"grace":"10m0s"`) {
		t.Fatalf("the shutdown did not use the grace set:\n%s", logs.String())
	}
}
