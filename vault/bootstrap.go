package vault

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/keybroker/keybroker/policies"
)

// BootstrapConfig says what `keybroker vault bootstrap` sets up. Zero values
// take the defaults stated.
type BootstrapConfig struct {
	// KVMount is the KV v2 mount of the keys. Default: "byok".
	KVMount string
	// MaxVersions kept per key. Default: 10.
	MaxVersions int
	// AppRoleMount is the AppRole auth mount. Default: "approle".
	AppRoleMount string
	// WriterRole and ReaderRole name the AppRole roles and their policies.
	// Default: "keybroker-writer", "keybroker-reader".
	WriterRole, ReaderRole string
	// TokenTTL and TokenMaxTTL of the roles' tokens. Default: 15m and 1h.
	TokenTTL, TokenMaxTTL time.Duration
	// SecretIDTTL of the roles' secret ids. Default: 720h (30 days);
	// issue new ones before the old ones expire. Negative: no expiry.
	SecretIDTTL time.Duration
	// SecretIDNumUses is how many logins one secret id allows. Default:
	// 1000 (a login per token max TTL of 1h for 30 days, with room for
	// restarts). Negative: unlimited.
	SecretIDNumUses int
	// TokenBoundCIDRs limits where the roles' tokens may be used from, and
	// SecretIDBoundCIDRs where a secret id may log in from.
	TokenBoundCIDRs, SecretIDBoundCIDRs []string
	// WrapTTL, when set, makes bootstrap issue one secret id per role,
	// response-wrapped with this TTL.
	WrapTTL time.Duration
	// DryRun reports what would change and changes nothing.
	DryRun bool
}

func (cfg *BootstrapConfig) defaults() {
	if cfg.KVMount == "" {
		cfg.KVMount = "byok"
	}
	cfg.KVMount = strings.Trim(cfg.KVMount, "/")
	if cfg.MaxVersions == 0 {
		cfg.MaxVersions = 10
	}
	if cfg.AppRoleMount == "" {
		cfg.AppRoleMount = "approle"
	}
	cfg.AppRoleMount = strings.Trim(cfg.AppRoleMount, "/")
	if cfg.WriterRole == "" {
		cfg.WriterRole = policies.Writer
	}
	if cfg.ReaderRole == "" {
		cfg.ReaderRole = policies.Reader
	}
	if cfg.TokenTTL == 0 {
		cfg.TokenTTL = 15 * time.Minute
	}
	if cfg.TokenMaxTTL == 0 {
		cfg.TokenMaxTTL = time.Hour
	}
	switch {
	case cfg.SecretIDTTL == 0:
		cfg.SecretIDTTL = 720 * time.Hour
	case cfg.SecretIDTTL < 0:
		cfg.SecretIDTTL = 0
	}
	switch {
	case cfg.SecretIDNumUses == 0:
		cfg.SecretIDNumUses = 1000
	case cfg.SecretIDNumUses < 0:
		cfg.SecretIDNumUses = 0
	}
}

// BootstrapResult says what bootstrap changed (or, in a dry run, would
// change) and what the operator needs next.
type BootstrapResult struct {
	Changes []string
	// RoleIDs by role name (not secret on their own).
	RoleIDs map[string]string
	// WrappedSecretIDs by role name: response-wrapping tokens, each
	// unwrappable once, within WrapTTL.
	WrappedSecretIDs map[string]string
}

// Bootstrap sets Vault up for keybroker with the client's (an operator's)
// token: the KV v2 mount, the policies, AppRole and the writer and reader
// roles. It is idempotent: a second run changes nothing; a run after a
// manual edit puts keybroker's settings back (or, with DryRun, reports the
// drift).
func (c *Client) Bootstrap(ctx context.Context, cfg BootstrapConfig) (BootstrapResult, error) {
	cfg.defaults()
	if cfg.TokenMaxTTL < cfg.TokenTTL {
		return BootstrapResult{}, errors.New("bootstrap: token max TTL is shorter than the token TTL")
	}
	res := BootstrapResult{RoleIDs: map[string]string{}, WrappedSecretIDs: map[string]string{}}
	change := func(format string, args ...any) { res.Changes = append(res.Changes, fmt.Sprintf(format, args...)) }

	if err := c.bootstrapMount(ctx, cfg, change); err != nil {
		return res, err
	}
	for name, file := range map[string]string{cfg.WriterRole: policies.Writer, cfg.ReaderRole: policies.Reader} {
		if err := c.bootstrapPolicy(ctx, cfg, name, file, change); err != nil {
			return res, err
		}
	}
	if err := c.bootstrapAppRole(ctx, cfg, change); err != nil {
		return res, err
	}
	for _, role := range []string{cfg.WriterRole, cfg.ReaderRole} {
		exists, err := c.bootstrapRole(ctx, cfg, role, change)
		if err != nil {
			return res, err
		}
		if !exists {
			continue // dry run: nothing to read yet
		}
		id, err := c.api.Logical().ReadWithContext(ctx, "auth/"+cfg.AppRoleMount+"/role/"+role+"/role-id")
		if err != nil || id == nil {
			return res, fmt.Errorf("bootstrap: read role id of %s: %w", role, errors.Join(err, classify(err)))
		}
		res.RoleIDs[role], _ = id.Data["role_id"].(string)
		if cfg.WrapTTL > 0 && !cfg.DryRun {
			wrapped, err := c.wrappedSecretID(ctx, cfg, role)
			if err != nil {
				return res, err
			}
			res.WrappedSecretIDs[role] = wrapped
		}
	}
	return res, nil
}

