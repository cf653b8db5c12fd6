package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"
)

// The burst scenario (--burst, docs/benchmarks.md): writes through one
// admin replica as fast as it takes them, while other replicas serve
// resolves; the lag from a write's acknowledgement to every replica
// serving it, the resolve latency on those replicas during the burst, and
// the stale serves after it.

// burstOptions size the scenario.
type burstOptions struct {
	writes, tracked, replicas, writers int
}

// burstReport is the scenario's result.
type burstReport struct {
	Machine      string  `json:"machine"`
	Writes       int     `json:"writes"`
	Tracked      int     `json:"tracked_writes"`
	Replicas     int     `json:"serving_replicas"`
	WriteSeconds float64 `json:"burst_s"`
	WritesPerS   float64 `json:"writes_per_s"`
	// Lag: from a tracked write's acknowledgement to the moment every
	// serving replica answered its new key.
	LagP50 time.Duration `json:"lag_p50_ns"`
	LagP99 time.Duration `json:"lag_p99_ns"`
	LagMax time.Duration `json:"lag_max_ns"`
	// ResolveBefore and ResolveDuring: the serving replicas' resolves of
	// the tracked keys before the burst and during it.
	ResolveBefore loadResult `json:"resolve_before"`
	ResolveDuring loadResult `json:"resolve_during"`
	// StaleAfter counts the resolves, after the burst, that answered an
	// older key than the one last acknowledged (every tracked key on every
	// replica).
	StaleAfter int `json:"stale_after"`
}

