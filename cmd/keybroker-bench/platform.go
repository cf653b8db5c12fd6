package main

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// platformStore is the reference for scenario 3: how the BYOK feature that
// inspired keybroker resolves a key — one PostgreSQL row per key, encrypted
// with AES-256-GCM, read and decrypted on every call. It exists only in this
// benchmark.
type platformStore struct {
	pool *pgxpool.Pool
	gcm  cipher.AEAD
}

func newPlatformStore(ctx context.Context, pool *pgxpool.Pool) (*platformStore, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
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
