package app

import (
	"context"
	"time"
)

// assertionUsesPruneEvery is how often a replica deletes the records of
// expired platform assertions (every replica does; a delete of rows
// another replica deleted is harmless).
const assertionUsesPruneEvery = time.Minute

// pruneAssertionUses deletes the records of platform assertions and CLI ID
// tokens five minutes past their expiry until ctx ends.
func (a *App) pruneAssertionUses(ctx context.Context) {
	t := time.NewTicker(assertionUsesPruneEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if n, err := a.store.PruneAssertionUses(ctx); err != nil {
				a.log.WarnContext(ctx, "pruning the uses of platform assertions failed", "err", err)
			} else if n > 0 {
				a.log.DebugContext(ctx, "pruned the uses of platform assertions", "rows", n)
			}
		}
	}
}
