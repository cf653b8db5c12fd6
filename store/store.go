package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Store is keybroker's handle on PostgreSQL.
type Store struct {
	pool *pgxpool.Pool
}

// Open prepares a pool for the database at url. It connects lazily, so that
// keybroker starts (and resolves keys) while PostgreSQL is down; use Ping to
// check. Errors never include the connection string's password.
func Open(ctx context.Context, url string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx's parse errors leave the password out.
		return nil, fmt.Errorf("parse database URL: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open database pool: %w", err)
	}
	return &Store{pool: pool}, nil
}

// Ping checks that PostgreSQL answers a query.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("ping database: %w", err)
	}
	return nil
}

// Close closes every connection of the pool.
func (s *Store) Close() { s.pool.Close() }
