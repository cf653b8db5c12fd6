// Package session owns the server-side sessions of people signed in with
// OpenID Connect: the page's cookie and the CLI's session token both carry
// a session token, "kbs_" and 256 random bits (47 characters), of which
// PostgreSQL keeps only the SHA-256. It declares its Record and the Store
// it needs of PostgreSQL (package store implements it; session imports no
// store) and knows nothing of HTTP, cookies or the identity provider: the
// sign-in hands it a Person, the Grants mapped from the ID token's claims
// and where the session is opened (Via), and gets a token back.
//
// # What a row holds, and who may write it
//
// A row (table sessions) holds the session's id ("ses_" and 16 hex
// digits), the token's hash, the person (issuer, subject, and name and
// email for people to read), the grants with where each came from, via,
// and its times: created, last seen, idle expiry, absolute expiry, and the
// end with its reason. No token of the identity provider is stored.
//
// Like an API token's row, a session row is accepted only when keybroker
// signed it: an HMAC-SHA256 over the id, hash, person, grants, via and
// absolute expiry, under the admin ring (KEYBROKER_ADMIN_TOKEN_KEYS)
// derived for sessions — a subkey distinct from the token rows', so that a
// signature made for one never verifies for the other. The database never
// holds the key. A row inserted with a serving role's credentials (the
// admin pods' runtime role may INSERT, as keybroker itself does) is refused
// and reported once per row in the log ("refused a session whose row
// keybroker did not sign"). The runtime role may UPDATE only last_seen_at,
// idle_expires_at, ended_at and ended_reason, and a trigger refuses, for
// every role, a change to what the signature covers and any change to an
// ended session; the resolver role may not read the table at all.
//
// A key rotation needs no re-signing: keep the old key in the ring (after
// the new one) for the longest lifetime, 12 h by default, then drop it.
//
// # Timeouts
//
// A page session ends after 1 h without use and 12 h after sign-in; a
// CLI session after 4 h without use and 12 h after `keybroker login`
// (Options.Page, Options.CLI; a lifetime is at most 7 days). Twelve hours
// cover a working day with one sign-in (and a sign-in with the identity
// provider's own session is one click) while bounding a stolen cookie or
// session file to the same day whatever its holder does. An hour of idle
// ends a page left open in a browser; the CLI is used in bursts between
// other work, so its idle timeout is longer, but its token sits in a file
// and its lifetime is as short. Idle time is measured to within
// Options.TouchEvery (1 min): a session's last use is written at most once
// a minute.
//
// # Cost per request, and how fast an end is honoured
//
// Authenticate answers from memory a session read from PostgreSQL within
// Options.Fresh (10 s), as the API tokens' check does; otherwise it makes
// one statement: a SELECT by hash, or, when the last use is due to be
// written, an UPDATE ... RETURNING that reads the row as it writes it. So
// a busy page costs each replica at most one statement per session per
// 10 s, of which at most one a minute writes (the first read of a session
// on a replica may take a second statement to write its last use). A
// made-up token costs one SELECT per token per 30 s (Options.UnknownTTL).
// End and EndAllFor take effect at once on the replica that runs them and
// within Options.Fresh on the others (at once where the end is announced
// and the listener calls Forget). Idle and absolute expiry are checked on
// every request, from memory too.
//
// # What a stolen session token gets
//
// Whoever holds a session's token (a stolen cookie, a copied CLI session
// file) acts as that person with the grants mapped at sign-in, until the
// session is ended (sign-out, `EndAllFor` at a later sign-in that shows
// lost roles, an operator's end), idles out, or reaches its lifetime —
// 12 h at most by default. It does not get the person's identity provider
// session, nor a longer one: a session is never extended past its
// absolute expiry, and the token is useless against any other
// deployment's keys. The database's holder gets no token: only hashes.
// A holder of the runtime role's credentials cannot make a session (the
// row would be unsigned) nor widen one (the grants are signed and the
// column may not change), nor revive an ended one; it can keep an
// existing session from idling out, up to its absolute expiry, by moving
// idle_expires_at.
//
// # Secrets
//
// The token exists only in Create's answer. A Record has no token; its
// String, GoString and LogValue show neither the hash nor the signature,
// and its JSON leaves them out. Nothing here logs a token or a hash, or
// puts one in an error.
package session
