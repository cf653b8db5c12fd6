package store

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
)

// PostgreSQL refuses a notification payload of 8,000 bytes or more. An
// announcement names one key, token or session by ids of at most 63
// characters of [a-z0-9_-] (nothing JSON escapes): the largest possible one
// is far within the limit, so a burst of writes never needs payloads
// merged to fit (PostgreSQL itself folds identical notifications of one
// transaction).
func TestTheLargestAnnouncementFitsANotification(t *testing.T) {
	id := strings.Repeat("a", 63)
	inv := Invalidation{Scope: "organization", Workspace: id, Provider: id, KeyID: id, Version: math.MaxInt, TokenID: id,
		Settings: id, ProxyTokenID: id, SessionID: id}
	b, err := json.Marshal(inv)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) >= 8000/8 {
		t.Fatalf("the largest announcement is %d bytes; PostgreSQL's limit is 8,000, and it should stay far within", len(b))
	}
}