func (c *Client) bootstrapMount(ctx context.Context, cfg BootstrapConfig, change func(string, ...any)) error {
	mounts, err := c.api.Sys().ListMountsWithContext(ctx)
	if err != nil {
		return fmt.Errorf("bootstrap: list secrets engines: %w", classify(err))
	}
	m, ok := mounts[cfg.KVMount+"/"]
	if ok && (m.Type != "kv" || m.Options["version"] != "2") {
		return fmt.Errorf("bootstrap: %s/ is a %s (version %q) secrets engine, not KV v2; choose another --kv-mount", cfg.KVMount, m.Type, m.Options["version"])
	}
	if !ok {
		change("enable the KV v2 secrets engine at %s/", cfg.KVMount)
		if cfg.DryRun {
			change("set max_versions=%d and cas_required=true on %s/", cfg.MaxVersions, cfg.KVMount)
			return nil
		}
		err := c.api.Sys().MountWithContext(ctx, cfg.KVMount, &api.MountInput{
			Type: "kv", Description: "keybroker: BYOK API keys", Options: map[string]string{"version": "2"},
		})
		if err != nil {
			return fmt.Errorf("bootstrap: enable KV v2 at %s: %w", cfg.KVMount, classify(err))
		}
	}
	// A new KV v2 mount upgrades itself in the background; its config is
	// readable once it is done.
	var conf *api.Secret
	deadline := time.Now().Add(30 * time.Second)
	for {
		conf, err = c.api.Logical().ReadWithContext(ctx, cfg.KVMount+"/config")
		if err == nil || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err != nil {
		return fmt.Errorf("bootstrap: read %s/config: %w", cfg.KVMount, classify(err))
	}
	current, casRequired := 0, false
	if conf != nil {
		current = intOf(conf.Data["max_versions"])
		casRequired, _ = conf.Data["cas_required"].(bool)
	}
	if current != cfg.MaxVersions || !casRequired {
		// cas_required: Vault itself refuses a write without
		// check-and-set, so no client of the mount can overwrite a key
		// blindly.
		change("set max_versions=%d (was %d) and cas_required=true (was %v) on %s/", cfg.MaxVersions, current, casRequired, cfg.KVMount)
		if !cfg.DryRun {
			if _, err := c.api.Logical().WriteWithContext(ctx, cfg.KVMount+"/config", map[string]any{"max_versions": cfg.MaxVersions, "cas_required": true}); err != nil {
				return fmt.Errorf("bootstrap: configure %s: %w", cfg.KVMount, classify(err))
			}
		}
	}
	return nil
}

func (c *Client) bootstrapPolicy(ctx context.Context, cfg BootstrapConfig, name, file string, change func(string, ...any)) error {
	want, err := policies.Render(file, cfg.KVMount)
	if err != nil {
		return err
	}
	have, err := c.api.Sys().GetPolicyWithContext(ctx, name)
	if err != nil {
		return fmt.Errorf("bootstrap: read policy %s: %w", name, classify(err))
	}
	switch {
	case have == "":
		change("write policy %s", name)
	case strings.TrimSpace(have) != strings.TrimSpace(want):
		change("rewrite policy %s: it differs from keybroker's (drift)", name)
	default:
		return nil
	}
	if cfg.DryRun {
		return nil
	}
	if err := c.api.Sys().PutPolicyWithContext(ctx, name, want); err != nil {
		return fmt.Errorf("bootstrap: write policy %s: %w", name, classify(err))
	}
	return nil
}

func (c *Client) bootstrapAppRole(ctx context.Context, cfg BootstrapConfig, change func(string, ...any)) error {
	auths, err := c.api.Sys().ListAuthWithContext(ctx)
	if err != nil {
		return fmt.Errorf("bootstrap: list auth methods: %w", classify(err))
	}
	if a, ok := auths[cfg.AppRoleMount+"/"]; ok {
		if a.Type != "approle" {
			return fmt.Errorf("bootstrap: auth/%s/ is a %s auth method, not AppRole", cfg.AppRoleMount, a.Type)
		}
		return nil
	}
	change("enable the AppRole auth method at auth/%s/", cfg.AppRoleMount)
	if cfg.DryRun {
		return nil
	}
	if err := c.api.Sys().EnableAuthWithOptionsWithContext(ctx, cfg.AppRoleMount, &api.EnableAuthOptions{Type: "approle"}); err != nil {
		return fmt.Errorf("bootstrap: enable AppRole: %w", classify(err))
	}
	return nil
}

// bootstrapRole creates or corrects an AppRole role whose tokens carry only
// the policy of the same name. It reports whether the role exists now.
func (c *Client) bootstrapRole(ctx context.Context, cfg BootstrapConfig, role string, change func(string, ...any)) (bool, error) {
	path := "auth/" + cfg.AppRoleMount + "/role/" + role
	want := map[string]any{
		"token_policies":          []string{role},
		"token_no_default_policy": true,
		"token_ttl":               int(cfg.TokenTTL.Seconds()),
		"token_max_ttl":           int(cfg.TokenMaxTTL.Seconds()),
		"secret_id_ttl":           int(cfg.SecretIDTTL.Seconds()),
		"secret_id_num_uses":      cfg.SecretIDNumUses,
		"token_bound_cidrs":       cfg.TokenBoundCIDRs,
		"secret_id_bound_cidrs":   cfg.SecretIDBoundCIDRs,
		"bind_secret_id":          true,
	}
	have, err := c.api.Logical().ReadWithContext(ctx, path)
	if err != nil && statusOf(err) != 404 {
		return false, fmt.Errorf("bootstrap: read role %s: %w", role, classify(err))
	}
	if have == nil {
		change("create AppRole role %s (token_ttl=%s, token_max_ttl=%s)", role, cfg.TokenTTL, cfg.TokenMaxTTL)
	} else if diff := roleDrift(have.Data, want); len(diff) > 0 {
		change("update AppRole role %s: %s", role, strings.Join(diff, ", "))
	} else {
		return true, nil
	}
	if cfg.DryRun {
		return have != nil, nil
	}
	if _, err := c.api.Logical().WriteWithContext(ctx, path, want); err != nil {
		return false, fmt.Errorf("bootstrap: write role %s: %w", role, classify(err))
	}
	return true, nil
}

// roleDrift names the settings of a role that differ from want.
func roleDrift(have, want map[string]any) []string {
	var diff []string
	for _, k := range []string{"token_policies", "token_no_default_policy", "token_ttl", "token_max_ttl", "secret_id_ttl", "secret_id_num_uses", "token_bound_cidrs", "secret_id_bound_cidrs", "bind_secret_id"} {
		var same bool
		switch w := want[k].(type) {
		case int:
			same = intOf(have[k]) == w
		case bool:
			b, _ := have[k].(bool)
			same = b == w
		case []string:
			same = slices.Equal(stringsOf(have[k]), w) || (len(w) == 0 && len(stringsOf(have[k])) == 0)
		}
		if !same {
			diff = append(diff, fmt.Sprintf("%s %v → %v", k, have[k], want[k]))
		}
	}
	return diff
}

func (c *Client) wrappedSecretID(ctx context.Context, cfg BootstrapConfig, role string) (string, error) {
	wc, err := c.api.Clone()
	if err != nil {
		return "", fmt.Errorf("bootstrap: clone client: %w", err)
	}
	wc.SetToken(c.api.Token())
	wrapTTL := strconv.Itoa(int(cfg.WrapTTL.Seconds())) + "s"
	wc.SetWrappingLookupFunc(func(string, string) string { return wrapTTL })
	s, err := wc.Logical().WriteWithContext(ctx, "auth/"+cfg.AppRoleMount+"/role/"+role+"/secret-id", nil)
	if err != nil {
		return "", fmt.Errorf("bootstrap: issue a wrapped secret id for %s: %w", role, classify(err))
	}
	if s == nil || s.WrapInfo == nil || s.WrapInfo.Token == "" {
		return "", fmt.Errorf("bootstrap: vault did not wrap the secret id of %s", role)
	}
	return s.WrapInfo.Token, nil
}

func intOf(v any) int {
	n, _ := strconv.Atoi(fmt.Sprint(v))
	return n
}

func stringsOf(v any) []string {
	raw, _ := v.([]any)
	out := make([]string, 0, len(raw))
	for _, x := range raw {
		out = append(out, fmt.Sprint(x))
	}
	return out
}

// IssueSecretID issues a new AppRole secret id for role at appRoleMount
// with the client's (an operator's) token, unwrapped: for a development
// Vault, whose operator hands it to keybroker directly.
func (c *Client) IssueSecretID(ctx context.Context, appRoleMount, role string) (string, error) {
	s, err := c.api.Logical().WriteWithContext(ctx, "auth/"+strings.Trim(appRoleMount, "/")+"/role/"+role+"/secret-id", nil)
	if err != nil {
		return "", fmt.Errorf("issue a secret id for %s: %w", role, classify(err))
	}
	id, _ := s.Data["secret_id"].(string)
	if id == "" {
		return "", fmt.Errorf("issue a secret id for %s: vault answered without one", role)
	}
	return id, nil
}
