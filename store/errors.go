package store

import (
	"errors"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/keybroker/keybroker/broker"
)

// PostgreSQL error codes the store translates.
const (
	codeUniqueViolation = "23505"
	codeCheckViolation  = "23514"
)

// ErrDuplicate: a row with the same unique value exists. It wraps the
// broker's ErrConflict, so a unique violation is a conflict (409), not an
// unavailable database (503).
var ErrDuplicate = errors.Join(errors.New("store: duplicate"), broker.ErrConflict)

// ErrRejected: PostgreSQL's constraints refused a value (a CHECK). It is
// the broker's ErrInvalidRequest: callers validate first, so reaching it
// means their check and the schema disagree.
var ErrRejected = errors.Join(errors.New("store: value refused by a constraint"), broker.ErrInvalidRequest)

// classify translates PostgreSQL's answers that are about the data rather
// than the database being unable to answer: a unique violation becomes
// ErrDuplicate, a check violation ErrRejected. Other errors pass unchanged.
func classify(err error) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return err
	}
	switch pgErr.Code {
	case codeUniqueViolation:
		return errors.Join(ErrDuplicate, err)
	case codeCheckViolation:
		return errors.Join(ErrRejected, err)
	}
	return err
}
