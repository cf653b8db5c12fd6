package broker_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/keybroker/keybroker/auth"
	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/internal/fixtures/testenv"
	"github.com/keybroker/keybroker/internal/fixtures/testenv/kbtest"
	"github.com/keybroker/keybroker/providers"
)

func withLinks(c *broker.Config) { c.Links = auth.NewLinkSigner(kbtest.RowKeys().Admin) }

// An organization link gives a workspace's resolver tokens the
// organization's keys, so the review tried to write one with the admin
// pods' database role: keybroker follows only links it signed. A link
// written by hand, or carrying another workspace's signature, is ignored by
// every replica (and by the admin API, which shows it unlinked); an
// operator's link through keybroker is followed.
func TestOrganizationLinksWrittenWithADatabaseRoleAreNotFollowed(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, withLinks)
	org, tenant, member := "victim-"+testenv.RandomID(t), e.workspc, "member-"+testenv.RandomID(t)
	orgKey := newKey(t, "openai")
	if _, err := e.b.PutKey(ctx, broker.PutKeyRequest{Actor: broker.Actor{Subject: "operator"}, Ref: broker.OrganizationKey(org, "openai", broker.DefaultKeyID), Credential: providers.APIKey(orgKey)}); err != nil {
		t.Fatal(err)
	}
	// A genuine member, linked by an operator through keybroker.
	if _, err := e.b.PutSettings(ctx, broker.SettingsRequest{Actor: broker.Actor{Subject: "operator"}, Workspace: member, Organization: &org, MayLink: true}); err != nil {
		t.Fatal(err)
	}
	if r, err := e.b.Resolve(ctx, broker.ResolveRequest{Workspace: member, Provider: "openai"}); err != nil || r.APIKey() != orgKey {
		t.Fatalf("the member does not inherit the organization's key: %v", err)
	}

	runtime, err := pgx.Connect(ctx, testenv.RuntimeURL(t, e.dbURL))
	if err != nil {
		t.Fatal(err)
	}
	defer runtime.Close(ctx)
	// The tenant has a settings row of its own (it changed a setting).
	on := true
	if _, err := e.b.PutSettings(ctx, broker.SettingsRequest{Actor: broker.Actor{Subject: "admin"}, Workspace: tenant, Inherit: &on}); err != nil {
		t.Fatal(err)
	}
	notFollowed := func(name, ws string) {
		t.Helper()
		for _, b := range []*broker.Broker{e.b, e.another(t, nil)} {
			if err := b.SettingsChanged(ctx, ws); err != nil {
				t.Fatal(err)
			}
			r, err := b.Resolve(ctx, broker.ResolveRequest{Workspace: ws, Provider: "openai"})
			if err == nil && r.APIKey() == orgKey {
				t.Fatalf("%s link: %s resolved the organization's key", name, ws)
			}
			if err != nil && !errors.Is(err, broker.ErrNoKey) {
				t.Fatalf("%s link: %v", name, err)
			}
		}
		if s, err := e.b.GetSettings(ctx, ws); err != nil || s.Organization != "" {
			t.Fatalf("%s link: the API shows %+v (%v), want it unlinked", name, s, err)
		}
	}
	for name, q := range map[string]string{
		"unsigned": `UPDATE workspace_settings SET organization = $2, link_key_id = '', link_signature = NULL WHERE workspace = $1`,
		"the member's signature": `UPDATE workspace_settings SET organization = $2, (link_key_id, link_signature) =
			(SELECT link_key_id, link_signature FROM workspace_settings WHERE workspace = '` + member + `') WHERE workspace = $1`,
	} {
		if _, err := runtime.Exec(ctx, q, tenant, org); err != nil {
			t.Fatalf("%s: the runtime role writes settings (the admin side does): %v", name, err)
		}
		notFollowed(name, tenant)
		linked, err := e.b.LinkedWorkspaces(ctx, org)
		if err != nil || len(linked) != 1 || linked[0].Workspace != member {
			t.Fatalf("%s link: the organization's workspaces are %+v (%v), want only the member", name, linked, err)
		}
	}
	// A row may not even be created linked.
	if _, err := runtime.Exec(ctx, `INSERT INTO workspace_settings (workspace, organization, updated_by) VALUES ('fresh-ws', $1, 'x')`, org); err == nil {
		t.Fatal("the runtime role created a linked settings row")
	}

	// The review's replay: the member's signed link, saved before an
	// operator unlinked it, put back. Its signature names an older
	// generation, and the generation never goes back.
	var keyID string
	var sig []byte
	var gen int64
	if err := runtime.QueryRow(ctx, `SELECT link_key_id, link_signature, link_generation FROM workspace_settings WHERE workspace = $1`, member).Scan(&keyID, &sig, &gen); err != nil {
		t.Fatal(err)
	}
	none := ""
	if _, err := e.b.PutSettings(ctx, broker.SettingsRequest{Actor: broker.Actor{Subject: "operator"}, Workspace: member, Organization: &none, MayLink: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := runtime.Exec(ctx, `UPDATE workspace_settings SET organization = $2, link_key_id = $3, link_signature = $4 WHERE workspace = $1`,
		member, org, keyID, sig); err != nil {
		t.Fatal(err)
	}
	notFollowed("a replayed", member)
	if _, err := runtime.Exec(ctx, `UPDATE workspace_settings SET link_generation = $2 WHERE workspace = $1`, member, gen); err == nil {
		t.Fatal("the runtime role set a link generation back")
	}
	if _, err := runtime.Exec(ctx, `DELETE FROM workspace_settings WHERE workspace = $1`, member); err == nil {
		t.Fatal("the runtime role deleted a settings row (and with it the generation)")
	}
}

// A workspace admin's writes cannot undo an operator's unlink that
// happened while they were in flight (the review's race: every write read
// the settings outside its transaction and wrote them all back).
func TestAnUnlinkIsNotUndoneByConcurrentSettingsWrites(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, withLinks)
	org, ws := "org-"+testenv.RandomID(t), e.workspc
	if _, err := e.b.PutSettings(ctx, broker.SettingsRequest{Actor: broker.Actor{Subject: "operator"}, Workspace: ws, Organization: &org, MayLink: true}); err != nil {
		t.Fatal(err)
	}
	on := true
	start, stop := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := e.b.PutSettings(ctx, broker.SettingsRequest{Actor: broker.Actor{Subject: "admin"}, Workspace: ws, Inherit: &on}); err != nil {
					t.Errorf("an admin's write: %v", err)
					return
				}
			}
		}()
	}
	close(start)
	none := ""
	for range 5 {
		if _, err := e.b.PutSettings(ctx, broker.SettingsRequest{Actor: broker.Actor{Subject: "operator"}, Workspace: ws, Organization: &none, MayLink: true}); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if s, err := e.b.GetSettings(ctx, ws); err != nil || s.Organization != "" {
		t.Fatalf("after the operator's unlink and the admin's writes: %+v (%v), want no organization", s, err)
	}
}
