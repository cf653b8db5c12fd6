package devenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// PostgresServer is a running throwaway PostgreSQL cluster on a free loopback
// port. The superuser is "postgres" with a random password (scram-sha-256);
// Unix sockets are off.
type PostgresServer struct {
	// URL connects as the superuser to the "postgres" database.
	URL string
	// Dir holds the cluster's data and log; it is removed by Stop.
	Dir string

	proc *process
	// To start the same cluster again after Halt.
	bin  string
	args []string
	cred *syscall.Credential
	port int
}

// PostgresOptions tune a cluster for its use.
type PostgresOptions struct {
	// Durable keeps fsync on. Off by default: a throwaway cluster that dies
	// with its process has nothing worth flushing, and tests run faster.
	Durable bool
}

// StartPostgres runs initdb in a fresh folder and starts the server, waiting
// until it accepts connections. When the caller is root, both run as the
// unprivileged user "nobody" (PostgreSQL refuses to run as root).
func StartPostgres(ctx context.Context, opts PostgresOptions) (*PostgresServer, error) {
	initdb, err := findPostgresTool("initdb")
	if err != nil {
		return nil, err
	}
	postgres, err := findPostgresTool("postgres")
	if err != nil {
		return nil, err
	}
	cred, err := unprivilegedCredential()
	if err != nil {
		return nil, err
	}
	dir, err := NewRunDir("postgres")
	if err != nil {
		return nil, err
	}
	s, err := startPostgres(ctx, dir, initdb, postgres, cred, opts)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

func startPostgres(ctx context.Context, dir, initdb, postgres string, cred *syscall.Credential, opts PostgresOptions) (*PostgresServer, error) {
	password, err := randomHex(16)
	if err != nil {
		return nil, err
	}
	dataDir := filepath.Join(dir, "data")
	pwFile := filepath.Join(dir, "pwfile")
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("write postgres password file: %w", err)
	}
	if cred != nil {
		if err := chownTree(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, err
		}
	}
	init := exec.CommandContext(ctx, initdb, "-D", dataDir, "-U", "postgres",
		"--auth=scram-sha-256", "--pwfile="+pwFile, "-E", "UTF8", "--locale=C", "--no-sync")
	if err := runAs(init, cred); err != nil {
		return nil, fmt.Errorf("initdb: %w", err)
	}
	os.Remove(pwFile)

	args := []string{"-D", dataDir,
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories=",
		"-c", "max_connections=200",
	}
	if !opts.Durable {
		args = append(args, "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	}
	var lastErr error
	for range 3 { // a free port can be taken between finding and binding it
		port, err := FreePort(false)
		if err != nil {
			return nil, err
		}
		cmd := exec.Command(postgres, append(args, "-p", strconv.Itoa(port))...)
		cmd.Dir = dir
		// SIGQUIT is PostgreSQL's immediate shutdown: the postmaster takes
		// its backends down with it.
		cmd.SysProcAttr = childAttrs(syscall.SIGQUIT, cred)
		proc, err := startProcess("postgres", cmd, filepath.Join(dir, "postgres.log"))
		if err != nil {
			return nil, err
		}
		s := &PostgresServer{
			URL: (&url.URL{
				Scheme:   "postgres",
				User:     url.UserPassword("postgres", password),
				Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
				Path:     "/postgres",
				RawQuery: "sslmode=disable",
			}).String(),
			Dir:  dir,
			proc: proc,
			bin:  postgres, args: append(args, "-p", strconv.Itoa(port)), cred: cred, port: port,
		}
		if lastErr = s.waitReady(ctx, port, 0); lastErr == nil {
			return s, nil
		}
		proc.terminate(syscall.SIGQUIT, 5*time.Second)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, lastErr
}

// waitReady waits until the server accepts TCP connections and has written
// its "ready to accept connections" line.
func (s *PostgresServer) waitReady(ctx context.Context, port int, logOffset int64) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			if b, err := os.ReadFile(s.proc.logPath); err == nil && int64(len(b)) > logOffset &&
				bytes.Contains(b[logOffset:], []byte("database system is ready to accept connections")) {
				return nil
			}
		}
		select {
		case <-s.proc.done:
			return fmt.Errorf("postgres exited during start-up (%v); its log ends with:\n%s", s.proc.waitErr, s.proc.logTail())
		case <-ctx.Done():
			return fmt.Errorf("postgres on %s not ready: %w; its log ends with:\n%s", addr, ctx.Err(), s.proc.logTail())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Pid is the postmaster's process id.
func (s *PostgresServer) Pid() int { return s.proc.cmd.Process.Pid }

// Exited is closed when the postmaster has ended.
func (s *PostgresServer) Exited() <-chan struct{} { return s.proc.done }

// Halt shuts the server down (fast shutdown) and keeps its data, as an
// outage would; Start brings it back.
func (s *PostgresServer) Halt() { s.proc.terminate(syscall.SIGINT, 30*time.Second) }

// Start starts a halted server again on the same port and data.
func (s *PostgresServer) Start(ctx context.Context) error {
	var offset int64
	if fi, err := os.Stat(s.proc.logPath); err == nil {
		offset = fi.Size()
	}
	cmd := exec.Command(s.bin, s.args...)
	cmd.Dir = s.Dir
	cmd.SysProcAttr = childAttrs(syscall.SIGQUIT, s.cred)
	proc, err := startProcess("postgres", cmd, s.proc.logPath)
	if err != nil {
		return err
	}
	s.proc = proc
	return s.waitReady(ctx, s.port, offset)
}

// Stop shuts the cluster down (fast shutdown: open sessions are ended) and
// removes its folder. It is safe to call more than once.
func (s *PostgresServer) Stop() {
	s.proc.terminate(syscall.SIGINT, 30*time.Second)
	os.RemoveAll(s.Dir)
}

// unprivilegedCredential returns nil when the caller is not root, and the
// credential of user "nobody" when it is.
func unprivilegedCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		return nil, fmt.Errorf("running as root, PostgreSQL needs an unprivileged user: look up nobody: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
}

func chownTree(dir string, uid, gid int) error {
	return filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if err := os.Lchown(p, uid, gid); err != nil {
			return fmt.Errorf("hand %s to the postgres user: %w", p, err)
		}
		return nil
	})
}

// EnsureLoginRole creates (or resets the password of) a login role on the
// server at adminURL, and returns adminURL with that role and password in
// place of the admin's: how `keybroker dev` and the tests connect as
// keybroker's runtime role while migrations run as the owner.
func EnsureLoginRole(ctx context.Context, adminURL, role, password string) (string, error) {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return "", fmt.Errorf("connect to PostgreSQL to create role %s: %w", role, err)
	}
	defer conn.Close(ctx)
	ident := pgx.Identifier{role}.Sanitize()
	// CREATE ROLE takes no parameters; the password is quoted as a literal.
	lit := "'" + strings.ReplaceAll(password, "'", "''") + "'"
	if _, err := conn.Exec(ctx, "CREATE ROLE "+ident+" LOGIN PASSWORD "+lit); err != nil {
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "42710" { // duplicate_object
			return "", fmt.Errorf("create role %s: %w", role, err)
		}
		if _, err := conn.Exec(ctx, "ALTER ROLE "+ident+" LOGIN PASSWORD "+lit); err != nil {
			return "", fmt.Errorf("set the password of role %s: %w", role, err)
		}
	}
	u, err := url.Parse(adminURL)
	if err != nil {
		return "", errors.New("parse the PostgreSQL admin URL")
	}
	u.User = url.UserPassword(role, password)
	return u.String(), nil
}
