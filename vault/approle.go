package vault

import (
	"fmt"

	"github.com/hashicorp/vault/api"
	"github.com/hashicorp/vault/api/auth/approle"
)

// AppRoleConfig says how to log in with AppRole. Exactly one source of the
// secret id is set.
type AppRoleConfig struct {
	// MountPath of the AppRole auth method. Default: "approle".
	MountPath string
	// RoleID of the role (not a secret on its own).
	RoleID string
	// SecretIDFile is a file holding the secret id; it is re-read at every
	// login, so an orchestrator may replace it.
	SecretIDFile string
	// SecretIDEnv names an environment variable holding the secret id.
	SecretIDEnv string
	// SecretID is the secret id itself (tests; prefer a file).
	SecretID string
}

// AppRole returns the AppRole auth method for Config.Auth, built on vault/api's
// approle package.
func AppRole(cfg AppRoleConfig) (api.AuthMethod, error) {
	if cfg.MountPath == "" {
		cfg.MountPath = "approle"
	}
	sources := 0
	for _, s := range []string{cfg.SecretIDFile, cfg.SecretIDEnv, cfg.SecretID} {
		if s != "" {
			sources++
		}
	}
	if sources != 1 {
		return nil, fmt.Errorf("approle: set exactly one source of the secret id (file, env or value), got %d", sources)
	}
	m, err := approle.NewAppRoleAuth(cfg.RoleID, &approle.SecretID{
		FromFile:   cfg.SecretIDFile,
		FromEnv:    cfg.SecretIDEnv,
		FromString: cfg.SecretID,
	}, approle.WithMountPath(cfg.MountPath))
	if err != nil {
		return nil, fmt.Errorf("approle auth at %s: %w", cfg.MountPath, err)
	}
	return m, nil
}
