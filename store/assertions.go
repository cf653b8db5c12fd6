package store

import (
	"context"
	"crypto/sha256"
	"fmt"
	"time"
)

// FirstAssertionUse records the use of a platform's assertion, by its jti,
// until its expiry, and reports whether it is the first (the table is
// shared by every admin replica; see auth/assertion). Only the jti's
// SHA-256 is kept.
func (s *Store) FirstAssertionUse(ctx context.Context, platform, jti string, until time.Time) (bool, error) {
	sum := sha256.Sum256([]byte(jti))
	tag, err := s.pool.Exec(ctx,
		`INSERT INTO assertion_uses (platform, jti_hash, expires_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
		platform, sum[:], until)
	if err != nil {
		return false, fmt.Errorf("record the use of a platform assertion: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// PruneAssertionUses deletes the records of assertions expired before
// before, and returns how many.
func (s *Store) PruneAssertionUses(ctx context.Context, before time.Time) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM assertion_uses WHERE expires_at < $1`, before)
	if err != nil {
		return 0, fmt.Errorf("prune the uses of platform assertions: %w", err)
	}
	return tag.RowsAffected(), nil
}
