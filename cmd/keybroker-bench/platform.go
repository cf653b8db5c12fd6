package main

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/keybroker/keybroker/client"
)

// platformStore is the reference for scenario 3: how the BYOK feature that
// inspired keybroker resolves a key — one PostgreSQL row per key, encrypted
// with AES-256-GCM, read and decrypted on every call. It exists only in this
// benchmark.
type platformStore struct {
	pool *pgxpool.Pool
	gcm  cipher.AEAD
}

func newPlatformStore(ctx context.Context, pool *pgxpool.Pool, key []byte) (*platformStore, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	_, err = pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS bench_platform_keys (
		workspace text NOT NULL, provider text NOT NULL, nonce bytea NOT NULL, ciphertext bytea NOT NULL,
		PRIMARY KEY (workspace, provider))`)
	if err != nil {
		return nil, fmt.Errorf("create the platform table: %w", err)
	}
	return &platformStore{pool: pool, gcm: gcm}, nil
}

func (p *platformStore) put(ctx context.Context, ws, provider, apiKey string) error {
	nonce := make([]byte, p.gcm.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	ct := p.gcm.Seal(nil, nonce, []byte(apiKey), []byte(ws+"/"+provider))
	_, err := p.pool.Exec(ctx, `INSERT INTO bench_platform_keys VALUES ($1, $2, $3, $4)
		ON CONFLICT (workspace, provider) DO UPDATE SET nonce = EXCLUDED.nonce, ciphertext = EXCLUDED.ciphertext`,
		ws, provider, nonce, ct)
	return err
}

func (p *platformStore) get(ctx context.Context, ws, provider string) (string, error) {
	var nonce, ct []byte
	err := p.pool.QueryRow(ctx, `SELECT nonce, ciphertext FROM bench_platform_keys WHERE workspace = $1 AND provider = $2`,
		ws, provider).Scan(&nonce, &ct)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", errors.New("no key")
	}
	if err != nil {
		return "", err
	}
	pt, err := p.gcm.Open(nil, nonce, ct, []byte(ws+"/"+provider))
	if err != nil {
		return "", err
	}
	return string(pt), nil
}

// handler is scenario 3b: the platform-style lookup behind an HTTP hop like
// keybroker's — the same request and answer, a bearer-token check, a body
// limit — so that the same load generator drives both. It has no access log
// and no router, which favours the reference.
func (p *platformStore) handler(token string) http.Handler {
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			http.Error(w, `{"error":{"code":"unauthenticated"}}`, http.StatusUnauthorized)
			return
		}
		var req client.ResolveRequest
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil {
			http.Error(w, `{"error":{"code":"malformed_json"}}`, http.StatusBadRequest)
			return
		}
		key, err := p.get(r.Context(), req.Workspace, req.Provider)
		if err != nil {
			http.Error(w, `{"error":{"code":"unavailable"}}`, http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(client.ResolveResponse{APIKey: key, Source: "byok", IsBYOK: true, Version: 1})
	})
}

// floorHandler is scenario 0: net/http answering a constant of the resolve
// answer's size (size bytes, newline included) after reading the request —
// no lookup, no middleware. Its throughput is the most any HTTP service can
// reach on this machine with this load generator.
func floorHandler(size int) http.Handler {
	body := floorAnswer(size)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header()["Content-Type"] = []string{"application/json; charset=utf-8"}
		_, _ = w.Write(body)
	})
}

// floorAnswer is a resolve answer of size bytes: its resolution id is
// padded (or cut) to make up the length.
func floorAnswer(size int) []byte {
	r := client.ResolveResponse{APIKey: keyFor("openai"), Source: "byok", IsBYOK: true, Version: 1, Scope: "workspace", KeyID: "default", ResolutionID: "res_", TTLSeconds: 30}
	base, _ := json.Marshal(r)
	if pad := size - len(base) - 1; pad > 0 {
		r.ResolutionID += strings.Repeat("A", pad)
	}
	body, _ := json.Marshal(r)
	return append(body, '\n')
}

// providerHandler is scenario 10's provider: it checks what OpenAI would
// (a bearer key of OpenAI's shape, a JSON body naming a model) and answers
// a chat completion of a realistic size.
func providerHandler() http.Handler {
	answer := []byte(`{"id":"chatcmpl-bench","object":"chat.completion","created":1764633600,"model":"gpt-4o","choices":[{"index":0,` +
		`"message":{"role":"assistant","content":"Hello! How can I help you today?"},"finish_reason":"stop"}],` +
		`"usage":{"prompt_tokens":9,"completion_tokens":9,"total_tokens":18}}` + "\n")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || !strings.HasPrefix(key, "sk-") {
			http.Error(w, `{"error":{"message":"Incorrect API key provided"}}`, http.StatusUnauthorized)
			return
		}
		var body struct {
			Model string `json:"model"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&body); err != nil || body.Model == "" {
			http.Error(w, `{"error":{"message":"you must provide a model parameter"}}`, http.StatusBadRequest)
			return
		}
		w.Header()["Content-Type"] = []string{"application/json"}
		_, _ = w.Write(answer)
	})
}
