package assertion_test

import (
	"strings"
	"testing"

	"github.com/keybroker/keybroker/auth/assertion"
)

func TestAssertionRegistrationValidate(t *testing.T) {
	good := assertion.Registration{
		ID: "acme-ai", Issuer: "https://platform.example", JWKSURL: "https://platform.example/.well-known/jwks.json",
		Workspaces: []string{"ws1"}, Organizations: []string{"acme"},
	}
	if err := good.Validate(); err != nil {
		t.Fatalf("good registration: %v", err)
	}
	loop := good
	loop.Issuer, loop.JWKSURL = "http://127.0.0.1:8080", "http://localhost:8080/jwks"
	if err := loop.Validate(); err != nil {
		t.Fatalf("loopback http: %v", err)
	}
	file := good
	file.JWKSURL, file.JWKSFile = "", "/etc/keybroker/platform.jwks"
	if err := file.Validate(); err != nil {
		t.Fatalf("JWKS file: %v", err)
	}
	cases := []struct {
		name string
		edit func(r *assertion.Registration)
		want string
	}{
		{"bad id", func(r *assertion.Registration) { r.ID = "Acme AI" }, "registration id must match"},
		{"no issuer", func(r *assertion.Registration) { r.Issuer = "" }, "issuer: required"},
		{"http issuer", func(r *assertion.Registration) { r.Issuer = "http://platform.example" }, "issuer: must be https"},
		{"relative issuer", func(r *assertion.Registration) { r.Issuer = "platform.example" }, "issuer: must be an absolute URL"},
		{"issuer with user", func(r *assertion.Registration) { r.Issuer = "https://u:p@platform.example" }, "user information"},
		{"http JWKS", func(r *assertion.Registration) { r.JWKSURL = "http://platform.example/jwks" }, "JWKS URL: must be https"},
		{"ftp JWKS", func(r *assertion.Registration) { r.JWKSURL = "ftp://platform.example/jwks" }, "JWKS URL: must be https"},
		{"both JWKS", func(r *assertion.Registration) { r.JWKSFile = "/x" }, "exclusive"},
		{"no JWKS", func(r *assertion.Registration) { r.JWKSURL = "" }, "one of JWKS URL and JWKS file is required"},
		{"wildcard workspace", func(r *assertion.Registration) { r.Workspaces = []string{"*"} }, "no wildcard"},
		{"wildcard organization", func(r *assertion.Registration) { r.Organizations = []string{"acme-*"} }, "no wildcard"},
		{"bad workspace id", func(r *assertion.Registration) { r.Workspaces = []string{"WS1"} }, "workspace id must match"},
		{"twice", func(r *assertion.Registration) { r.Workspaces = []string{"ws1", "ws1"} }, "listed twice"},
		{"speaks for nothing", func(r *assertion.Registration) { r.Workspaces, r.Organizations = nil, nil }, "speaks for no workspace"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := good
			tc.edit(&r)
			err := r.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
}

func TestAssertionNewRefusesBadConfig(t *testing.T) {
	reg := assertion.Registration{ID: "p1", Issuer: "https://p.example", JWKSURL: "https://p.example/jwks", Workspaces: []string{"ws1"}}
	other := reg
	other.ID = "p2"
	cases := []struct {
		name string
		cfg  assertion.Config
		want string
	}{
		{"no audience", assertion.Config{Registrations: []assertion.Registration{reg}}, "audience is required"},
		{"duplicate id", assertion.Config{Audience: "keybroker", Registrations: []assertion.Registration{reg, reg}}, "registered twice"},
		{"duplicate issuer", assertion.Config{Audience: "keybroker", Registrations: []assertion.Registration{reg, other}}, "already p1's"},
		{"lifetime over 5 min", assertion.Config{Audience: "keybroker", Bounds: assertion.Bounds{MaxLifetime: 6 * 60e9}}, "max lifetime"},
		{"skew over 1 min", assertion.Config{Audience: "keybroker", Bounds: assertion.Bounds{ClockSkew: 61e9}}, "clock skew"},
		{"invalid registration", assertion.Config{Audience: "keybroker", Registrations: []assertion.Registration{{ID: "p"}}}, "platform registration p"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := assertion.New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
}

func TestAssertionActor(t *testing.T) {
	cases := []struct {
		a    assertion.Assertion
		want string
	}{
		{assertion.Assertion{Platform: "p", Subject: "u1"}, "platform:p/u1"},
		{assertion.Assertion{Platform: "p", Subject: "u1", Name: "Ada"}, "platform:p/u1 (Ada)"},
		{assertion.Assertion{Platform: "p", Subject: "u1", Email: "a@x.test"}, "platform:p/u1 (<a@x.test>)"},
		{assertion.Assertion{Platform: "p", Subject: "u1", Name: "Ada\n\x1b[31mroot\u202e", Email: "a@x.test\r\n"}, "platform:p/u1 (Ada[31mroot <a@x.test>)"},
	}
	for _, tc := range cases {
		if got := tc.a.Actor(); got != tc.want {
			t.Errorf("Actor() = %q, want %q", got, tc.want)
		}
	}
	long := assertion.Assertion{Platform: "p", Subject: strings.Repeat("s", 300), Name: strings.Repeat("é", 300), Email: strings.Repeat("e", 300)}
	got := long.Actor()
	if len(got) > assertion.MaxActorLen || !strings.HasPrefix(got, "platform:p/") {
		t.Fatalf("long actor: %d bytes %q", len(got), got)
	}
	if strings.ContainsRune(got, '\uFFFD') {
		t.Fatalf("long actor cut inside a rune: %q", got)
	}
}
