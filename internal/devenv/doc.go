// Package devenv starts and stops the real servers keybroker runs against on
// one machine: a HashiCorp Vault dev server and a throwaway PostgreSQL
// cluster, each on a free loopback port, in a folder of its own that is
// removed when the server stops.
//
// It owns finding the binaries (built by scripts/tools.sh into
// $KEYBROKER_TOOLS_DIR/bin, default $HOME/.cache/keybroker/tools/bin, or
// installed from Debian for PostgreSQL), running PostgreSQL as an unprivileged
// user when the caller is root (the server refuses to run as root), and making
// sure no server outlives the process that started it: children get a
// parent-death signal, and folders left behind by a process that died are
// swept at the next start.
//
// `keybroker dev` links it, so it holds only what a development run needs;
// the test fixtures built on it (a Vault with storage that survives a
// restart, a Raft cluster, a read counter) live in internal/testenv. It is
// not used by `keybroker serve`: production Vault and Postgres are the
// operator's.
package devenv
