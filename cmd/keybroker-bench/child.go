package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/keybroker/keybroker/internal/fixtures/devenv"
)

// child is a server the benchmark runs as its own process, as production
// runs it: keybroker (`keybroker serve`) and the two HTTP references. Apart
// from the load generator, nothing shares its runtime.
type child struct {
	name, url, logPath string
	// metricsURL is where the child serves /metrics (keybroker: its own
	// metrics listener); empty: on url.
	metricsURL string
	cmd        *exec.Cmd
	done       chan struct{}
}

// startChild runs bin with args and env (both given the listen address it
// is to use) and waits until GET readyPath answers 200.
func startChild(ctx context.Context, dir, name, bin string, setup func(listen string) (args, env []string), readyPath string) (*child, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	listen := ln.Addr().String()
	ln.Close()
	args, env := setup(listen)
	c := &child{name: name, url: "http://" + listen, logPath: filepath.Join(dir, name+".log"), done: make(chan struct{})}
	logFile, err := os.Create(c.logPath)
	if err != nil {
		return nil, err
	}
	c.cmd = exec.Command(bin, args...)
	c.cmd.Env = append(os.Environ(), env...)
	c.cmd.Stdout, c.cmd.Stderr = logFile, logFile
	// Dies with the benchmark, even when the benchmark is killed.
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := c.cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { _ = c.cmd.Wait(); logFile.Close(); close(c.done) }()

	waitCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := devenv.WaitHTTP(waitCtx, c.url+readyPath, nil, c.done); err != nil {
		c.stop()
		if errors.Is(err, devenv.ErrExited) {
			return nil, fmt.Errorf("%s exited while starting: %s", name, c.logTail())
		}
		return nil, fmt.Errorf("%s not ready: %w: %s", name, err, c.logTail())
	}
	return c, nil
}

// stop asks the process to end and kills it after 10 s.
func (c *child) stop() {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

func (c *child) logTail() string {
	b, _ := os.ReadFile(c.logPath)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-5):], " | ")
}

// metricSum adds up the samples of a Prometheus counter (name plus label
// prefix) on the child's /metrics.
func (c *child) metricSum(prefix string) (float64, error) {
	base := c.url
	if c.metricsURL != "" {
		base = c.metricsURL
	}
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	found := false
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return 0, fmt.Errorf("metric line %q: %w", line, err)
		}
		sum, found = sum+v, true
	}
	if !found {
		return 0, nil
	}
	return sum, sc.Err()
}

// The environment of a reference server (the benchmark re-executes itself).
const (
	envReference = "KEYBROKER_BENCH_REFERENCE" // floor or platform
	envListen    = "KEYBROKER_BENCH_LISTEN"
	envAESKey    = "KEYBROKER_BENCH_AES_KEY" // hex; platform only
	envToken     = "KEYBROKER_BENCH_TOKEN"   // platform only
	envPoolSize  = "KEYBROKER_BENCH_POOL_SIZE"
	// envAnswerSize is the size of keybroker's resolve answer, which the
	// floor answers as many bytes as (floor only).
	envAnswerSize = "KEYBROKER_BENCH_ANSWER_SIZE"
)

// serveReference runs a reference server until SIGTERM: scenario 0 (floor)
// or scenario 3b (platform, with DATABASE_URL).
func serveReference(kind string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	var h http.Handler
	switch kind {
	case "floor":
		size, err := strconv.Atoi(os.Getenv(envAnswerSize))
		if err != nil {
			return fmt.Errorf("%s: %w", envAnswerSize, err)
		}
		h = floorHandler(size)
	case "provider":
		h = providerHandler()
	case "platform":
		key, err := hex.DecodeString(os.Getenv(envAESKey))
		if err != nil {
			return fmt.Errorf("%s: %w", envAESKey, err)
		}
		pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL")+"&pool_max_conns="+os.Getenv(envPoolSize))
		if err != nil {
			return err
		}
		defer pool.Close()
		p, err := newPlatformStore(ctx, pool, key)
		if err != nil {
			return err
		}
		h = p.handler(os.Getenv(envToken))
	default:
		return fmt.Errorf("unknown reference %q", kind)
	}
	mux := http.NewServeMux()
	mux.Handle("/", h)
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	srv := &http.Server{Addr: os.Getenv(envListen), Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	slog.Info("reference serving", "kind", kind, "addr", srv.Addr)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// cpuTime is the CPU time (user and system) the child has used so far,
// from /proc; 0 where that cannot be read.
func (c *child) cpuTime() time.Duration {
	if c == nil || c.cmd == nil || c.cmd.Process == nil {
		return 0
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// The fields after the command's name, which is in parentheses and
	// may hold spaces: utime and stime are the 12th and 13th of them.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0
	}
	fields := strings.Fields(string(stat[i+1:]))
	if len(fields) < 13 {
		return 0
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0
	}
	return time.Duration(utime+stime) * time.Second / clockTicks
}

// clockTicks is Linux's USER_HZ, the unit of /proc's CPU times (100 on
// every architecture Go supports).
const clockTicks = 100
