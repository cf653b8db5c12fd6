package store

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Store is keybroker's handle on PostgreSQL.
type Store struct {
	pool *pgxpool.Pool
}

// Open prepares a pool for the database at url. It connects lazily, so that
// keybroker starts (and resolves keys) while PostgreSQL is down; use Ping to
// check. Errors never include the connection string's password.
func Open(ctx context.Context, url string, opts ...Option) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx's parse errors leave the password out.
		return nil, fmt.Errorf("parse database URL: %w", err)
	}
	cfg.ConnConfig.Tracer = queryTracer{}
	for _, o := range opts {
		if err := o(cfg); err != nil {
			return nil, err
		}
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open database pool: %w", err)
	}
	return &Store{pool: pool}, nil
}

// Option changes how Open connects.
type Option func(*pgxpool.Config) error

// PasswordFile reads the database password from a file (a mounted
// Kubernetes Secret, say) instead of the URL, so that it shows in no
// process listing; one trailing newline is ignored. Without it, pgx also
// honours PGPASSWORD and PGPASSFILE.
func PasswordFile(path string) Option {
	return func(cfg *pgxpool.Config) error {
		if path == "" {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("read the database password file: %w", err)
		}
		pw := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
		if pw == "" {
			return fmt.Errorf("the database password file %s is empty", path)
		}
		cfg.ConnConfig.Password = pw
		return nil
	}
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
