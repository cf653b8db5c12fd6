package devenv

import (
	"strings"
	"testing"
)

func TestRedactHidesTheSecretsTestsHandle(t *testing.T) {
	RegisterSecret("0123456789abcdef0123456789abcdef")
	in := strings.Join([]string{
		"KEYBROKER_TOKEN=kbt_Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6",
		"Authorization: Bearer kbt_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
		"token hvs.CAESIJ1a2b3c4d5e6f7g8h9i0j",
		"VAULT_TOKEN=0123456789abcdef0123456789abcdef",
		"root token 0123456789abcdef0123456789abcdef in a log",
		"postgres://postgres:s3cr3tpassw0rd@127.0.0.1:5432/db?sslmode=disable",
		`{"secret_id":"6f1c2b8e-1d2a-4c3b-9e8f-0a1b2c3d4e5f"}`,
		"host=db user=kb password=hunter2hunter2 dbname=x",
		"KEYBROKER_FINGERPRINT_PEPPER=pepper-pepper-pepper",
		"KEYBROKER_ADMIN_TOKEN_KEYS=dev:adminadminadminadminadminadmin0",
		"KEYBROKER_RESOLVER_KEYS=dev:resolverresolverresolverresolver",
		"sandbox token kbp_AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcY",
	}, "\n")
	out := Redact(in)
	for _, secret := range []string{"Zm9vYmFy", "abcdefghijklmnop", "CAESIJ1a2b3c", "0123456789abcdef0123456789abcdef",
		"s3cr3tpassw0rd", "6f1c2b8e-1d2a", "hunter2hunter2", "pepper-pepper", "adminadmin", "resolverresolver", "AQIDBAUGBwgJ"} {
		if strings.Contains(out, secret) {
			t.Errorf("Redact left %q in:\n%s", secret, out)
		}
	}
	// What is not secret stays readable.
	for _, keep := range []string{"KEYBROKER_TOKEN=", "postgres://postgres:", "@127.0.0.1:5432/db", "in a log", "dbname=x"} {
		if !strings.Contains(out, keep) {
			t.Errorf("Redact removed %q:\n%s", keep, out)
		}
	}
}
