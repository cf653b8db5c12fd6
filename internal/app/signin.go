package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/keybroker/keybroker/auth/oidclogin"
	"github.com/keybroker/keybroker/auth/rolemap"
	"github.com/keybroker/keybroker/auth/session"
	"github.com/keybroker/keybroker/handlers"
	"github.com/keybroker/keybroker/internal/runtime/keyring"
)

// signIn builds people's sign-in (modes all and admin) when the OIDC
// settings ask for it: the role mapping read and checked, the provider's
// discovery document read, the sessions signed with the admin keys.
func (a *App) signIn(cfg Config, adminKeys *keyring.Ring) (*handlers.SignIn, error) {
	switch {
	case nonEmpty(cfg.OIDCIssuer, cfg.OIDCClientID, cfg.OIDCRedirectURL, cfg.OIDCRoleMap) < 4:
		return nil, nil // none set (Validate refuses a part)
	case a.mode != handlers.ModeAll && a.mode != handlers.ModeAdmin:
		return nil, nil // the page and its sign-in are the admin replicas'
	case adminKeys.Empty():
		return nil, errors.New("sign-in: sessions are signed with KEYBROKER_ADMIN_TOKEN_KEYS, which is not set")
	}
	roles, err := rolemap.Load(cfg.OIDCRoleMap)
	if err != nil {
		return nil, fmt.Errorf("sign-in: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	rp, err := oidclogin.New(ctx, oidclogin.Config{Issuer: cfg.OIDCIssuer, ClientID: cfg.OIDCClientID, ClientSecret: cfg.OIDCClientSecret,
		RedirectURL: cfg.OIDCRedirectURL})
	if err != nil {
		return nil, fmt.Errorf("sign-in: %w", err)
	}
	// The CLI's client: the same provider, a public client whose ID tokens
	// `keybroker login` brings to POST /auth/cli/session (its redirect is
	// the CLI's loopback listener; keybroker never redirects to it).
	var cli *oidclogin.RP
	if cfg.OIDCCLIClientID != "" {
		if cli, err = oidclogin.New(ctx, oidclogin.Config{Issuer: cfg.OIDCIssuer, ClientID: cfg.OIDCCLIClientID,
			RedirectURL: "http://127.0.0.1/callback"}); err != nil {
			return nil, fmt.Errorf("sign-in for the CLI: %w", err)
		}
	}
	sessions, err := session.NewService(a.store, session.Options{Keys: adminKeys, Logger: a.log})
	if err != nil {
		return nil, fmt.Errorf("sign-in: %w", err)
	}
	return &handlers.SignIn{RP: rp, Roles: roles, Sessions: sessions, SealKey: oidclogin.KeyFrom(adminKeys.Derive("oidc pending sign-ins").CurrentSecret()),
		RedirectURL: cfg.OIDCRedirectURL, Issuer: cfg.OIDCIssuer, CLI: cli, CLIClientID: cfg.OIDCCLIClientID,
		CLIDeviceGrant: cfg.OIDCCLIDeviceGrant, CLITokenUses: a.store, Audit: a.store.AppendAudits}, nil
}
