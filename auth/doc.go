// Package auth owns keybroker's API bearer tokens: minting them (256 bits
// of randomness behind a recognisable "kbt_" prefix), storing only their
// SHA-256 hashes, authenticating a presented token, the roles a token
// carries (operator, admin and reader of listed workspaces, resolver) and
// the decision of what each role may do. It declares its records
// (TokenRecord, RevokedProxyToken) and the Store it needs of PostgreSQL;
// package store implements that Store, and auth imports no store.
//
// The plaintext of a token exists only in the answer to Create; nothing here
// logs it or puts it in an error.
package auth
