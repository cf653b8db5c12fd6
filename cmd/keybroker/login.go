package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/spf13/cobra"
	"golang.org/x/oauth2"
	"golang.org/x/term"

	"github.com/keybroker/keybroker/client"
)

// keybroker login signs a person in from the terminal (docs/identity.md),
// with one of two flows of the CLI's public client (loginFlow): the device
// authorization grant (RFC 8628) when the provider's discovery document
// names a device_authorization_endpoint, else the authorization code flow
// with a loopback redirect (RFC 8252), PKCE S256, state and nonce; --flow
// picks one. The ID token is given to keybroker (POST /auth/cli/session),
// which checks it (with the nonce the flow sent: the device grant has
// none), maps the person's roles and answers a session token, kept in the
// user's config folder (login_session.go).

// loginFlow gets an ID token of the CLI's client, and the nonce it bound
// the token to ("" for a flow without one).
type loginFlow interface {
	idToken(ctx context.Context) (raw, nonce string, err error)
}

// serverConfig is what GET /auth/config tells of people's sign-in.
type serverConfig struct {
	Issuer      string `json:"issuer"`
	CLIClientID string `json:"cliClientId"`
	// CLIDeviceGrant: the server takes the device grant's sign-ins.
	CLIDeviceGrant bool `json:"cliDeviceGrant"`
}

