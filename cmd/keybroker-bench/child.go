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
	"net/http/httputil"
	"net/http/pprof"
	"net/url"
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
	// pprofURL is where the child serves /debug/pprof (keybroker with
	// --pprof-addr); empty: nowhere.
	pprofURL string
	cmd      *exec.Cmd
	done     chan struct{}
}

// readyTimeout is how long startChild waits for a child to be ready (the
// scale scenario's replica over a platform's keys takes longer).
var readyTimeout = 60 * time.Second

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

	waitCtx, cancel := context.WithTimeout(ctx, readyTimeout)
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
	// envUpstream and envUpstreamKey are where the Go proxy floor forwards
	// to and the key it adds (proxyfloor only).
	envUpstream    = "KEYBROKER_BENCH_UPSTREAM"
	envUpstreamKey = "KEYBROKER_BENCH_UPSTREAM_KEY"
	// envPprof is where a floor serves /debug/pprof when its scenario is
	// profiled (--cpuprofile-scenario 0 or 10d); empty: nowhere.
	envPprof = "KEYBROKER_BENCH_PPROF_ADDR"
)

// serveReference runs a reference server until SIGTERM: scenario 0
// (floor), 3b (platform, with DATABASE_URL), 10a's provider stand-in
// (provider) or 10d's Go proxy floor (proxyfloor).
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
	case "proxyfloor":
		target, err := url.Parse(os.Getenv(envUpstream))
		if err != nil || target.Host == "" {
			return fmt.Errorf("%s: %q is not a URL", envUpstream, os.Getenv(envUpstream))
		}
		h = proxyFloorHandler(target, os.Getenv(envUpstreamKey))
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
	if addr := os.Getenv(envPprof); addr != "" {
		// On its own listener, as keybroker's: the profiled server's
		// routes stay what they are.
		profiles := http.NewServeMux()
		profiles.HandleFunc("/debug/pprof/profile", pprof.Profile)
		go func() { _ = http.ListenAndServe(addr, profiles) }()
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

// proxyFloorHandler is scenario 10d, the floor of any credential proxy
// written in Go: net/http/httputil's ReverseProxy to target that replaces
// the caller's Authorization with the provider key, and nothing else (no
// token check, no lookup, no record). Its transport keeps as many idle
// connections to the provider as keybroker's proxy may.
func proxyFloorHandler(target *url.URL, key string) http.Handler {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConns, transport.MaxIdleConnsPerHost = 1024, 1024
	return &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Header.Set("Authorization", "Bearer "+key)
		},
		Transport: transport,
	}
}

// processCPU is the CPU time (user and system) of the process pid so far,
// with its waited-for children's when children is set; 0 where /proc
// cannot be read.
func processCPU(pid int, children bool) time.Duration {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0
	}
	fields := strings.Fields(string(stat[i+1:]))
	if len(fields) < 15 {
		return 0
	}
	var ticks int64
	last := 12
	if children {
		last = 14 // cutime and cstime follow utime and stime
	}
	for _, f := range fields[11 : last+1] {
		v, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / clockTicks
}

// postgresCPU is the CPU time PostgreSQL has used so far: its postmaster
// (pid) with the backends it reaped, and the backends alive now.
func postgresCPU(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	total := processCPU(pid, true)
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return total
	}
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		if f := strings.Fields(string(stat[i+1:])); len(f) > 2 && f[1] == strconv.Itoa(pid) {
			total += processCPU(child, false)
		}
	}
	return total
}

// cpuTime is the CPU time (user and system) the child has used so far,
// from /proc; 0 where that cannot be read.
func (c *child) cpuTime() time.Duration {
	if c == nil || c.cmd == nil || c.cmd.Process == nil {
		return 0
	}
	return processCPU(c.cmd.Process.Pid, false)
}

// clockTicks is Linux's USER_HZ, the unit of /proc's CPU times (100 on
// every architecture Go supports).
const clockTicks = 100
