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

// devHostedKeys are the fake hosted keys `keybroker dev` seeds, one per
// provider of the default registry: they satisfy each provider's format
// rule, so resolve serves them, and no provider accepts them.
var devHostedKeys = map[string]string{
	"openai":    "sk-FAKE-hosted-dev-key-not-real-openai",
	"anthropic": "sk-ant-FAKE-hosted-dev-key-not-real",
	"google":    "AIzaFAKE-hosted-dev-key-not-real-google",
	"xai":       "xai-FAKE-hosted-dev-key-not-real",
	"zai":       "FAKEhostedDevKeyNotRealZai.notreal0",
	"moonshot":  "sk-FAKE-hosted-dev-key-not-real-moonshot",
	"fireworks": "fw_FAKE-hosted-dev-key-not-real",
	"together":  "FAKE-hosted-dev-key-not-real-together-000",
	"baseten":   "FAKEbaseten.hostedDevKeyNotReal0",
	"mistral":   "FAKEhostedDevKeyNotRealMistral00",
	"exa":       "deadbeef-0000-4000-8000-00000000fa4e", // a UUID, as Exa's keys are
}

// DevHostedKeyID is the key id of the fake hosted keys `keybroker dev`
// seeds.
const DevHostedKeyID = "dev-fake"

// SeedDevHostedKeys adds a fake hosted key for every provider through the
// API's own path (as an operator would add real ones), so that a
// newcomer's workspace without a key of its own falls back to something.
// It returns the providers seeded.
func (a *App) SeedDevHostedKeys(ctx context.Context) ([]string, error) {
	var seeded []string
	actor := broker.Actor{Subject: "keybroker dev"}
	for _, p := range a.broker.Providers().All() {
		key, ok := devHostedKeys[p.ID]
		if !ok {
			continue
		}
		if _, err := a.broker.SetKey(ctx, broker.SetKeyRequest{Actor: actor, Ref: broker.HostedKey(p.ID, DevHostedKeyID), APIKey: key}); err != nil {
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