func newLoginCommand() *cobra.Command {
	var api apiFlags
	var issuer, clientID string
	var scopes []string
	var noBrowser bool
	var flowName string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "login",
		Short: "Sign in with your identity provider and keep the session for the API commands (KEYBROKER_ADDR)",
		Long: `Sign in to keybroker with your identity provider and keep the session keybroker
opens in your config folder (keybroker/session.json, mode 0600). The API
commands use it when KEYBROKER_TOKEN is not set. The issuer and the client
default to what the server says (GET /auth/config).

Where the provider offers the device authorization grant, keybroker login
prints a URL and a code: open the URL on any device, sign in and enter the
code (this works over SSH too). Otherwise it prints a URL to open in a
browser on this machine and listens on 127.0.0.1 for the provider's
redirect. In a terminal it opens the URL unless --no-browser; --flow device
or --flow loopback picks the flow.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			hc, err := httpClientOf(api.cfg)
			if err != nil {
				return err
			}
			addr := strings.TrimRight(api.cfg.Address, "/")
			sc, err := fetchServerConfig(ctx, hc, addr)
			if err != nil {
				return err
			}
			issuer, clientID = or(issuer, sc.Issuer), or(clientID, sc.CLIClientID)
			if clientID == "" {
				return fmt.Errorf("%s does not sign the CLI in (no --oidc-cli-client-id): ask its operator, or use a token (KEYBROKER_TOKEN)", addr)
			}
			// The provider's own endpoints are reached with the system's
			// CAs, not keybroker's.
			octx := oidc.ClientContext(ctx, &http.Client{Timeout: 30 * time.Second})
			provider, err := oidc.NewProvider(octx, issuer)
			if err != nil {
				// go-oidc's error may quote the provider's answer.
				return fmt.Errorf("the identity provider's discovery at %s failed: %s", printableASCII(issuer, 512), printableASCII(err.Error(), 300))
			}
			flow, err := chooseFlow(flowName, sc.CLIDeviceGrant, provider, clientID, append([]string{oidc.ScopeOpenID}, scopes...), cmd.ErrOrStderr(),
				!noBrowser && term.IsTerminal(int(os.Stdout.Fd())))
			if err != nil {
				return err
			}
			raw, nonce, err := flow.idToken(octx)
			if err != nil {
				return err
			}
			var opened struct {
				Token     string    `json:"token"`
				ExpiresAt time.Time `json:"expiresAt"`
			}
			if err := callKeybroker(ctx, hc, http.MethodPost, addr+"/auth/cli/session", "", map[string]string{"idToken": raw, "nonce": nonce}, &opened); err != nil {
				return fmt.Errorf("keybroker refused the sign-in: %w", err)
			}
			path, err := saveSession(storedSession{Address: addr, Token: opened.Token, ExpiresAt: opened.ExpiresAt})
			if err != nil {
				return err
			}
			who, err := whoAmI(api.cfg, addr, opened.Token)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "Signed in to %s as %s until %s at the latest; the session is kept in %s.\n",
				addr, personName(who), opened.ExpiresAt.Local().Format(time.RFC1123), path)
			return nil
		},
	}
	api.bind(cmd)
	f := cmd.Flags()
	f.StringVar(&issuer, "issuer", "", "the identity provider's issuer URL (default: the server's)")
	f.StringVar(&clientID, "client-id", "", "the CLI's client id at the provider (default: the server's)")
	f.StringSliceVar(&scopes, "scopes", []string{"email", "profile", "groups"}, "scopes to ask for besides openid")
	f.BoolVar(&noBrowser, "no-browser", false, "print the URL only; do not open a browser")
	f.StringVar(&flowName, "flow", "auto", "auto (the device grant where the provider offers it, else loopback), device or loopback")
	f.DurationVar(&timeout, "timeout", 5*time.Minute, "how long to wait for the sign-in")
	return cmd
}

func newLogoutCommand() *cobra.Command {
	var api apiFlags
	cmd := &cobra.Command{
		Use:   "logout",
		Short: "End the session of keybroker login at the server and delete it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := loadSession()
			if errors.Is(err, errNoSession) {
				fmt.Fprintln(cmd.ErrOrStderr(), "Not signed in.")
				return nil
			}
			if err != nil {
				return err
			}
			cfg := api.cfg
			cfg.Address = s.Address // the session's own server, whatever --addr says
			hc, err := httpClientOf(cfg)
			if err != nil {
				return err
			}
			err = callKeybroker(cmd.Context(), hc, http.MethodPost, s.Address+"/auth/logout", s.Token, nil, nil)
			var ce *client.Error
			if err != nil && !(errors.As(err, &ce) && ce.StatusCode == http.StatusUnauthorized) {
				return fmt.Errorf("could not end the session at %s (the session is kept; try again): %w", s.Address, err)
			}
			if err := removeSession(); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "Signed out of %s.\n", s.Address)
			return nil
		},
	}
	api.bind(cmd)
	return cmd
}

func newWhoAmICommand() *cobra.Command {
	var api apiFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "whoami",
		Short: "Show who the API commands act as: the person signed in, or the token (KEYBROKER_ADDR, KEYBROKER_TOKEN)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := api.client()
			if err != nil {
				return err
			}
			who, err := c.WhoAmI(cmd.Context())
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if asJSON {
				return json.NewEncoder(w).Encode(who)
			}
			if who.Person == nil {
				fmt.Fprintf(w, "token %s, role %s\n", who.TokenID, who.Role)
				return nil
			}
			fmt.Fprintf(w, "%s (%s)\n", personName(who), who.Person.Actor)
			if r := who.ScopedRoles; r != nil {
				if r.Operator {
					fmt.Fprintln(w, "  operator")
				}
				for _, kind := range []struct {
					name  string
					roles map[string]string
				}{{"workspace", r.Workspaces}, {"organization", r.Organizations}} {
					ids := make([]string, 0, len(kind.roles))
					for id := range kind.roles {
						ids = append(ids, id)
					}
					sort.Strings(ids)
					for _, id := range ids {
						fmt.Fprintf(w, "  %s of %s %s\n", kind.roles[id], kind.name, id)
					}
				}
			}
			return nil
		},
	}
	api.bind(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// chooseFlow picks the flow by name: auto is the device grant when the
// server takes it (serverDevice) and the provider's discovery names its
// endpoint, else the loopback redirect.
func chooseFlow(name string, serverDevice bool, provider *oidc.Provider, clientID string, scopes []string, out io.Writer, browser bool) (loginFlow, error) {
	offersDevice := provider.Endpoint().DeviceAuthURL != ""
	switch name {
	case "auto", "":
		if offersDevice && serverDevice {
			return &deviceFlow{provider: provider, clientID: clientID, scopes: scopes, out: out, browser: browser}, nil
		}
		return &loopbackFlow{provider: provider, clientID: clientID, scopes: scopes, out: out, browser: browser}, nil
	case "device":
		if !serverDevice {
			return nil, errors.New("this keybroker does not take the device authorization grant's sign-ins (its operator has not set --oidc-cli-device-grant): use --flow loopback")
		}
		if !offersDevice {
			return nil, errors.New("the identity provider does not offer the device authorization grant (its discovery document names no device_authorization_endpoint): use --flow loopback")
		}
		return &deviceFlow{provider: provider, clientID: clientID, scopes: scopes, out: out, browser: browser}, nil
	case "loopback":
		return &loopbackFlow{provider: provider, clientID: clientID, scopes: scopes, out: out, browser: browser}, nil
	}
	return nil, fmt.Errorf("--flow %q: want auto, device or loopback", printableASCII(name, 32))
}

// deviceFlow is the device authorization grant (RFC 8628): the person
// opens the verification URI anywhere and enters the user code while the
// CLI polls the token endpoint at the interval the provider asks for.
type deviceFlow struct {
	provider *oidc.Provider
	clientID string
	scopes   []string
	out      io.Writer
	browser  bool
}

func (f *deviceFlow) idToken(ctx context.Context) (string, string, error) {
	conf := oauth2.Config{ClientID: f.clientID, Endpoint: publicEndpoint(f.provider), Scopes: f.scopes}
	da, err := conf.DeviceAuth(ctx)
	if err != nil {
		return "", "", providerRefusal("device authorization endpoint", err)
	}
	verification, complete := webURL(da.VerificationURI), webURL(da.VerificationURIComplete)
	if verification == "" || da.UserCode == "" || printableASCII(da.UserCode, 64) != da.UserCode {
		return "", "", errors.New("the identity provider's device authorization answer has no usable verification URL or user code")
	}
	fmt.Fprintf(f.out, "To sign in to keybroker, open\n\n  %s\n\nand enter the code %s", verification, da.UserCode)
	if complete != "" {
		fmt.Fprintf(f.out, ", or open\n\n  %s\n", complete)
	}
	fmt.Fprintln(f.out, "\nWaiting for the sign-in...")
	if f.browser {
		openBrowser(or(complete, verification)) // what was printed, nothing else
	}
	tok, err := conf.DeviceAccessToken(ctx, da)
	if err != nil {
		var re *oauth2.RetrieveError
		switch {
		case errors.As(err, &re) && re.ErrorCode == "access_denied":
			return "", "", errors.New("the sign-in was denied at the identity provider")
		case errors.As(err, &re) && re.ErrorCode == "expired_token", errors.Is(err, context.DeadlineExceeded):
			return "", "", errors.New("the sign-in was not finished in time (the code expired, or --timeout passed): run keybroker login again")
		}
		return "", "", providerRefusal("token endpoint", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return "", "", errors.New("the identity provider answered no ID token")
	}
	return raw, "", nil
}

// publicEndpoint is the provider's endpoint for a public client: client_id
// in the form (RFC 6749 §2.3), never HTTP Basic with an empty secret. (Left
// to guess, golang.org/x/oauth2 sends a refused request again the other way,
// and a device code refused once, e.g. access_denied, would be spent by the
// first try and answered invalid_grant on the second.)
func publicEndpoint(provider *oidc.Provider) oauth2.Endpoint {
	e := provider.Endpoint()
	e.AuthStyle = oauth2.AuthStyleInParams
	return e
}

// webURL is u when it is an https URL (or http on loopback) of printable
// ASCII, else "": a provider's URL is printed and opened only then.
func webURL(u string) string {
	if u == "" || printableASCII(u, 2048) != u {
		return ""
	}
	p, err := url.Parse(u)
	if err != nil || p.Host == "" {
		return ""
	}
	if p.Scheme == "https" || (p.Scheme == "http" && isLoopbackHost(p.Hostname())) {
		return u
	}
	return ""
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// providerRefusal names an endpoint's OAuth error code, never its body.
func providerRefusal(endpoint string, err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.ErrorCode != "" {
		return fmt.Errorf("the identity provider's %s answered %s", endpoint, printableASCII(re.ErrorCode, 64))
	}
	if errors.As(err, &re) {
		return fmt.Errorf("the identity provider's %s answered %d", endpoint, re.Response.StatusCode)
	}
	return fmt.Errorf("the identity provider's %s could not be reached", endpoint)
}

// loopbackFlow is the authorization code flow with a loopback redirect:
// a listener on 127.0.0.1 at a free port, path /callback.
type loopbackFlow struct {
	provider *oidc.Provider
	clientID string
	scopes   []string
	out      io.Writer
	browser  bool
}

func (f *loopbackFlow) idToken(ctx context.Context) (string, string, error) {
	nonce := randomString()
	raw, err := f.codeFlow(ctx, nonce)
	return raw, nonce, err
}

func (f *loopbackFlow) codeFlow(ctx context.Context, nonce string) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("listen for the sign-in's redirect: %w", err)
	}
	conf := oauth2.Config{ClientID: f.clientID, Endpoint: publicEndpoint(f.provider), Scopes: f.scopes,
		RedirectURL: "http://" + ln.Addr().String() + "/callback"}
	state, verifier := randomString(), oauth2.GenerateVerifier()
	answers := make(chan url.Values, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("/callback", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(state)) != 1 {
			w.WriteHeader(http.StatusBadRequest)
			_ = loginPage.Execute(w, "This is not the sign-in keybroker login is waiting for.")
			return
		}
		select {
		case answers <- q:
			_ = loginPage.Execute(w, "keybroker login has the answer: go back to your terminal. You may close this tab.")
		default:
			w.WriteHeader(http.StatusConflict)
			_ = loginPage.Execute(w, "This sign-in was already answered.")
		}
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer func() {
		// Let the browser have its page before the listener goes.
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()

	authURL := webURL(conf.AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier)))
	if authURL == "" {
		return "", errors.New("the identity provider's authorization endpoint is not an https URL (or http on loopback)")
	}
	fmt.Fprintf(f.out, "Sign in to keybroker in your browser:\n\n  %s\n\n", authURL)
	if f.browser {
		openBrowser(authURL)
	}
	var q url.Values
	select {
	case q = <-answers:
	case <-ctx.Done():
		return "", errors.New("the sign-in was not finished in time: run keybroker login again")
	}
	if e := q.Get("error"); e != "" {
		return "", fmt.Errorf("the identity provider refused the sign-in: %s", printableASCII(e, 64))
	}
	if q.Get("code") == "" {
		return "", errors.New("the identity provider's redirect has no code")
	}
	tok, err := conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		return "", providerRefusal("token endpoint", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return "", errors.New("the identity provider answered no ID token")
	}
	return raw, nil
}

var loginPage = template.Must(template.New("p").Parse(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>keybroker login</title></head>` +
	`<body><main><h1>keybroker login</h1><p>{{.}}</p></main></body></html>`))

