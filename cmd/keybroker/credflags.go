package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/keybroker/keybroker/client"
)

// credFlags are how keys add and keys rotate take a credential's fields:
// non-secret fields as flag values (--field), secret fields from a file
// (--secret-file), from stdin (--secret-stdin, one field) or from a prompt,
// never from a flag value.
type credFlags struct {
	fields      []string // NAME=VALUE; a map field NAME=KEY=VALUE (repeated) or NAME={json}
	secretFiles []string // NAME=PATH
	secretStdin string   // NAME
}

func (f *credFlags) bind(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringArrayVar(&f.fields, "field", nil, "a non-secret field of the provider's credential, NAME=VALUE (repeatable); a map field as NAME=KEY=VALUE (repeated) or NAME='{\"KEY\":\"VALUE\"}'. Secret fields are refused here")
	fl.StringArrayVar(&f.secretFiles, "secret-file", nil, "a secret field read from a file, NAME=PATH (repeatable)")
	fl.StringVar(&f.secretStdin, "secret-stdin", "", "one secret field read from stdin: its first line, or all of it when it is a JSON object (a service-account file)")
}

// given is whether any credential flag was given.
func (f *credFlags) given() bool {
	return len(f.fields) > 0 || len(f.secretFiles) > 0 || f.secretStdin != ""
}

// maxSecretFile bounds what a secret file or stdin may hold.
const maxSecretFile = 1 << 20

// credential builds the credential of provider p from the flags, stdin and
// prompts. Errors name fields and files, never a value.
func (f *credFlags) credential(p client.Provider, in io.Reader, prompt io.Writer) (map[string]any, error) {
	schema := map[string]client.CredentialField{}
	var names []string
	for _, fd := range p.Fields {
		schema[fd.Name] = fd
		names = append(names, fd.Name)
	}
	field := func(name string) (client.CredentialField, error) {
		fd, ok := schema[name]
		if !ok {
			return fd, fmt.Errorf("%s has no field %q (its fields: %s)", p.ID, name, strings.Join(names, ", "))
		}
		return fd, nil
	}
	cred := map[string]any{}
	for _, arg := range f.fields {
		name, value, ok := strings.Cut(arg, "=")
		if !ok || name == "" {
			// Not NAME=VALUE: say so without repeating it, in case it
			// was a secret.
			return nil, errors.New("--field takes NAME=VALUE")
		}
		fd, err := field(name)
		if err != nil {
			return nil, err
		}
		if fd.Secret {
			return nil, fmt.Errorf("%s's field %s is secret: it is never taken as a flag value; give it with --secret-file %s=PATH, --secret-stdin %s, or at the prompt (nothing was written)",
				p.ID, name, name, name)
		}
		if fd.Type != "map" {
			if _, dup := cred[name]; dup {
				return nil, fmt.Errorf("--field %s given twice", name)
			}
			cred[name] = value
			continue
		}
		m, _ := cred[name].(map[string]string)
		if m == nil {
			m = map[string]string{}
			cred[name] = m
		}
		if strings.HasPrefix(strings.TrimSpace(value), "{") {
			var obj map[string]string
			if err := json.Unmarshal([]byte(value), &obj); err != nil {
				return nil, fmt.Errorf("--field %s: not a JSON object of strings: %w", name, err)
			}
			for k, v := range obj {
				m[k] = v
			}
			continue
		}
		k, v, ok := strings.Cut(value, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--field %s is a map: give %s=KEY=VALUE (repeated) or %s='{\"KEY\":\"VALUE\"}'", name, name, name)
		}
		m[k] = v
	}
	secret := func(flag, name string) error {
		fd, err := field(name)
		if err != nil {
			return err
		}
		if !fd.Secret {
			return fmt.Errorf("%s's field %s is not secret: give it with --field %s=VALUE", p.ID, name, name)
		}
		if _, dup := cred[name]; dup {
			return fmt.Errorf("%s: the field %s is given twice", flag, name)
		}
		return nil
	}
	for _, arg := range f.secretFiles {
		name, path, ok := strings.Cut(arg, "=")
		if !ok || name == "" || path == "" {
			return nil, errors.New("--secret-file takes NAME=PATH")
		}
		if err := secret("--secret-file", name); err != nil {
			return nil, err
		}
		v, err := readSecretFile(path)
		if err != nil {
			return nil, fmt.Errorf("--secret-file %s: %w", name, err)
		}
		cred[name] = v
	}
	if f.secretStdin != "" {
		if err := secret("--secret-stdin", f.secretStdin); err != nil {
			return nil, err
		}
		b, err := io.ReadAll(io.LimitReader(in, maxSecretFile+1))
		switch {
		case err != nil:
			return nil, fmt.Errorf("--secret-stdin %s: read stdin: %w", f.secretStdin, err)
		case len(b) > maxSecretFile:
			return nil, fmt.Errorf("--secret-stdin %s: stdin holds more than %d bytes", f.secretStdin, maxSecretFile)
		}
		v := strings.TrimSpace(string(b))
		if !strings.HasPrefix(v, "{") {
			v, _, _ = strings.Cut(v, "\n")
			v = strings.TrimRight(v, "\r")
		}
		if v == "" {
			return nil, fmt.Errorf("--secret-stdin %s: stdin is empty", f.secretStdin)
		}
		cred[f.secretStdin] = v
	}
	// The secret fields not given: a prompt for each in a terminal (an
	// empty answer leaves an optional one out); else a required one is an
	// error.
	file, tty := in.(*os.File)
	tty = tty && f.secretStdin == "" && term.IsTerminal(int(file.Fd()))
	for _, fd := range p.Fields {
		if _, ok := cred[fd.Name]; ok || !fd.Secret {
			continue
		}
		if !tty {
			if fd.Required {
				return nil, fmt.Errorf("%s's secret field %s is required: give it with --secret-file %s=PATH or --secret-stdin %s, or run in a terminal to be prompted",
					p.ID, fd.Name, fd.Name, fd.Name)
			}
			continue
		}
		opt := ""
		if !fd.Required {
			opt = ", Enter to leave it out"
		}
		fmt.Fprintf(prompt, "%s's %s (%s; not echoed%s): ", p.ID, fd.Name, fd.Hint, opt)
		b, err := term.ReadPassword(int(file.Fd()))
		fmt.Fprintln(prompt)
		if err != nil {
			return nil, fmt.Errorf("read %s from the terminal: %w", fd.Name, err)
		}
		if v := strings.TrimRight(string(b), "\r\n"); v != "" {
			cred[fd.Name] = v
		} else if fd.Required {
			return nil, fmt.Errorf("%s's secret field %s is required", p.ID, fd.Name)
		}
	}
	return cred, nil
}

