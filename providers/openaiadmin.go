package providers

import (
	"context"
	"net/http"
	"net/url"
)

// OpenAI's admin API: an organization's admin key (sk-admin-...) and the
// project whose service accounts keybroker creates and deletes. Rotation
// creates a project service account (whose API key the answer shows
// once) and deletes the old one after a grace period; revocation deletes
// the key's service account.

// KindOpenAIAdmin is the credential kind of OpenAI's admin API.
const KindOpenAIAdmin = "openai_admin"

// The fields of admin credentials.
const (
	FieldAdminKey  = "adminKey"
	FieldProjectID = "projectId"
)

func init() {
	register(Provider{ID: "openai-admin", DisplayName: "OpenAI admin API", AdminOf: "openai",
		Credential: Schema{Kind: KindOpenAIAdmin, Fields: []Field{
			{Name: FieldAdminKey, VaultField: "admin_key", Secret: true, Required: true, Label: "Admin key",
				Hint: `an organization admin key: starts with "sk-admin-", 20 to 256 characters`, rule: ptrRule(tokenRule(20, 256, "sk-admin-"))},
			{Name: FieldProjectID, VaultField: "project_id", Required: true, Label: "Project ID",
				Hint: `the project whose service accounts keybroker creates: "proj_" and 1 to 64 letters, digits and '_'`,
				rule: &keyRule{prefixes: []string{"proj_"}, minLen: 6, maxLen: 69, allowed: isAlnumOrUnderscore, allowedText: "letters, digits and '_'"}},
		}},
		Authorize: fieldHeader(FieldAdminKey, "Authorization", "Bearer "),
		Check:     CheckSpec{BaseURL: "https://api.openai.com", Path: "/v1/organization/projects?limit=1"},
		Dev:       New(KindOpenAIAdmin, map[string]string{FieldAdminKey: "sk-admin-FAKE-dev-key-not-real", FieldProjectID: "proj_FAKEdev"}),
	})
}

// CodeProjectNotFound is the code of an *AdminError saying the admin
// credential's project is not one its admin key's organization owns.
const CodeProjectNotFound = "project_not_found"

func ptrRule(r keyRule) *keyRule { return &r }

func isAlnumOrUnderscore(c byte) bool { return isAlnum(c) || c == '_' }

// openAIKeyAdmin rotates and revokes OpenAI keys that are project
// service-account keys.
var openAIKeyAdmin = &KeyAdmin{Provider: "openai-admin", Create: openAICreate, Find: openAIFind, Revoke: openAIRevoke, Revokes: "delete", Locate: openAILocate,
	CheckAdmin:  openAICheckAdmin,
	KeyIDPrefix: "svc_acct_"}

func openAIAuth(admin Credential) func(*http.Request) {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+admin.Field(FieldAdminKey)) }
}

func serviceAccounts(admin Credential) string {
	return "/v1/organization/projects/" + url.PathEscape(admin.Field(FieldProjectID)) + "/service_accounts"
}

func openAICreate(ctx context.Context, env AdminEnv, admin Credential, name string) (CreatedKey, error) {
	var out struct {
		ID     string `json:"id"`
		APIKey struct {
			Value string `json:"value"`
		} `json:"api_key"`
	}
	if err := adminCall(ctx, env, "create a service account", http.MethodPost, serviceAccounts(admin), map[string]string{"name": name},
		openAIAuth(admin), &out); err != nil {
		return CreatedKey{}, err
	}
	if out.ID == "" || out.APIKey.Value == "" {
		return CreatedKey{}, &AdminError{Op: "create a service account", Status: http.StatusOK, Code: "no_key_in_answer"}
	}
	return CreatedKey{ID: out.ID, Credential: APIKey(out.APIKey.Value)}, nil
}

func openAIFind(ctx context.Context, env AdminEnv, admin Credential, name string) ([]string, error) {
	var ids []string
	after := ""
	for range 100 {
		q := "?limit=100"
		if after != "" {
			q += "&after=" + url.QueryEscape(after)
		}
		var page struct {
			Data []struct {
				ID   string `json:"id"`
				Name string `json:"name"`
			} `json:"data"`
			HasMore bool   `json:"has_more"`
			LastID  string `json:"last_id"`
		}
		if err := adminCall(ctx, env, "list service accounts", http.MethodGet, serviceAccounts(admin)+q, nil, openAIAuth(admin), &page); err != nil {
			return nil, err
		}
		for _, sa := range page.Data {
			if sa.Name == name {
				ids = append(ids, sa.ID)
			}
		}
		if !page.HasMore || page.LastID == "" {
			break
		}
		after = page.LastID
	}
	return ids, nil
}

// openAICheckAdmin reads the admin credential's project with its admin
// key: a project of another organization (or none) is 404, which OpenAI
// would later answer to every call about its service accounts.
func openAICheckAdmin(ctx context.Context, env AdminEnv, admin Credential) error {
	err := adminCall(ctx, env, "read the project", http.MethodGet, "/v1/organization/projects/"+url.PathEscape(admin.Field(FieldProjectID)),
		nil, openAIAuth(admin), nil)
	if isAdminNotFound(err) {
		return &AdminError{Op: "read the project", Status: http.StatusNotFound, Code: CodeProjectNotFound}
	}
	return err
}

// openAILocate reads the service account of id in the admin
// credential's project: 404 for an account of another project (or
// organization), or a project the admin key's organization does not own.
func openAILocate(ctx context.Context, env AdminEnv, admin Credential, id string) (string, error) {
	return "", adminCall(ctx, env, "read a service account", http.MethodGet, serviceAccounts(admin)+"/"+url.PathEscape(id), nil, openAIAuth(admin), nil)
}

// openAIRevoke deletes the service account of id. OpenAI answers 404 both
// for an account deleted already and for a project the admin key cannot
// see: a 404 is "gone" only when the project is the admin key's
// organization's (read back); else it is the admin credential's fault
// (project_not_found), never a revocation.
func openAIRevoke(ctx context.Context, env AdminEnv, admin Credential, id string) (Revoked, error) {
	err := adminCall(ctx, env, "delete a service account", http.MethodDelete, serviceAccounts(admin)+"/"+url.PathEscape(id), nil, openAIAuth(admin), nil)
	if isAdminNotFound(err) {
		perr := adminCall(ctx, env, "read the project", http.MethodGet, "/v1/organization/projects/"+url.PathEscape(admin.Field(FieldProjectID)),
			nil, openAIAuth(admin), nil)
		if isAdminNotFound(perr) {
			return Revoked{}, &AdminError{Op: "delete a service account", Status: http.StatusNotFound, Code: CodeProjectNotFound}
		}
		if perr != nil {
			return Revoked{}, perr
		}
		return Revoked{Action: "deleted", AlreadyGone: true}, nil
	}
	if err != nil {
		return Revoked{}, err
	}
	return Revoked{Action: "deleted"}, nil
}
