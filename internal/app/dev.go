package app

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

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
