package main

import (
	"context"
	"errors"
	"net/url"
	"regexp"

	"github.com/spf13/cobra"

	"github.com/keybroker/keybroker/store"
)

// databaseSetting is how every command finds PostgreSQL: DATABASE_URL (or
// --database-url without a password), and the password from
// --database-password-file, PGPASSWORD or PGPASSFILE. A password never has
// to appear on a command line, where every process listing shows it.
type databaseSetting struct {
	URL, PasswordFile string
}

func databaseFlags(f envFlags, d *databaseSetting) { databaseFlagsInto(f, &d.URL, &d.PasswordFile) }

func databaseFlagsInto(f envFlags, dbURL, passwordFile *string) {
	f.String(dbURL, "database-url", "DATABASE_URL", "", "PostgreSQL connection string; a password in it is refused on the command line (use the variable, the password file or PGPASSFILE)")
	f.String(passwordFile, "database-password-file", "KEYBROKER_DATABASE_PASSWORD_FILE", "", "file holding the database password")
}

var dsnPassword = regexp.MustCompile(`(^|\s)password\s*=`)

// check refuses what would leak: a password given in --database-url.
func (d databaseSetting) check(cmd *cobra.Command) error {
	if d.URL == "" {
		return errors.New("no database: set DATABASE_URL (or --database-url)")
	}
	return checkDatabaseURL(cmd, d.URL)
}

// checkDatabaseURL refuses a password given on the command line.
func checkDatabaseURL(cmd *cobra.Command, dbURL string) error {
	if f := cmd.Flags().Lookup("database-url"); f != nil && f.Changed && hasPassword(dbURL) {
		return errors.New("--database-url carries a password, which every process listing would show: " +
			"put the URL in DATABASE_URL, or the password in --database-password-file or PGPASSFILE")
	}
	return nil
}

func hasPassword(dsn string) bool {
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		_, set := u.User.Password()
		return set || u.Query().Has("password")
	}
	return dsnPassword.MatchString(dsn)
}

func (d databaseSetting) open(ctx context.Context, cmd *cobra.Command) (*store.Store, error) {
	if err := d.check(cmd); err != nil {
		return nil, err
	}
	return store.Open(ctx, d.URL, store.PasswordFile(d.PasswordFile))
}
