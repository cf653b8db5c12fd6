package vault

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/hashicorp/vault/api"
)

// Config describes how to reach Vault. Zero values take the defaults stated
// on each field.
type Config struct {
	// Address of the Vault server. Default: VAULT_ADDR, else Vault's own
	// default (https://127.0.0.1:8200).
	Address string
	// Namespace is the Vault Enterprise namespace sent as X-Vault-Namespace
	// on every request. Default: VAULT_NAMESPACE, else none.
	Namespace string
	// CACert is a PEM file of CA certificates to trust. Default:
	// VAULT_CACERT, else the system pool.
	CACert string
	// Token is a static Vault token (dev only; production uses an auth
	// method).
	Token string
	// Timeout bounds every call to Vault. Default: 5s.
	Timeout time.Duration
}

// Client is keybroker's handle on Vault.
type Client struct {
	api     *api.Client
	timeout time.Duration
}

// New builds a client from cfg. It does not contact Vault.
func New(cfg Config) (*Client, error) {
	apiCfg := api.DefaultConfig() // reads VAULT_ADDR, VAULT_CACERT, ...
	if apiCfg.Error != nil {
		return nil, fmt.Errorf("vault client configuration: %w", apiCfg.Error)
	}
	if cfg.Address != "" {
		apiCfg.Address = cfg.Address
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	apiCfg.Timeout = cfg.Timeout
	if cfg.CACert != "" {
		if err := apiCfg.ConfigureTLS(&api.TLSConfig{CACert: cfg.CACert}); err != nil {
			return nil, fmt.Errorf("vault TLS configuration from %s: %w", cfg.CACert, err)
		}
	}
	c, err := api.NewClient(apiCfg)
	if err != nil {
		return nil, fmt.Errorf("create vault client for %s: %w", apiCfg.Address, err)
	}
	if cfg.Namespace != "" {
		c.SetNamespace(cfg.Namespace)
	}
	c.SetToken(cfg.Token)
	return &Client{api: c, timeout: cfg.Timeout}, nil
}

// Address is the Vault address the client talks to.
func (c *Client) Address() string { return c.api.Address() }

// ErrTokenInvalid means Vault answered but refused the client's token.
var ErrTokenInvalid = errors.New("vault token is not valid")

// CheckToken asks Vault to look up the client's own token: it succeeds only
// when Vault is reachable, unsealed and accepts the token.
func (c *Client) CheckToken(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	_, err := c.api.Auth().Token().LookupSelfWithContext(ctx)
	if err == nil {
		return nil
	}
	var re *api.ResponseError
	if errors.As(err, &re) && (re.StatusCode == http.StatusForbidden || re.StatusCode == http.StatusUnauthorized) {
		return fmt.Errorf("look up own token at %s: %w", c.api.Address(), ErrTokenInvalid)
	}
	return fmt.Errorf("look up own token at %s: %w", c.api.Address(), err)
}
