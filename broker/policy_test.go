package broker_test

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/internal/fixtures/testenv"
	"github.com/keybroker/keybroker/internal/fixtures/vaulttest"
	"github.com/keybroker/keybroker/policies"
	"github.com/keybroker/keybroker/providers"
	"github.com/keybroker/keybroker/vault"
)

// TestPoliciesGrantExactlyWhatTheCodeUses runs every operation of each
// identity on a Vault of its own with a file audit device, and holds each
// policy to the requests Vault logged for it: every capability a policy
// grants must have been used by some request, so no policy grants what no
// code path needs (a compromised writer cannot undelete a key a customer
// deleted, for one).
func TestPoliciesGrantExactlyWhatTheCodeUses(t *testing.T) {
	ctx := context.Background()
	vs := testenv.StartVault(t)
	root := vs.Client()
	auditLog := filepath.Join(t.TempDir(), "audit.log")
	if err := root.Sys().EnableAuditWithOptionsWithContext(ctx, "file", &vaultAuditOptions{Type: "file", Options: map[string]string{"file_path": auditLog}}); err != nil {
		t.Fatal(err)
	}
	// Short tokens: the identities renew them within the test.
	ids := vaulttest.Bootstrap(t, vaulttest.Options{Addr: vs.Addr, RootToken: vs.RootToken, Logger: testLogger,
		Tune: func(c *vault.BootstrapConfig) { c.TokenTTL, c.TokenMaxTTL = 3*time.Second, time.Hour }})
	st := openStore(t, testenv.DatabaseURL(t))
	b, err := broker.New(broker.Config{Reader: ids.Reader.KV(ids.Mount), Writer: ids.Writer.KV(ids.Mount), Store: st, Pools: st,
		Pepper: []byte("policy-test-pepper-0123"), Logger: testLogger, Settings: st})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Load(ctx); err != nil {
		t.Fatal(err)
	}
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	set := func(ws, p string) {
		_, err := b.PutKey(ctx, broker.PutKeyRequest{Actor: alice, Ref: broker.WorkspaceKey(ws, p, broker.DefaultKeyID), Credential: providers.APIKey(newKey(t, p))})
		must("set "+ws+"/"+p, err)
	}
	// Keys keybroker v1 left at the old layout (a workspace's, a hosted
	// one), for migrate-layout.
	rootKV := ids.Root.KV(ids.Mount)
	for _, ref := range []broker.KeyRef{broker.WorkspaceKey("wsold", "openai", broker.DefaultKeyID), broker.HostedKey("anthropic", broker.DefaultKeyID)} {
		_, err = rootKV.Put(ctx, ref.LegacyVaultPath(), map[string]string{"api_key": newKey(t, ref.Provider)}, 0)
		must("v1 key", err)
	}
	setRef := func(ref broker.KeyRef) {
		_, err := b.PutKey(ctx, broker.PutKeyRequest{Actor: alice, Ref: ref, Credential: providers.APIKey(newKey(t, ref.Provider))})
		must("set "+ref.String(), err)
	}
	resolve := func(ws string, want broker.ScopeKind) {
		r, err := b.Resolve(ctx, broker.ResolveRequest{Workspace: ws, Provider: "openai"})
		must("resolve "+ws, err)
		if r.ScopeKind != want {
			t.Fatalf("resolve %s: served from %s, want %s", ws, r.ScopeKind, want)
		}
	}
	orgKey, hostedKey := broker.OrganizationKey("acme", "openai", "shared"), broker.HostedKey("openai", broker.DefaultKeyID)

	// Every operation the admin and resolver modes perform, on each scope.
	set("ws1", "openai")                                                                // create
	set("ws1", "openai")                                                                // rotate
	_, err = b.Versions(ctx, broker.WorkspaceKey("ws1", "openai", broker.DefaultKeyID)) // history
	must("versions", err)
	_, err = b.Rollback(ctx, broker.RollbackRequest{Actor: alice, Ref: broker.WorkspaceKey("ws1", "openai", broker.DefaultKeyID), Version: 1})
	must("rollback", err)
	resolve("ws1", broker.ScopeWorkspace)
	setRef(orgKey)
	setRef(orgKey)
	_, err = b.PutSettings(ctx, broker.SettingsRequest{Actor: alice, Workspace: "ws9", Organization: ptr("acme"), MayLink: true})
	must("link", err)
	resolve("ws9", broker.ScopeOrganization)
	setRef(hostedKey)
	setRef(hostedKey)
	resolve("ws8", broker.ScopeHosted)
	_, err = b.Effective(ctx, "ws9")
	must("effective", err)
	_, err = b.Reconcile(ctx, 0) // lists every scope's pools
	must("reconcile", err)
	for _, ref := range []broker.KeyRef{broker.WorkspaceKey("ws1", "openai", broker.DefaultKeyID), orgKey, hostedKey} {
		must("delete", b.DeleteKey(ctx, broker.DeleteKeyRequest{Actor: alice, Ref: ref}))
		must("destroy", b.DeleteKey(ctx, broker.DeleteKeyRequest{Actor: alice, Ref: ref, Destroy: true}))
	}
	set("ws2", "openai")
	set("ws2", "anthropic")
	_, err = b.PurgeScope(ctx, alice, broker.WorkspaceScope("ws2"))
	must("purge", err)
	setRef(broker.OrganizationKey("acme", "anthropic", "other"))
	_, err = b.PurgeScope(ctx, alice, broker.OrganizationScope("acme"))
	must("purge organization", err)
	rep, err := b.MigrateLayout(ctx, alice)
	must("migrate layout", err)
	if len(rep.Moved) != 2 {
		t.Fatalf("migrate layout moved %v, want the two v1 keys", rep.Moved)
	}
	// The admin credentials, in every scope: written like keys (create,
	// update) and read by the key lifecycle with the writer identity (the
	// read adminCredential makes); the reader's policy denies them.
	writerKV := ids.Writer.KV(ids.Mount)
	for _, ap := range providers.DefaultRegistry().Admins() {
		for _, scope := range []broker.Scope{broker.WorkspaceScope("ws7"), broker.OrganizationScope("acme7"), broker.HostedScope()} {
			ref := scope.Key(ap.ID, "admin")
			for range 2 {
				_, err := b.PutKey(ctx, broker.PutKeyRequest{Actor: alice, Ref: ref, Credential: ap.Dev})
				must("set "+ref.String(), err)
			}
			_, err := writerKV.Get(ctx, ref.VaultPath())
			must("read the admin credential "+ref.String(), err)
			if _, err := ids.Reader.KV(ids.Mount).Get(ctx, ref.VaultPath()); err == nil {
				t.Fatalf("the reader read the admin credential %s", ref)
			}
		}
	}
	for _, c := range []*vault.Client{ids.Writer, ids.Reader} {
		must("readiness token check", c.CheckToken(ctx))
	}
	// Wait for both identities to renew their 3 s tokens.
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, _, wr, _ := ids.Writer.TokenStats()
		_, _, rr, _ := ids.Reader.TokenStats()
		if wr > 0 && rr > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no renewal within 20 s (writer %d, reader %d)", wr, rr)
		}
		time.Sleep(100 * time.Millisecond)
	}
	must("revoke writer", ids.Writer.Revoke(ctx))
	must("revoke reader", ids.Reader.Revoke(ctx))

	used := auditedRequests(t, auditLog)
	for _, p := range []struct{ name, file string }{{ids.WriterRole, policies.Writer}, {ids.ReaderRole, policies.Reader}} {
		hcl, err := policies.Render(p.file, ids.Mount)
		if err != nil {
			t.Fatal(err)
		}
		reqs := used[p.name]
		if len(reqs) == 0 {
			t.Fatalf("no audited request of %s: the check would prove nothing", p.name)
		}
		for _, g := range grants(hcl) {
			if g.capability == "deny" {
				continue // grants nothing: what it denies is checked above
			}
			if !slices.ContainsFunc(reqs, func(r auditedRequest) bool { return r.capability == g.capability && pathMatches(g.path, r.path) }) {
				t.Errorf("policy %s grants %q on %s, which no code path used; requests seen:\n%s", p.file, g.capability, g.path, describe(reqs))
			}
		}
	}
}

