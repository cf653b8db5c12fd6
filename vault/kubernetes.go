package vault

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/hashicorp/vault/api"
	"github.com/hashicorp/vault/api/auth/kubernetes"
)

// KubernetesConfig says how to log in with Vault's Kubernetes auth method.
type KubernetesConfig struct {
	// MountPath of the auth method. Default: "kubernetes".
	MountPath string
	// Role is the Vault role bound to keybroker's service account.
	Role string
	// JWTPath is the service-account token file. Default: the projected
	// token at /var/run/secrets/kubernetes.io/serviceaccount/token.
	JWTPath string
}

// kubernetesAuth logs in with the service-account JWT read afresh at every
// login: projected tokens rotate, and vault/api's constructor reads the
// file only once.
type kubernetesAuth struct{ cfg KubernetesConfig }

// Kubernetes returns the Kubernetes auth method for Config.Auth.
func Kubernetes(cfg KubernetesConfig) (api.AuthMethod, error) {
	if cfg.Role == "" {
		return nil, fmt.Errorf("kubernetes auth: no role")
	}
	if cfg.MountPath == "" {
		cfg.MountPath = "kubernetes"
	}
	if cfg.JWTPath == "" {
		cfg.JWTPath = "/var/run/secrets/kubernetes.io/serviceaccount/token"
	}
	return &kubernetesAuth{cfg: cfg}, nil
}

func (k *kubernetesAuth) Login(ctx context.Context, c *api.Client) (*api.Secret, error) {
	b, err := os.ReadFile(k.cfg.JWTPath)
	if err != nil {
		return nil, fmt.Errorf("kubernetes auth: read the service-account token: %w", err)
	}
	jwt := strings.TrimSpace(string(b))
	if jwt == "" {
		return nil, fmt.Errorf("kubernetes auth: the service-account token file %s is empty", k.cfg.JWTPath)
	}
	m, err := kubernetes.NewKubernetesAuth(k.cfg.Role,
		kubernetes.WithServiceAccountToken(jwt), kubernetes.WithMountPath(k.cfg.MountPath))
	if err != nil {
		return nil, fmt.Errorf("kubernetes auth with %s: %w", k.cfg.JWTPath, err)
	}
	return m.Login(ctx, c)
}
