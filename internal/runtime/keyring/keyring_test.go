package keyring

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

const secretA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
const secretB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

func TestParseRefusesBadRingsWithoutShowingSecrets(t *testing.T) {
	for _, s := range []string{"nocolon", "Bad:" + secretA, "a:short", "a:" + secretA + ",a:" + secretB, "a:" + secretA + ",", "toolongidtoolongid:" + secretA} {
		_, err := Parse(s)
		if err == nil {
			t.Fatalf("Parse(%q) accepted", s)
		}
		if strings.Contains(err.Error(), secretA) || strings.Contains(err.Error(), secretB) {
			t.Fatalf("error shows a secret: %v", err)
		}
	}
	if r, err := Parse("  "); err != nil || !r.Empty() {
		t.Fatalf("empty ring: %v %v", r, err)
	}
}

func TestRotationWithOverlap(t *testing.T) {
	old, err := Parse("k1:" + secretA)
	if err != nil {
		t.Fatal(err)
	}
	id, mac, err := old.Sign([]byte("row"))
	if err != nil || id != "k1" {
		t.Fatalf("sign: %s %v", id, err)
	}
	// Step 1 of a rotation: k2 added after k1 everywhere; step 2: k2 first.
	both, _ := Parse("k2:" + secretB + ",k1:" + secretA)
	if err := both.Verify(id, []byte("row"), mac); err != nil {
		t.Fatalf("the old key's signature no longer verifies during the overlap: %v", err)
	}
	id2, mac2, _ := both.Sign([]byte("row"))
	if id2 != "k2" {
		t.Fatalf("signed with %s, want the first key k2", id2)
	}
	if err := old.Verify(id2, []byte("row"), mac2); !errors.Is(err, ErrNoKey) {
		t.Fatalf("a ring without k2 verified its signature: %v", err)
	}
	// Step 3: k1 dropped: what it signed stops verifying.
	only, _ := Parse("k2:" + secretB)
	if err := only.Verify(id, []byte("row"), mac); err == nil {
		t.Fatal("a dropped key's signature still verifies")
	}
	if err := both.Verify(id, []byte("other row"), mac); err == nil {
		t.Fatal("a signature verified another message")
	}
	if err := both.Verify(id, []byte("row"), mac[:8]); err == nil {
		t.Fatal("a tag of 8 bytes was accepted")
	}
	if err := both.Verify(id, []byte("row"), append(mac, 0)); err == nil {
		t.Fatal("a tag longer than the MAC was accepted")
	}
}

func TestDerivedPurposesDoNotCrossVerify(t *testing.T) {
	r, _ := Parse("k1:" + secretA)
	a, b := r.Derive("token rows"), r.Derive("proxy tokens")
	id, mac, _ := a.Sign([]byte("x"))
	if err := b.Verify(id, []byte("x"), mac); err == nil {
		t.Fatal("a value signed for one purpose verified for another")
	}
	if err := r.Derive("token rows").Verify(id, []byte("x"), mac); err != nil {
		t.Fatalf("the same purpose derived twice disagrees: %v", err)
	}
}

func TestPrintingARingShowsNoSecret(t *testing.T) {
	r, _ := Parse("k1:" + secretA + ",k2:" + secretB)
	for _, s := range []string{fmt.Sprint(r), fmt.Sprintf("%v %+v %#v %s", r, r, r, r)} {
		if strings.Contains(s, "aaaa") || strings.Contains(s, "bbbb") {
			t.Fatalf("printed a secret: %s", s)
		}
	}
}

func TestGenerateMakesAUsableRing(t *testing.T) {
	s, err := Generate("dev")
	if err != nil {
		t.Fatal(err)
	}
	r, err := Parse(s)
	if err != nil || r.CurrentID() != "dev" {
		t.Fatalf("generated ring %v does not parse: %v", r, err)
	}
}
