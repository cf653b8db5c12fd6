package testenv

import (
	"net/http"
	"strings"
	"sync/atomic"
)

// VaultReadCounter is an http.RoundTripper that counts reads of KV v2 key
// material (GETs on a data/ path) on their way to Vault: tests and the
// benchmark use it to prove how many Vault reads a load caused.
type VaultReadCounter struct {
	base  http.RoundTripper
	reads atomic.Int64
}

// NewVaultReadCounter counts over a clone of http.DefaultTransport.
func NewVaultReadCounter() *VaultReadCounter {
	return &VaultReadCounter{base: http.DefaultTransport.(*http.Transport).Clone()}
}

// RoundTrip implements http.RoundTripper.
func (c *VaultReadCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/data/") {
		c.reads.Add(1)
	}
	return c.base.RoundTrip(r)
}

// Reads is the number of key-material reads so far.
func (c *VaultReadCounter) Reads() int64 { return c.reads.Load() }
