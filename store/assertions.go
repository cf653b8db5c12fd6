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
// SHA-256 is kept. A use whose expiry has passed by the database's clock
// is not recorded and is not the first: a replica whose clock runs behind
// cannot take a token another has forgotten.
func (s *Store) FirstAssertionUse(ctx context.Context, platform, jti string, until time.Time) (bool, error) {
	sum := sha256.Sum256([]byte(jti))
	tag, err := s.pool.Exec(ctx,
		`INSERT INTO assertion_uses (platform, jti_hash, expires_at) SELECT $1, $2, $3 WHERE $3::timestamptz > now() ON CONFLICT DO NOTHING`,
		platform, sum[:], until)
	if err != nil {
		return false, fmt.Errorf("record the use of a platform assertion: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// PruneAssertionUses deletes the records of uses that expired five minutes
// ago or more (by the database's clock, as its row-level security allows),
// and returns how many.
func (s *Store) PruneAssertionUses(ctx context.Context) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM assertion_uses WHERE expires_at < now() - interval '5 minutes'`)
	if err != nil {
		return 0, fmt.Errorf("prune the uses of platform assertions: %w", err)
	}
	return tag.RowsAffected(), nil
}
