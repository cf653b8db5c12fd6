package vault_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/keybroker/keybroker/internal/fixtures/testenv"
	"github.com/keybroker/keybroker/internal/fixtures/vaulttest"
	"github.com/keybroker/keybroker/vault"
)

// fakeKubernetes answers TokenReview like a Kubernetes API server, for the
// JWTs it currently accepts.
type fakeKubernetes struct {
	mu       sync.Mutex
	accepted map[string]bool
	seen     []string
}

func (f *fakeKubernetes) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/apis/authentication.k8s.io/v1/tokenreviews" {
		http.NotFound(w, r)
		return
	}
	var review struct {
		Spec struct {
			Token string `json:"token"`
		} `json:"spec"`
	}
	if err := json.NewDecoder(r.Body).Decode(&review); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	f.seen = append(f.seen, review.Spec.Token)
	ok := f.accepted[review.Spec.Token]
	f.mu.Unlock()
	status := map[string]any{"authenticated": false}
	if ok {
		status = map[string]any{"authenticated": true, "user": map[string]any{
			"username": "system:serviceaccount:prod:keybroker", "uid": "3f5e-uid",
			"groups": []string{"system:serviceaccounts", "system:serviceaccounts:prod"},
		}}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "status": status,
	})
}

// serviceAccountJWT signs a service-account token as Kubernetes would.
func serviceAccountJWT(t *testing.T, key *rsa.PrivateKey, serial string) string {
	t.Helper()
	enc := base64.RawURLEncoding
	header, _ := json.Marshal(map[string]string{"alg": "RS256", "typ": "JWT", "kid": "test"})
	claims, _ := json.Marshal(map[string]any{
		"iss": "kubernetes/serviceaccount", "sub": "system:serviceaccount:prod:keybroker",
		"kubernetes.io/serviceaccount/namespace":            "prod",
		"kubernetes.io/serviceaccount/service-account.name": "keybroker",
		"kubernetes.io/serviceaccount/service-account.uid":  "3f5e-uid",
		"kubernetes.io/serviceaccount/secret.name":          "keybroker-token-" + serial,
	})
	signing := enc.EncodeToString(header) + "." + enc.EncodeToString(claims)
	sum := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return signing + "." + enc.EncodeToString(sig)
}

func TestKubernetesAuthRereadsTheJWTAtEveryLogin(t *testing.T) {
	ctx := context.Background()
	ids := vaulttest.Bootstrap(t, vaulttest.Options{})
	if _, err := ids.Root.KV(ids.Mount).Put(ctx, "hosted/providers/openai/keys/default", map[string]string{"api_key": "sk-hosted-kubernetes-000"}, 0); err != nil {
		t.Fatal(err)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	jwt1, jwt2 := serviceAccountJWT(t, key, "1"), serviceAccountJWT(t, key, "2")
	k8s := &fakeKubernetes{accepted: map[string]bool{jwt1: true}}
	api := httptest.NewTLSServer(k8s)
	t.Cleanup(api.Close)
	caPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: api.Certificate().Raw}))

	// The real Vault, with its kubernetes auth method pointed at the
	// stand-in API server.
	addr, rootToken := testenv.Vault(t)
	root := testenv.NewVaultClient(t, addr, rootToken)
	mount := "kubernetes-" + testenv.RandomID(t)
	if err := root.Sys().EnableAuthWithOptionsWithContext(ctx, mount, &vaultapi.EnableAuthOptions{Type: "kubernetes"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = root.Sys().DisableAuthWithContext(context.Background(), mount) })
	if _, err := root.Logical().WriteWithContext(ctx, "auth/"+mount+"/config", map[string]any{
		"kubernetes_host": api.URL, "kubernetes_ca_cert": caPEM, "disable_local_ca_jwt": true,
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := root.Logical().WriteWithContext(ctx, "auth/"+mount+"/role/keybroker-reader", map[string]any{
		"bound_service_account_names": "keybroker", "bound_service_account_namespaces": "prod",
		// Tokens that die every 3 s: each new login must read the JWT file.
		"token_policies": ids.ReaderRole, "token_no_default_policy": true, "token_ttl": "3s", "token_max_ttl": "3s",
	}); err != nil {
		t.Fatal(err)
	}

	jwtFile := filepath.Join(t.TempDir(), "token")
	writeFile(t, jwtFile, jwt1)
	method, err := vault.Kubernetes(vault.KubernetesConfig{MountPath: mount, Role: "keybroker-reader", JWTPath: jwtFile})
	if err != nil {
		t.Fatal(err)
	}
	c := vaulttest.Start(t, vault.Config{Address: addr, Auth: method})
	kv := c.KV(ids.Mount)
	if _, err := kv.Get(ctx, "hosted/providers/openai/keys/default"); err != nil {
		t.Fatalf("read after a kubernetes login: %v", err)
	}

	// Kubernetes rotates the projected token: the old JWT stops being
	// accepted and the file holds the new one. When the Vault token reaches
	// its max TTL, the next login must present the new JWT.
	k8s.mu.Lock()
	k8s.accepted = map[string]bool{jwt2: true}
	k8s.mu.Unlock()
	writeFile(t, jwtFile, jwt2)
	deadline := time.Now().Add(15 * time.Second)
	for {
		k8s.mu.Lock()
		rotated := k8s.seen[len(k8s.seen)-1] == jwt2
		k8s.mu.Unlock()
		if rotated {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no login presented the rotated JWT within 15s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := kv.Get(ctx, "hosted/providers/openai/keys/default"); err != nil {
		t.Fatalf("read after the JWT rotated: %v", err)
	}
	if _, loginErrors, _, _ := c.TokenStats(); loginErrors != 0 {
		t.Fatalf("%d failed logins: an old JWT was presented after the rotation", loginErrors)
	}
}
