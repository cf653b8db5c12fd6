package vault

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"

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
	// RoleName is the role's name. Required with Wrapped: a wrapping token
	// is accepted only if Vault created it at
	// auth/<MountPath>/role/<RoleName>/secret-id.
	RoleName string
	// SecretIDFile is a file holding the secret id (or, with Wrapped, the
	// wrapping token); it is re-read at every login that needs it, so an
	// orchestrator may replace it.
	SecretIDFile string
	// SecretIDEnv names an environment variable holding the secret id (or
	// wrapping token).
	SecretIDEnv string
	// SecretID is the secret id (or wrapping token) itself (tests; prefer
	// a file).
	SecretID string
	// Wrapped says the source holds a response-wrapping token of the
	// secret id rather than the secret id.
	Wrapped bool
	// Logger receives security events (a wrapping token from the wrong
	// path). Default: slog.Default().
	Logger *slog.Logger
}

// ErrWrappingTokenRefused: a response-wrapping token was not created where
// a secret id of the configured role comes from. It was not unwrapped.
var ErrWrappingTokenRefused = errors.New("vault: wrapping token refused: it does not wrap a secret id of the configured role")

// AppRole returns the AppRole auth method for Config.Auth, built on
// vault/api's approle package.
func AppRole(cfg AppRoleConfig) (api.AuthMethod, error) {
	if cfg.MountPath == "" {
		cfg.MountPath = "approle"
	}
	cfg.MountPath = strings.Trim(cfg.MountPath, "/")
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
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
	if cfg.RoleID == "" {
		return nil, errors.New("approle: no role id")
	}
	if !cfg.Wrapped {
		m, err := approle.NewAppRoleAuth(cfg.RoleID, &approle.SecretID{
			FromFile: cfg.SecretIDFile, FromEnv: cfg.SecretIDEnv, FromString: cfg.SecretID,
		}, approle.WithMountPath(cfg.MountPath))
		if err != nil {
			return nil, fmt.Errorf("approle auth at %s: %w", cfg.MountPath, err)
		}
		return m, nil
	}
	if cfg.RoleName == "" {
		return nil, errors.New("approle: a wrapped secret id needs the role name, to check where the wrapping token comes from")
	}
	return &wrappedAppRole{cfg: cfg}, nil
}

// wrappedAppRole unwraps the secret id once, after checking the wrapping
// token's creation path, and keeps it in memory for later logins.
type wrappedAppRole struct {
	cfg AppRoleConfig

	mu       sync.Mutex
	secretID string
}

func (w *wrappedAppRole) Login(ctx context.Context, c *api.Client) (*api.Secret, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.secretID == "" {
		sid, err := w.unwrap(ctx, c)
		if err != nil {
			return nil, err
		}
		w.secretID = sid
	}
	m, err := approle.NewAppRoleAuth(w.cfg.RoleID, &approle.SecretID{FromString: w.secretID}, approle.WithMountPath(w.cfg.MountPath))
	if err != nil {
		return nil, fmt.Errorf("approle auth at %s: %w", w.cfg.MountPath, err)
	}
	s, err := m.Login(ctx, c)
	if err != nil {
		// The secret id may have expired: next time, look for a new
		// wrapping token at the source.
		w.secretID = ""
	}
	return s, err
}

func (w *wrappedAppRole) unwrap(ctx context.Context, c *api.Client) (string, error) {
	token, err := w.source()
	if err != nil {
		return "", err
	}
	look, err := c.Logical().WriteWithContext(ctx, "sys/wrapping/lookup", map[string]any{"token": token})
	if err != nil {
		return "", fmt.Errorf("look up the wrapping token of the secret id: %w", err)
	}
	want := "auth/" + w.cfg.MountPath + "/role/" + w.cfg.RoleName + "/secret-id"
	got := ""
	if look != nil {
		got, _ = look.Data["creation_path"].(string)
	}
	if got != want {
		w.cfg.Logger.Warn("security event: refused a response-wrapping token that does not wrap this role's secret id; it was not unwrapped",
			"security_event", "wrapping_token_refused", "creation_path", got, "expected_creation_path", want)
		return "", fmt.Errorf("%w (created at %q, want %q)", ErrWrappingTokenRefused, got, want)
	}
	s, err := c.Logical().UnwrapWithContext(ctx, token)
	if err != nil {
		return "", fmt.Errorf("unwrap the secret id: %w", err)
	}
	var sid string
	if s != nil {
		sid, _ = s.Data["secret_id"].(string)
	}
	if sid == "" {
		return "", errors.New("unwrap the secret id: no secret_id in the wrapped answer")
	}
	return sid, nil
}

func (w *wrappedAppRole) source() (string, error) {
	var v string
	switch {
	case w.cfg.SecretIDFile != "":
		b, err := os.ReadFile(w.cfg.SecretIDFile)
		if err != nil {
			return "", fmt.Errorf("read the wrapped secret id: %w", err)
		}
		v = string(b)
	case w.cfg.SecretIDEnv != "":
		v = os.Getenv(w.cfg.SecretIDEnv)
	default:
		v = w.cfg.SecretID
	}
	v = strings.TrimSpace(v)
	if v == "" {
		return "", errors.New("the wrapped secret id source is empty")
	}
	return v, nil
}