// runBurst runs the burst scenario.
func runBurst(ctx context.Context, o options, bo burstOptions, log *slog.Logger) (*burstReport, error) {
	srv, err := startServers(ctx, o, "burst", log)
	if err != nil {
		return nil, err
	}
	defer srv.close()
	dbURL, _, resolverToken, operatorToken, err := srv.database(ctx, "kb_burst")
	if err != nil {
		return nil, err
	}
	start := func(name, mode string) (*child, error) {
		c, _, err := srv.serve(ctx, o, name, mode, dbURL)
		return c, err
	}
	admin, err := start("keybroker-admin", "admin")
	if err != nil {
		return nil, err
	}
	var serving []*child
	for i := range bo.replicas {
		c, err := start(fmt.Sprintf("keybroker-resolver-%d", i), "resolver")
		if err != nil {
			return nil, err
		}
		serving = append(serving, c)
	}
	client := httpClient(bo.writers + 4*bo.replicas + 64)

	// The tracked keys: written, then resolved on every serving replica
	// (so that each holds the pool and a cached answer, which the burst's
	// replacements must displace).
	tracked := make([]atomic.Value, bo.tracked) // the key last acknowledged
	trackedWS := func(i int) string { return fmt.Sprintf("ws-t%05d", i) }
	log.Info("writing the tracked keys", "keys", bo.tracked)
	for i := range bo.tracked {
		k := keyFor("openai")
		if err := putKey(ctx, client, admin.url, operatorToken, trackedWS(i), k); err != nil {
			return nil, err
		}
		tracked[i].Store(k)
	}
	for _, c := range serving {
		for i := range bo.tracked {
			if got, err := resolveKey(ctx, client, c.url, resolverToken, trackedWS(i)); err != nil || got != tracked[i].Load().(string) {
				return nil, fmt.Errorf("warm %s: %v", c.name, err)
			}
		}
	}
	rep := &burstReport{Machine: machine(), Writes: bo.writes, Tracked: bo.tracked, Replicas: bo.replicas}

	// Resolves of the tracked keys on the serving replicas, before the
	// burst and during it.
	resolveLoad := func(d time.Duration, stop <-chan struct{}) loadResult {
		var mu sync.Mutex
		var lat []time.Duration
		errs := 0
		var wg sync.WaitGroup
		t0 := time.Now()
		for w := range 4 * bo.replicas {
			c := serving[w%bo.replicas]
			wg.Go(func() {
				r := rand.New(rand.NewPCG(uint64(w), 7))
				for {
					select {
					case <-stop:
						return
					default:
					}
					if d > 0 && time.Since(t0) > d {
						return
					}
					t := time.Now()
					_, err := resolveKey(ctx, client, c.url, resolverToken, trackedWS(r.IntN(bo.tracked)))
					el := time.Since(t)
					mu.Lock()
					if err != nil {
						errs++
					} else {
						lat = append(lat, el)
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		slices.Sort(lat)
		res := loadResult{Requests: len(lat), Errors: errs, Seconds: time.Since(t0).Seconds()}
		if len(lat) > 0 {
			res.Throughput = float64(len(lat)) / res.Seconds
			res.P50, res.P90, res.P99 = lat[len(lat)*50/100], lat[len(lat)*90/100], lat[len(lat)*99/100]
		}
		return res
	}
	log.Info("resolves before the burst")
	rep.ResolveBefore = resolveLoad(o.duration, nil)

	log.Info("the burst", "writes", bo.writes, "writers", bo.writers)
	stopLoad := make(chan struct{})
	during := make(chan loadResult, 1)
	go func() { during <- resolveLoad(0, stopLoad) }()
	var lagMu sync.Mutex
	var lags []time.Duration
	var checkers sync.WaitGroup
	every := max(1, bo.writes/max(1, bo.tracked))
	var next atomic.Int64
	var writeErr atomic.Value
	var writers sync.WaitGroup
	t0 := time.Now()
	for range bo.writers {
		writers.Go(func() {
			for i := int(next.Add(1) - 1); i < bo.writes; i = int(next.Add(1) - 1) {
				if i%every == 0 && i/every < bo.tracked {
					j := i / every
					k := keyFor("openai")
					if err := putKey(ctx, client, admin.url, operatorToken, trackedWS(j), k); err != nil {
						writeErr.Store(err)
						return
					}
					acked := time.Now()
					tracked[j].Store(k)
					checkers.Go(func() {
						lag, err := awaitServed(ctx, client, serving, resolverToken, trackedWS(j), k, acked)
						if err != nil {
							writeErr.Store(err)
							return
						}
						lagMu.Lock()
						lags = append(lags, lag)
						lagMu.Unlock()
					})
					continue
				}
				if err := putKey(ctx, client, admin.url, operatorToken, fmt.Sprintf("ws-b%06d", i), keyFor("openai")); err != nil {
					writeErr.Store(err)
					return
				}
			}
		})
	}
	writers.Wait()
	rep.WriteSeconds = time.Since(t0).Seconds()
	rep.WritesPerS = float64(bo.writes) / rep.WriteSeconds
	checkers.Wait()
	close(stopLoad)
	rep.ResolveDuring = <-during
	if err, ok := writeErr.Load().(error); ok {
		return nil, err
	}
	slices.Sort(lags)
	if len(lags) > 0 {
		rep.LagP50, rep.LagP99, rep.LagMax = lags[len(lags)*50/100], lags[len(lags)*99/100], lags[len(lags)-1]
	}
	// After the burst: every tracked key, on every replica, is the last
	// one acknowledged.
	for _, c := range serving {
		for i := range bo.tracked {
			got, err := resolveKey(ctx, client, c.url, resolverToken, trackedWS(i))
			if err != nil {
				return nil, err
			}
			if got != tracked[i].Load().(string) {
				rep.StaleAfter++
			}
		}
	}
	return rep, nil
}

// putKey writes ws's OpenAI key through the admin API.
func putKey(ctx context.Context, c *http.Client, base, token, ws, key string) error {
	body, _ := json.Marshal(map[string]string{"apiKey": key})
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, base+"/v1/workspaces/"+ws+"/keys/openai", strings.NewReader(string(body)))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("write %s's key: %w", ws, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("write %s's key: %d %s", ws, resp.StatusCode, b)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return nil
}

// resolveKey resolves ws's OpenAI key on a replica.
func resolveKey(ctx context.Context, c *http.Client, base, token, ws string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/resolve", strings.NewReader(`{"workspace":"`+ws+`","provider":"openai"}`))
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var ans struct {
		APIKey string `json:"apiKey"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&ans) != nil {
		return "", fmt.Errorf("resolve %s: %d", ws, resp.StatusCode)
	}
	return ans.APIKey, nil
}

// awaitServed polls every replica until each answers key for ws, and
// returns the time from acked until the last did.
func awaitServed(ctx context.Context, c *http.Client, replicas []*child, token, ws, key string, acked time.Time) (time.Duration, error) {
	var last time.Time
	for _, r := range replicas {
		deadline := acked.Add(time.Minute)
		for {
			got, err := resolveKey(ctx, c, r.url, token, ws)
			if err == nil && got == key {
				if now := time.Now(); now.After(last) {
					last = now
				}
				break
			}
			if time.Now().After(deadline) {
				return 0, fmt.Errorf("%s did not serve %s's new key within a minute of its acknowledgement", r.name, ws)
			}
			time.Sleep(time.Millisecond)
		}
	}
	return last.Sub(acked), nil
}

func (r *burstReport) print(w io.Writer) {
	fmt.Fprintf(w, "keybroker-bench --burst: %d key writes through one admin replica (%d tracked), %d replicas serving resolves\nmachine: %s\n\n",
		r.Writes, r.Tracked, r.Replicas, r.Machine)
	fmt.Fprintf(w, "burst: %.1f s, %.0f writes/s\n", r.WriteSeconds, r.WritesPerS)
	fmt.Fprintf(w, "lag from a write's acknowledgement to every replica serving it: p50 %s, p99 %s, max %s (goal: p99 <= 1 s)\n", ms(r.LagP50), ms(r.LagP99), ms(r.LagMax))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "resolves on the serving replicas\treq/s\tp50\tp99\terrors\t")
	fmt.Fprintf(tw, "before the burst\t%.0f\t%s\t%s\t%d\t\n", r.ResolveBefore.Throughput, ms(r.ResolveBefore.P50), ms(r.ResolveBefore.P99), r.ResolveBefore.Errors)
	fmt.Fprintf(tw, "during the burst\t%.0f\t%s\t%s\t%d\t\n", r.ResolveDuring.Throughput, ms(r.ResolveDuring.P50), ms(r.ResolveDuring.P99), r.ResolveDuring.Errors)
	tw.Flush()
	fmt.Fprintf(w, "stale serves after the burst (every tracked key on every replica): %d (goal: 0)\n", r.StaleAfter)
}