// readSecretFile reads a secret field's value from a file, without its
// trailing newline.
func readSecretFile(path string) (string, error) {
	fh, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer fh.Close()
	b, err := io.ReadAll(bufio.NewReader(io.LimitReader(fh, maxSecretFile+1)))
	switch {
	case err != nil:
		return "", fmt.Errorf("read %s: %w", path, err)
	case len(b) > maxSecretFile:
		return "", fmt.Errorf("%s holds more than %d bytes", path, maxSecretFile)
	}
	v := strings.TrimRight(string(b), "\r\n")
	if v == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return v, nil
}

// providerSchema fetches provider id's kind and fields.
func providerSchema(cmd *cobra.Command, c *client.Client, id string) (client.Provider, error) {
	cat, err := c.ProviderCatalogue(cmd.Context())
	if err != nil {
		return client.Provider{}, fmt.Errorf("read the providers' fields: %w", err)
	}
	for _, p := range append(cat.Providers, cat.AdminProviders...) {
		if p.ID == id {
			return p, nil
		}
	}
	return client.Provider{}, fmt.Errorf("no provider %q", id)
}

// describeCredential is a written credential in words: its kind, its
// non-secret fields and the masks of its secret ones, never a secret.
func describeCredential(m client.KeyMetadata) string {
	var parts []string
	for _, k := range sortedKeys(m.Fields) {
		v := m.Fields[k]
		if s, ok := v.(string); ok {
			parts = append(parts, k+"="+s)
			continue
		}
		b, _ := json.Marshal(v)
		parts = append(parts, k+"="+string(b))
	}
	for _, k := range sortedKeys(m.Masked) {
		parts = append(parts, k+"="+m.Masked[k])
	}
	return m.Kind + " " + strings.Join(parts, " ")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// read is the key to write: the API key of an api_key provider given no
// credential flag, read as it always was (stdin or a prompt); else the
// credential built from the provider's schema, the flags, files, stdin and
// prompts.
func (f *credFlags) read(cmd *cobra.Command, c *client.Client, provider string) (apiKey string, cred map[string]any, err error) {
	if !f.given() {
		p, err := providerSchema(cmd, c, provider)
		if err != nil || p.Kind == "" || p.Kind == "api_key" {
			// As before the providers had kinds: the server says what
			// it makes of the provider.
			key, err := readKey(cmd.InOrStdin(), cmd.ErrOrStderr(), provider)
			return key, nil, err
		}
		cred, err := f.credential(p, cmd.InOrStdin(), cmd.ErrOrStderr())
		return "", cred, err
	}
	p, err := providerSchema(cmd, c, provider)
	if err != nil {
		return "", nil, err
	}
	cred, err = f.credential(p, cmd.InOrStdin(), cmd.ErrOrStderr())
	return "", cred, err
}

// shown is what the add and rotate messages say of the written key: the
// masked key, as always, for an API key; the kind, non-secret fields and
// masks for a credential.
func shown(m client.KeyMetadata, cred map[string]any) string {
	if cred == nil {
		return m.MaskedKey
	}
	return describeCredential(m)
}
