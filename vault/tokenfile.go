package vault

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/hashicorp/vault/api"
)

// tokenFileAuth uses the token a Vault Agent or Vault Proxy writes to a sink
// file. The agent renews and replaces that token; keybroker only reads the
// file: at start, and again whenever Vault refuses the token it holds.
type tokenFileAuth struct{ path string }

// TokenFile returns the auth method for a Vault Agent/Proxy token sink file.
func TokenFile(path string) (api.AuthMethod, error) {
	if path == "" {
		return nil, errors.New("token file auth: no file")
	}
	return &tokenFileAuth{path: path}, nil
}

func (f *tokenFileAuth) Login(context.Context, *api.Client) (*api.Secret, error) {
	b, err := os.ReadFile(f.path)
	if err != nil {
		return nil, fmt.Errorf("read vault token file: %w", err)
	}
	token := strings.TrimSpace(string(b))
	if token == "" {
		return nil, fmt.Errorf("vault token file %s is empty", f.path)
	}
	return &api.Secret{Auth: &api.SecretAuth{ClientToken: token}}, nil
}

// renewedElsewhere marks auth methods whose tokens someone else renews
// (the agent): the token source neither watches nor renews them.
func (f *tokenFileAuth) renewedElsewhere() bool { return true }
