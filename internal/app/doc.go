// Package app is keybroker's composition root: it turns a Config (what
// `keybroker serve` and `keybroker dev` were given) into a running server.
//
// It owns the decisions that cross packages: which Vault identities a mode
// holds (admin: the writer, which cannot read keys; resolver: the reader;
// all: both), how the --vault-auth choice becomes an api.AuthMethod, the
// Prometheus registry, the broker, the token service, the push-invalidation
// listener, the periodic reconciler with its advisory lock, readiness, the
// optional loopback pprof listener and the http.Server with its graceful
// shutdown.
//
// The commands in cmd/keybroker only parse flags into a Config and call
// New and Run (or Reconcile): no wiring lives there.
package app
