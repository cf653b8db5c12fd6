// Package tlsfiles owns the API listener's TLS material: a certificate and
// key (and optionally a client CA bundle) read from files and read again
// when the files change, as cert-manager or Vault Agent rotate them, so a
// rotation needs no restart.
package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// nextProtos offers HTTP/2 and HTTP/1.1 (ALPN): net/http serves HTTP/2 on
// a TLS listener whose configuration names "h2".
var nextProtos = []string{"h2", "http/1.1"}

// CipherSuites are the TLS 1.2 suites the listener accepts: ECDHE key
// exchange (forward secrecy) with an AEAD cipher only — no CBC mode, no
// SHA-1 MAC, no RSA key exchange. TLS 1.3's suites are all AEAD (Go does
// not let them be chosen). Every maintained client offers one of these.
var CipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// Config names the files.
type Config struct {
	// CertFile and KeyFile are the PEM certificate chain and private key.
	// Both required.
	CertFile, KeyFile string
	// ClientCAFile, when set, is a PEM bundle of CAs; every client must
	// then present a certificate signed by one of them.
	ClientCAFile string
	// Logger receives one line per reload and per failed reload.
	Logger *slog.Logger
	// CheckEvery bounds how often the files are looked at (a stat per
	// file). Default: 1s.
	CheckEvery time.Duration
}

// Loader serves the current TLS configuration. A reload that fails (a
// half-written file, a key that does not match) keeps the previous
// material and is logged; the listener never goes without a certificate.
type Loader struct {
	cfg Config

	mu        sync.Mutex
	checked   time.Time
	stamps    [3]fileStamp
	current   *tls.Config
	lastError string
}

type fileStamp struct {
	mod  time.Time
	size int64
}

// New reads the files once; an error here is an error at start.
func New(cfg Config) (*Loader, error) {
	if cfg.CertFile == "" || cfg.KeyFile == "" {
		return nil, errors.New("TLS needs both a certificate file and a key file")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.CheckEvery <= 0 {
		cfg.CheckEvery = time.Second
	}
	l := &Loader{cfg: cfg}
	stamps, err := l.stat()
	if err != nil {
		return nil, err
	}
	tc, err := l.load()
	if err != nil {
		return nil, err
	}
	l.current, l.stamps, l.checked = tc, stamps, time.Now()
	return l, nil
}

// TLSConfig is the listener's configuration: TLS 1.2 at least (with the
// AEAD suites of CipherSuites only), and the current material picked per
// handshake.
func (l *Loader) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		CipherSuites: CipherSuites,
		NextProtos:   nextProtos,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return l.Current(), nil
		},
	}
}

// ClientAuth reports whether clients must present a certificate.
func (l *Loader) ClientAuth() bool { return l.cfg.ClientCAFile != "" }

// Current returns the configuration of the files as they are now, reading
// them again if they changed since the last look.
func (l *Loader) Current() *tls.Config {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if now.Sub(l.checked) < l.cfg.CheckEvery {
		return l.current
	}
	l.checked = now
	stamps, err := l.stat()
	if err == nil && stamps == l.stamps {
		return l.current
	}
	if err == nil {
		var tc *tls.Config
		if tc, err = l.load(); err == nil {
			l.current, l.stamps, l.lastError = tc, stamps, ""
			l.cfg.Logger.Info("TLS certificate reloaded", "cert_file", l.cfg.CertFile, "not_after", notAfter(tc))
			return l.current
		}
	}
	if msg := err.Error(); msg != l.lastError {
		l.lastError = msg
		l.cfg.Logger.Error("TLS files changed but could not be loaded; still serving the previous certificate", "error", err)
	}
	return l.current
}

func (l *Loader) files() []string {
	return []string{l.cfg.CertFile, l.cfg.KeyFile, l.cfg.ClientCAFile}
}

func (l *Loader) stat() ([3]fileStamp, error) {
	var out [3]fileStamp
	for i, name := range l.files() {
		if name == "" {
			continue
		}
		fi, err := os.Stat(name)
		if err != nil {
			return out, fmt.Errorf("TLS file: %w", err)
		}
		out[i] = fileStamp{mod: fi.ModTime(), size: fi.Size()}
	}
	return out, nil
}

func (l *Loader) load() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(l.cfg.CertFile, l.cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("load TLS certificate %s and key %s: %w", l.cfg.CertFile, l.cfg.KeyFile, err)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, CipherSuites: CipherSuites, Certificates: []tls.Certificate{cert}, NextProtos: nextProtos}
	if l.cfg.ClientCAFile != "" {
		pem, err := os.ReadFile(l.cfg.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("read client CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("client CA file %s holds no PEM certificate", l.cfg.ClientCAFile)
		}
		tc.ClientCAs, tc.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

func notAfter(tc *tls.Config) string {
	if len(tc.Certificates) == 0 || tc.Certificates[0].Leaf == nil {
		return ""
	}
	return tc.Certificates[0].Leaf.NotAfter.UTC().Format(time.RFC3339)
}
