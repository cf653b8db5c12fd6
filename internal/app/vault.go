package app

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/hashicorp/vault/api"

	"github.com/keybroker/keybroker/vault"
)

// authMethod turns the --vault-auth choice into how identity id logs in.
// It returns nil for the static token (which is not an auth method: it is
// neither renewed nor replaced).
func (c Config) authMethod(id Identity, logger *slog.Logger) (api.AuthMethod, error) {
	switch c.VaultAuth {
	case VaultAuthToken:
		if c.VaultToken == "" {
			return nil, errors.New("--vault-auth=token needs VAULT_TOKEN")
		}
		return nil, nil
	case VaultAuthAppRole:
		return vault.AppRole(vault.AppRoleConfig{MountPath: c.AppRoleMount, RoleID: id.RoleID, RoleName: id.RoleName,
			SecretIDFile: id.SecretIDFile, Wrapped: c.AppRoleWrapped, Logger: logger})
	case VaultAuthKubernetes:
		return vault.Kubernetes(vault.KubernetesConfig{MountPath: c.KubernetesMount, Role: id.KubernetesRole, JWTPath: id.KubernetesJWT})
	case VaultAuthTokenFile:
		return vault.TokenFile(id.TokenFile)
	}
	return nil, fmt.Errorf("unknown --vault-auth %q (approle, kubernetes, token-file, token)", c.VaultAuth)
}

// vaultClient builds the Vault client of one identity ("writer" or
// "reader"); metrics may be nil.
func (c Config) vaultClient(who string, id Identity, logger *slog.Logger, metrics *vault.Metrics) (*vault.Client, error) {
	auth, err := c.authMethod(id, logger)
	if err != nil {
		return nil, fmt.Errorf("vault %s identity: %w", who, err)
	}
	vc := vault.Config{Address: c.VaultAddr, Namespace: c.VaultNamespace, AuthNamespace: c.AuthNamespace,
		CACert: c.VaultCACert, Logger: logger.With("identity", who), Metrics: metrics, Auth: auth,
		AllowInsecureTLS: c.VaultAllowInsecureTLS, AllowPlaintext: c.VaultAllowPlaintext}
	if auth == nil {
		vc.Token = c.VaultToken
	}
	return vault.New(vc)
}
