package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// httpTarget is one HTTP scenario, independent of the load generator that
// drives it: a request per key.
type httpTarget struct {
	base    string            // http://host:port
	method  string            // GET or POST
	paths   []string          // one per key
	bodies  []string          // one per key; nil for GET
	headers map[string]string // the same on every request
}

// wrkScript drives wrk: it reads the requests and the order in which to
// send them from files the benchmark wrote, pre-formats every request once,
// and prints one result line for the benchmark to parse.
const wrkScript = `
local dir = %q
local method = %q
local headers = %s
local reqs, seq, pos = {}, {}, 1
local threads = 0

function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end

function init(args)
  for line in io.lines(dir .. "/requests.txt") do
    local path, body = line:match("^([^\t]*)\t(.*)$")
    if body == "" then body = nil end
    reqs[#reqs + 1] = wrk.format(method, path, headers, body)
  end
  for line in io.lines(dir .. "/sequence.txt") do
    seq[#seq + 1] = tonumber(line) + 1
  end
  pos = (id * 7919) %% #seq + 1
end

function request()
  local r = reqs[seq[pos]]
  pos = pos + 1
  if pos > #seq then pos = 1 end
  return r
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRKRESULT %%d %%d %%d %%d %%d %%d\n", summary.requests, summary.duration,
    e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end
`

// wrkAvailable reports whether wrk is on PATH.
func wrkAvailable() bool {
	_, err := exec.LookPath("wrk")
	return err == nil
}

// sequence is the order of keys a load run asks for: n picks from pick.
func sequence(pick keyPicker, n int) []int {
	r := rand.New(rand.NewPCG(7, 42))
	seq := make([]int, n)
	for i := range seq {
		seq[i] = pick(r)
	}
	return seq
}

// runWrk drives target with wrk for duration over concurrency keep-alive
// connections, asking for keys in the order of seq.
func runWrk(ctx context.Context, dir string, t httpTarget, seq []int, concurrency, threads int, duration time.Duration) (loadResult, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return loadResult{}, err
	}
	var reqs bytes.Buffer
	for i, p := range t.paths {
		body := ""
		if t.bodies != nil {
			body = t.bodies[i]
		}
		if strings.ContainsAny(p+body, "\t\n") {
			return loadResult{}, fmt.Errorf("request %d has a tab or newline", i)
		}
		reqs.WriteString(p + "\t" + body + "\n")
	}
	var order bytes.Buffer
	for _, k := range seq {
		order.WriteString(strconv.Itoa(k) + "\n")
	}
	var hdr strings.Builder
	hdr.WriteString("{")
	for k, v := range t.headers {
		fmt.Fprintf(&hdr, "[%q] = %q, ", k, v)
	}
	hdr.WriteString("}")
	script := fmt.Sprintf(wrkScript, dir, t.method, hdr.String())
	for name, data := range map[string][]byte{"requests.txt": reqs.Bytes(), "sequence.txt": order.Bytes(), "script.lua": []byte(script)} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return loadResult{}, err
		}
	}
	threads = max(1, min(threads, concurrency))
	cmd := exec.CommandContext(ctx, "wrk", "-t", strconv.Itoa(threads), "-c", strconv.Itoa(concurrency),
		"-d", strconv.Itoa(max(1, int(duration.Seconds())))+"s", "--timeout", "10s",
		"-s", filepath.Join(dir, "script.lua"), t.base)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return loadResult{}, fmt.Errorf("wrk: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return parseWrk(out)
}

// parseWrk reads the result line the script prints: requests, duration (µs),
// errors, p50, p90, p99 (µs).
func parseWrk(out []byte) (loadResult, error) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 7 || f[0] != "WRKRESULT" {
			continue
		}
		var v [6]int64
		for i := range v {
			n, err := strconv.ParseInt(f[i+1], 10, 64)
			if err != nil {
				return loadResult{}, fmt.Errorf("wrk result %q: %w", sc.Text(), err)
			}
			v[i] = n
		}
		secs := float64(v[1]) / 1e6
		ok := int(v[0] - v[2])
		return loadResult{
			Requests: ok, Errors: int(v[2]), Seconds: secs, Throughput: float64(ok) / secs,
			P50: time.Duration(v[3]) * time.Microsecond, P90: time.Duration(v[4]) * time.Microsecond, P99: time.Duration(v[5]) * time.Microsecond,
		}, nil
	}
	return loadResult{}, fmt.Errorf("wrk printed no result: %s", strings.TrimSpace(string(out)))
}
