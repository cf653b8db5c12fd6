package store

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/keybroker/keybroker/broker"
)

// codeUniqueViolation is PostgreSQL's SQLSTATE for a unique violation.
const codeUniqueViolation = "23505"

// ErrDuplicate: a row with the same unique value exists. It wraps the
// broker's ErrConflict, so a unique violation is a conflict (409), not an
// unavailable database (503).
var ErrDuplicate = fmt.Errorf("store: duplicate: %w", broker.ErrConflict)

// classify translates PostgreSQL's answers that are about the data rather
// than the database being unable to answer: a unique violation becomes
// ErrDuplicate. Other errors pass unchanged.
func classify(err error) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return err
	}
	if pgErr.Code == codeUniqueViolation {
		return fmt.Errorf("%w: %w", ErrDuplicate, err)
	}
	return err
}
