package tlsfiles_test

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/keybroker/keybroker/internal/fixtures/testenv"
	"github.com/keybroker/keybroker/internal/fixtures/testenv/testpki"
	"github.com/keybroker/keybroker/internal/runtime/tlsfiles"
)

// serve runs an HTTPS server on loopback with the loader's configuration.
func serve(t *testing.T, l *tlsfiles.Loader) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.PeerCertificates) > 0 {
			w.Header().Set("X-Client", r.TLS.PeerCertificates[0].Subject.CommonName)
		}
		_, _ = w.Write([]byte("ok"))
	}))
	srv.TLS = l.TLSConfig()
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// handshake connects with cfg and returns the serial of the server's
// certificate.
func handshake(addr string, cfg *tls.Config) (string, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	// With TLS 1.3 a refused client certificate shows on the first read.
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte("GET / HTTP/1.0\r\n\r\n")); err != nil {
		return "", err
	}
	buf := make([]byte, 64)
	if _, err := conn.Read(buf); err != nil {
		return "", err
	}
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.String(), nil
}

func TestMutualTLSRequiresAClientCertificateOfTheCA(t *testing.T) {
	ca := testpki.NewCA(t, "keybroker test CA")
	other := testpki.NewCA(t, "someone else's CA")
	pair := ca.Server("keybroker")
	l, err := tlsfiles.New(tlsfiles.Config{CertFile: pair.CertFile, KeyFile: pair.KeyFile, ClientCAFile: ca.CertFile})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, l)

	if _, err := handshake(addr, &tls.Config{RootCAs: ca.Pool()}); err == nil {
		t.Fatal("a client without a certificate completed a request")
	}
	stranger := other.Client("stranger")
	if _, err := handshake(addr, &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{stranger.TLS}}); err == nil {
		t.Fatal("a client certificate of another CA was accepted")
	}
	resolver := ca.Client("resolver")
	if _, err := handshake(addr, &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{resolver.TLS}}); err != nil {
		t.Fatalf("a client certificate of the CA: %v", err)
	}
	// TLS 1.1 is refused; the server's minimum is 1.2.
	if _, err := handshake(addr, &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{resolver.TLS},
		MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}); err == nil {
		t.Fatal("a TLS 1.1 handshake succeeded")
	}
}

func TestCertificateIsReloadedWhenTheFilesChange(t *testing.T) {
	ca := testpki.NewCA(t, "keybroker test CA")
	pair := ca.Server("keybroker")
	logs := &testenv.SyncBuffer{}
	l, err := tlsfiles.New(tlsfiles.Config{CertFile: pair.CertFile, KeyFile: pair.KeyFile, CheckEvery: 10 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, l)
	cfg := &tls.Config{RootCAs: ca.Pool()}
	first, err := handshake(addr, cfg)
	if err != nil || first != pair.Serial.String() {
		t.Fatalf("first handshake: serial %s, %v", first, err)
	}

	// A broken file (half a rotation) keeps the old certificate serving.
	if err := os.WriteFile(pair.CertFile, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	if got, err := handshake(addr, cfg); err != nil || got != first {
		t.Fatalf("after a broken write: serial %s, %v; want the old certificate %s", got, err, first)
	}

	rotated := ca.ServerInto(pair, "keybroker")
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := handshake(addr, cfg)
		if err == nil && got == rotated.Serial.String() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the rotated certificate %s was never served (last: %s, %v)", rotated.Serial, got, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "TLS certificate reloaded") || !strings.Contains(logs.String(), "still serving the previous certificate") {
		t.Fatalf("log does not tell the reload and the failed reload:\n%s", logs.String())
	}
}

func TestMissingOrMismatchedFilesFailAtStart(t *testing.T) {
	ca := testpki.NewCA(t, "keybroker test CA")
	a, b := ca.Server("a"), ca.Server("b")
	if _, err := tlsfiles.New(tlsfiles.Config{CertFile: a.CertFile, KeyFile: b.KeyFile}); err == nil {
		t.Fatal("a certificate with another certificate's key was accepted")
	}
	if _, err := tlsfiles.New(tlsfiles.Config{CertFile: a.CertFile, KeyFile: a.KeyFile + ".missing"}); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing key file: %v", err)
	}
	if _, err := tlsfiles.New(tlsfiles.Config{CertFile: a.CertFile, KeyFile: a.KeyFile, ClientCAFile: a.KeyFile}); err == nil ||
		!strings.Contains(err.Error(), "no PEM certificate") {
		t.Fatalf("a client CA file without certificates: %v", err)
	}
}

// TestTLS12AcceptsOnlyAEADSuitesWithForwardSecrecy: a client offering
// only a CBC suite (SHA-1 or SHA-256 MAC) or RSA key exchange gets no
// handshake; each AEAD ECDHE suite, and TLS 1.3, does.
func TestTLS12AcceptsOnlyAEADSuitesWithForwardSecrecy(t *testing.T) {
	ca := testpki.NewCA(t, "keybroker test CA")
	pair := ca.Server("keybroker")
	l, err := tlsfiles.New(tlsfiles.Config{CertFile: pair.CertFile, KeyFile: pair.KeyFile})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, l)
	tls12 := func(suite uint16) *tls.Config {
		return &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{suite}}
	}
	for _, suite := range []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256,
		tls.TLS_RSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_RSA_WITH_AES_128_CBC_SHA,
	} {
		if _, err := handshake(addr, tls12(suite)); err == nil {
			t.Errorf("a TLS 1.2 client offering only %s completed a request", tls.CipherSuiteName(suite))
		}
	}
	for _, suite := range []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	} {
		if _, err := handshake(addr, tls12(suite)); err != nil {
			t.Errorf("a TLS 1.2 client offering %s: %v", tls.CipherSuiteName(suite), err)
		}
	}
	if _, err := handshake(addr, &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS13}); err != nil {
		t.Errorf("TLS 1.3: %v", err)
	}
}
