package app

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/policies"
	"github.com/keybroker/keybroker/vault"
)

// BootstrapDevVault sets up a development Vault (at addr, with its root
// token) as production is set up — `keybroker vault bootstrap`: the KV v2
// mount, the policies, the AppRole roles — and issues one secret id per
// identity into a file in dir. It returns the writer's and the reader's
// AppRole identities, for a Config with VaultAuth approle.
func BootstrapDevVault(ctx context.Context, addr, rootToken, dir, kvMount string) (writer, reader Identity, err error) {
	op, err := vault.New(vault.Config{Address: addr, Token: rootToken})
	if err != nil {
		return writer, reader, err
	}
	res, err := op.Bootstrap(ctx, vault.BootstrapConfig{KVMount: kvMount})
	if err != nil {
		return writer, reader, err
	}
	identities := make(map[string]Identity, 2)
	for _, role := range []string{policies.Writer, policies.Reader} {
		id, err := op.IssueSecretID(ctx, "approle", role)
		if err != nil {
			return writer, reader, err
		}
		file := filepath.Join(dir, role+".secret-id")
		if err := os.WriteFile(file, []byte(id), 0o600); err != nil {
			return writer, reader, fmt.Errorf("write the secret id of %s: %w", role, err)
		}
		identities[role] = Identity{RoleName: role, RoleID: res.RoleIDs[role], SecretIDFile: file}
	}
	return identities[policies.Writer], identities[policies.Reader], nil
}

// DevHostedKeyID is the key id of the fake hosted keys `keybroker dev`
// seeds.
const DevHostedKeyID = "dev-fake"

// SeedDevHostedKeys adds a fake hosted key for every provider (its
// catalogue entry's Dev credential, which passes the provider's format
// rule, so resolve serves it, and which no provider accepts) through the
// API's own path (as an operator would add real ones), so that a
// newcomer's workspace without a key of its own falls back to something.
// It returns the providers seeded.
func (a *App) SeedDevHostedKeys(ctx context.Context) ([]string, error) {
	var seeded []string
	actor := broker.Actor{Subject: "keybroker dev"}
	for _, p := range a.broker.Providers().All() {
		if p.Dev.IsZero() {
			return nil, fmt.Errorf("seed the fake hosted key of %s: its catalogue entry has no dev credential", p.ID)
		}
		if _, err := a.broker.PutKey(ctx, broker.PutKeyRequest{Actor: actor, Ref: broker.HostedKey(p.ID, DevHostedKeyID), Credential: p.Dev}); err != nil {
			return nil, fmt.Errorf("seed the fake hosted key of %s: %w", p.ID, err)
		}
		if _, err := a.broker.UpdateKey(ctx, broker.UpdateKeyRequest{Actor: actor, Ref: broker.HostedKey(p.ID, DevHostedKeyID),
			Name: ptr("FAKE hosted key of keybroker dev (no provider accepts it)")}); err != nil {
			return nil, fmt.Errorf("name the fake hosted key of %s: %w", p.ID, err)
		}
		seeded = append(seeded, p.ID)
	}
	return seeded, nil
}

func ptr[T any](v T) *T { return &v }
