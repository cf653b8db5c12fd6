package broker

import (
	"sync"
	"sync/atomic"
	"time"
)

// A workspace does not own its organization's keys or the platform's
// hosted keys: what one workspace's calls got from the provider with such
// a key (a 401 of its own making, a 429 it alone earned) must not take the
// key away from the others on that workspace's word. So a report about a
// key outside the reporter's own pool puts the key out of the reporting
// workspace's chain only, on this replica (workspaceCooldowns), and a
// refusal makes keybroker check the key with the provider itself before it
// marks it failing for everyone (verifier, in verify.go).

// maxWorkspaceCooldowns bounds the (workspace, key) pairs held. A
// workspace can hold at most one per shared key it may be served (its
// organization's and the hosted pools'); past the bound, expired entries
// go first, then arbitrary ones: a pair forgotten only means that
// workspace may be served the key again and report it again.
const maxWorkspaceCooldowns = 10_000

// workspaceCooldowns holds, per workspace and shared key, until when the
// key is out of that workspace's chain on this replica.
type workspaceCooldowns struct {
	mu sync.RWMutex
	// n is how many pairs are held: a resolve reads it without the lock,
	// and looks no further while it is 0.
	n    atomic.Int64
	byWS map[string]map[KeyRef]*workspaceCooldown
	max  int
}

type workspaceCooldown struct {
	// until (unix nanoseconds) ends the cooldown; forgetAt, later, ends
	// the memory of it (the backoff of the next one).
	until, forgetAt int64
	// strikes counts the consecutive cooldowns (the backoff).
	strikes int
}

func newWorkspaceCooldowns(max int) *workspaceCooldowns {
	return &workspaceCooldowns{byWS: map[string]map[KeyRef]*workspaceCooldown{}, max: max}
}

// of returns until when each of workspace's cooled keys is out (unix
// nanoseconds; passed ends included), or nil when it has none: a copy,
// taken once per resolve.
func (c *workspaceCooldowns) of(workspace string) map[KeyRef]int64 {
	if c.n.Load() == 0 {
		return nil
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	m := c.byWS[workspace]
	if len(m) == 0 {
		return nil
	}
	out := make(map[KeyRef]int64, len(m))
	for ref, e := range m {
		out[ref] = e.until
	}
	return out
}

// cool puts ref out of workspace's chain for d(strikes) (strikes: the
// consecutive cooldowns before this one), unless it is out already. It
// returns when the cooldown ends and whether this call started it.
func (c *workspaceCooldowns) cool(workspace string, ref KeyRef, now time.Time, d func(strikes int) time.Duration) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ns := now.UnixNano()
	m := c.byWS[workspace]
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
		if m == nil {
			m = map[KeyRef]*workspaceCooldown{}
			c.byWS[workspace] = m
		}
		e = &workspaceCooldown{}
		m[ref] = e
		c.n.Add(1)
	}
	until := now.Add(d(strikes))
	e.until, e.forgetAt, e.strikes = until.UnixNano(), until.Add(CooldownMax).UnixNano(), strikes+1
	return until, true
}

// clear ends workspace's cooldown of ref and its backoff ("ok"); it says
// whether there was one.
func (c *workspaceCooldowns) clear(workspace string, ref KeyRef) bool {
	if c.n.Load() == 0 {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.byWS[workspace]
	if m[ref] == nil {
		return false
	}
	c.remove(workspace, m, ref)
	return true
}

// remove drops one pair; the caller holds the lock.
func (c *workspaceCooldowns) remove(workspace string, m map[KeyRef]*workspaceCooldown, ref KeyRef) {
	delete(m, ref)
	if len(m) == 0 {
		delete(c.byWS, workspace)
	}
	c.n.Add(-1)
}

// makeRoom keeps the pairs under the bound before one is added: the
// forgotten ones go first, then any; the caller holds the lock.
func (c *workspaceCooldowns) makeRoom(ns int64) {
	if int(c.n.Load()) < c.max {
		return
	}
	for ws, m := range c.byWS {
		for ref, e := range m {
			if ns >= e.forgetAt {
				c.remove(ws, m, ref)
			}
		}
	}
	for ws, m := range c.byWS {
		if int(c.n.Load()) < c.max {
			return
		}
		for ref := range m {
			c.remove(ws, m, ref)
			if int(c.n.Load()) < c.max {
				return
			}
		}
	}
}