// openBrowser tries the desktop's opener; the URL is printed anyway.
func openBrowser(u string) {
	name := "xdg-open"
	if runtime.GOOS == "darwin" {
		name = "open"
	}
	if path, err := exec.LookPath(name); err == nil {
		cmd := exec.Command(path, u)
		if cmd.Start() == nil {
			go func() { _ = cmd.Wait() }()
		}
	}
}

// fetchServerConfig reads GET /auth/config.
func fetchServerConfig(ctx context.Context, hc *http.Client, addr string) (serverConfig, error) {
	var sc serverConfig
	err := callKeybroker(ctx, hc, http.MethodGet, addr+"/auth/config", "", nil, &sc)
	var ce *client.Error
	if errors.As(err, &ce) && ce.StatusCode == http.StatusNotFound {
		return sc, fmt.Errorf("%s does not sign people in (no OpenID Connect settings): use a token (KEYBROKER_TOKEN)", addr)
	}
	if err != nil {
		return sc, fmt.Errorf("ask %s how people sign in: %w", addr, err)
	}
	return sc, nil
}

// callKeybroker sends a request to keybroker's /auth routes (outside the
// API the client package covers): in, when not nil, as JSON; the answer
// into out; an error answer as a *client.Error.
func callKeybroker(ctx context.Context, hc *http.Client, method, u, bearer string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var eb struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		_ = json.Unmarshal(b, &eb)
		if eb.Error.Message == "" {
			eb.Error.Message = http.StatusText(resp.StatusCode)
		}
		return &client.Error{StatusCode: resp.StatusCode, Code: eb.Error.Code, Message: eb.Error.Message}
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("keybroker's answer is not JSON: %w", err)
		}
	}
	return nil
}