// vaultAuditOptions is api.EnableAuditOptions (aliased to keep the imports
// of this file short).
type vaultAuditOptions = vaultapi.EnableAuditOptions

type auditedRequest struct{ path, capability string }

// auditedRequests reads the file audit device's log: per policy, the
// requests made with a token carrying it.
func auditedRequests(t *testing.T, file string) map[string][]auditedRequest {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]auditedRequest{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line struct {
			Type string `json:"type"`
			Auth struct {
				Policies []string `json:"policies"`
			} `json:"auth"`
			Request struct {
				Path      string `json:"path"`
				Operation string `json:"operation"`
			} `json:"request"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil || line.Type != "request" {
			continue
		}
		for _, p := range line.Auth.Policies {
			out[p] = append(out[p], auditedRequest{path: line.Request.Path, capability: line.Request.Operation})
		}
	}
	return out
}

type grant struct{ path, capability string }

var stanza = regexp.MustCompile(`path "([^"]+)" \{\s*capabilities = \[([^\]]*)\]`)

// grants lists every (path, capability) a policy grants.
func grants(hcl string) []grant {
	var out []grant
	for _, m := range stanza.FindAllStringSubmatch(hcl, -1) {
		for _, c := range strings.Split(m[2], ",") {
			out = append(out, grant{path: m[1], capability: strings.Trim(strings.TrimSpace(c), `"`)})
		}
	}
	return out
}

// pathMatches is Vault's rule for the policies here: "+" is one segment.
func pathMatches(pattern, path string) bool {
	ps, xs := strings.Split(pattern, "/"), strings.Split(path, "/")
	if len(ps) != len(xs) {
		return false
	}
	for i := range ps {
		if ps[i] != "+" && ps[i] != xs[i] || ps[i] == "+" && xs[i] == "" {
			return false
		}
	}
	return true
}

func describe(reqs []auditedRequest) string {
	seen := map[string]bool{}
	var lines []string
	for _, r := range reqs {
		l := r.capability + " " + r.path
		if !seen[l] {
			seen[l] = true
			lines = append(lines, "  "+l)
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func ptr[T any](v T) *T { return &v }
