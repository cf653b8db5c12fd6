package broker

import (
	"sync"
	"sync/atomic"
	"time"
)

// Not every report is believed for everyone. A workspace does not own its
// organization's keys or the platform's hosted keys: what one workspace's
// calls got from the provider with such a key (a 401 of its own making, a
// 429 it alone earned) must not take the key away from the others on that
// workspace's word. And a refusal that keybroker's proxy observed says only
// that the provider refused that call, whose endpoint and body the caller
// (a sandbox) chose — an OpenAI restricted key answers 401 to an endpoint
// outside its scopes — not that the key is dead. So such a report puts the
// key out of a chain on this replica only (localCooldowns): a report about
// a shared key out of the reporting workspace's chain, a refusal the proxy
// observed out of the calling token's; and a refusal makes keybroker check
// the key with the provider itself before it marks it failing for
// everyone (verifier, in verify.go).

// maxLocalCooldowns bounds the (subject, key) pairs held. A workspace
// holds at most one per shared key it may be served (its organization's
// and the hosted pools'), a calling token one per key it may be served;
// past the bound, forgotten entries go first, then arbitrary ones: a pair
// forgotten only means that workspace or token may be served the key again
// and report it again.
const maxLocalCooldowns = 10_000

// coolSubject is whose chain a local cooldown leaves the key out of: a
// workspace's (caller ""), or one calling token's within a workspace.
type coolSubject struct {
	workspace, caller string
}

// localCooldowns holds, per subject and key, until when the key is out of
// that subject's chain on this replica.
type localCooldowns struct {
	mu sync.RWMutex
	// n is how many pairs are held: a resolve reads it without the lock,
	// and looks no further while it is 0.
	n         atomic.Int64
	bySubject map[coolSubject]map[KeyRef]*localCooldown
	// perWorkspace counts the pairs of each workspace (its own and its
	// callers'); index holds the workspaces it names, read without the
	// lock: a resolve for a workspace that holds none takes no lock (every
	// resolve reads the cooldowns, and a lock shared by all of them would
	// be contended as soon as any workspace holds one).
	perWorkspace map[string]int
	index        sync.Map // workspace → struct{}
	max          int
}

type localCooldown struct {
	// until (unix nanoseconds) ends the cooldown; forgetAt, later, ends
	// the memory of it (the backoff of the next one).
	until, forgetAt int64
	// strikes counts the consecutive cooldowns (the backoff).
	strikes int
}

func newLocalCooldowns(max int) *localCooldowns {
	return &localCooldowns{bySubject: map[coolSubject]map[KeyRef]*localCooldown{}, perWorkspace: map[string]int{}, max: max}
}

// of returns until when each key out of the chain of workspace, or of
// caller's calls for workspace (caller "": the workspace's alone), ends its
// cooldown (unix nanoseconds; passed ends included), or nil when there is
// none: a copy, taken once per resolve.
func (c *localCooldowns) of(workspace, caller string) map[KeyRef]int64 {
	if c.n.Load() == 0 {
		return nil
	}
	if _, ok := c.index.Load(workspace); !ok {
		return nil
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	ws := c.bySubject[coolSubject{workspace: workspace}]
	var mine map[KeyRef]*localCooldown
	if caller != "" {
		mine = c.bySubject[coolSubject{workspace: workspace, caller: caller}]
	}
	if len(ws) == 0 && len(mine) == 0 {
		return nil
	}
	out := make(map[KeyRef]int64, len(ws)+len(mine))
	for ref, e := range ws {
		out[ref] = e.until
	}
	for ref, e := range mine {
		out[ref] = max(out[ref], e.until)
	}
	return out
}

// cool puts ref out of s's chain for d(strikes) (strikes: the consecutive
// cooldowns before this one), unless it is out already. It returns when
// the cooldown ends and whether this call started it.
func (c *localCooldowns) cool(s coolSubject, ref KeyRef, now time.Time, d func(strikes int) time.Duration) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ns := now.UnixNano()
	m := c.bySubject[s]
	e := m[ref]
	if e != nil && ns < e.until {
		return time.Unix(0, e.until), false
	}
	strikes := 0
	if e != nil && ns < e.forgetAt {
		strikes = e.strikes
	}
	if e == nil {
		c.makeRoom(ns)
		m = c.bySubject[s] // makeRoom may have dropped it
		if m == nil {
			m = map[KeyRef]*localCooldown{}
			c.bySubject[s] = m
		}
		e = &localCooldown{}
		m[ref] = e
		c.n.Add(1)
		if c.perWorkspace[s.workspace]++; c.perWorkspace[s.workspace] == 1 {
			c.index.Store(s.workspace, struct{}{})
		}
	}
	until := now.Add(d(strikes))
	e.until, e.forgetAt, e.strikes = until.UnixNano(), until.Add(CooldownMax).UnixNano(), strikes+1
	return until, true
}

// clear ends s's cooldown of ref and its backoff ("ok"); it says whether
// there was one.
func (c *localCooldowns) clear(s coolSubject, ref KeyRef) bool {
	if c.n.Load() == 0 {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.bySubject[s]
	if m[ref] == nil {
		return false
	}
	c.remove(s, m, ref)
	return true
}

// remove drops one pair; the caller holds the lock.
func (c *localCooldowns) remove(s coolSubject, m map[KeyRef]*localCooldown, ref KeyRef) {
	delete(m, ref)
	if len(m) == 0 {
		delete(c.bySubject, s)
	}
	c.n.Add(-1)
	if c.perWorkspace[s.workspace]--; c.perWorkspace[s.workspace] <= 0 {
		delete(c.perWorkspace, s.workspace)
		c.index.Delete(s.workspace)
	}
}

// makeRoom keeps the pairs under the bound before one is added: the
// forgotten ones go first, then any; the caller holds the lock.
func (c *localCooldowns) makeRoom(ns int64) {
	if int(c.n.Load()) < c.max {
		return
	}
	for s, m := range c.bySubject {
		for ref, e := range m {
			if ns >= e.forgetAt {
				c.remove(s, m, ref)
			}
		}
	}
	for s, m := range c.bySubject {
		if int(c.n.Load()) < c.max {
			return
		}
		for ref := range m {
			c.remove(s, m, ref)
			if int(c.n.Load()) < c.max {
				return
			}
		}
	}
}