// httpClientOf is an HTTP client with cfg's TLS settings that follows no
// redirect, for an address the client package would accept.
func httpClientOf(cfg client.Config) (*http.Client, error) {
	if _, err := client.New(client.Config{Address: cfg.Address, Token: "-", AllowInsecureHTTP: cfg.AllowInsecureHTTP}); err != nil {
		return nil, err
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CACertFile != "" {
		pem, err := os.ReadFile(cfg.CACertFile)
		if err != nil {
			return nil, fmt.Errorf("read the CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", cfg.CACertFile)
		}
		tc.RootCAs = pool
	}
	if (cfg.ClientCertFile == "") != (cfg.ClientKeyFile == "") {
		return nil, errors.New("a client certificate needs both its certificate and its key file")
	}
	if cfg.ClientCertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.ClientCertFile, cfg.ClientKeyFile)
		if err != nil {
			return nil, fmt.Errorf("load the client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = tc
	return &http.Client{Transport: transport, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}, nil
}

// whoAmI asks keybroker who token is.
func whoAmI(cfg client.Config, addr, token string) (client.WhoAmI, error) {
	cfg.Address, cfg.Token = addr, token
	c, err := client.New(cfg)
	if err != nil {
		return client.WhoAmI{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return c.WhoAmI(ctx)
}

// personName is how the CLI names the person of who.
func personName(who client.WhoAmI) string {
	p := who.Person
	switch {
	case p == nil:
		return "token " + who.TokenID
	case p.Name != "" && p.Email != "":
		return p.Name + " <" + p.Email + ">"
	case p.Name != "":
		return p.Name
	case p.Email != "":
		return p.Email
	}
	return p.Subject
}

func randomString() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// printableASCII is s cut to n bytes of printable ASCII (a provider's
// error code, quoted in an error).
func printableASCII(s string, n int) string {
	out := make([]byte, 0, min(len(s), n))
	for i := 0; i < len(s) && len(out) < n; i++ {
		if c := s[i]; c >= 0x20 && c < 0x7f {
			out = append(out, c)
		}
	}
	return string(out)
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
