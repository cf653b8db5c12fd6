package terraform

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/int64default"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/listdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/keybroker/keybroker/client"
	"github.com/keybroker/keybroker/ids"
)

// scopedModel is a key resource's state: the key's own attributes and its
// scope's (workspace_id, organization_id, or none for hosted).
type scopedModel interface {
	key() *keyModel
	scope() client.Scope
	setScopeID(id string)
}

func (m *workspaceKeyModel) key() *keyModel { return &m.keyModel }
func (m *workspaceKeyModel) scope() client.Scope {
	return client.Workspace(m.WorkspaceID.ValueString())
}
func (m *workspaceKeyModel) setScopeID(id string) { m.WorkspaceID = types.StringValue(id) }
func (m *organizationKeyModel) key() *keyModel    { return &m.keyModel }
func (m *organizationKeyModel) scope() client.Scope {
	return client.Organization(m.OrganizationID.ValueString())
}
func (m *organizationKeyModel) setScopeID(id string) { m.OrganizationID = types.StringValue(id) }
func (m *hostedKeyModel) key() *keyModel             { return &m.keyModel }
func (m *hostedKeyModel) scope() client.Scope        { return client.Hosted() }
func (m *hostedKeyModel) setScopeID(string)          {}

// keyResource is a key of one kind of scope: keybroker_workspace_key,
// keybroker_organization_key or keybroker_hosted_key. M is its model; PM
// the pointer that implements scopedModel.
type keyResource[M any, PM interface {
	*M
	scopedModel
}] struct {
	client *client.Client
	// kind is the scope: "workspace", "organization" or "hosted".
	kind string
}

func newWorkspaceKeyResource() resource.Resource {
	return &keyResource[workspaceKeyModel, *workspaceKeyModel]{kind: "workspace"}
}

func newOrganizationKeyResource() resource.Resource {
	return &keyResource[organizationKeyModel, *organizationKeyModel]{kind: "organization"}
}

func newHostedKeyResource() resource.Resource {
	return &keyResource[hostedKeyModel, *hostedKeyModel]{kind: "hosted"}
}

func (r *keyResource[M, PM]) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_" + r.kind + "_key"
}

func (r *keyResource[M, PM]) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	replace := []planmodifier.String{stringplanmodifier.RequiresReplace()}
	whose := map[string]string{
		"workspace":    "A workspace's own API key for a provider (BYOK: not billed by the platform)",
		"organization": "An organization's API key for a provider, which the organization's workspaces inherit when they have none (BYOK: not billed)",
		"hosted":       "One of the platform's own (hosted, billed) API keys for a provider, served to workspaces that have no key of their own and allow the hosted fallback. Needs an operator token",
	}[r.kind]
	importID := map[string]string{"workspace": "workspace/<workspace_id>", "organization": "organization/<organization_id>", "hosted": "hosted"}[r.kind]
	attrs := map[string]schema.Attribute{
		"id": schema.StringAttribute{
			Computed: true, Description: importID + "/<provider_id>/<key_id>; also the import id.",
			PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
		},
		"provider_id": schema.StringAttribute{
			Required: true, PlanModifiers: replace, Validators: []validator.String{idValidator{}},
			Description: "Provider id (see data.keybroker_providers), e.g. openai. Changing it replaces the key.",
		},
		"key_id": schema.StringAttribute{
			Optional: true, Computed: true, Default: stringdefault.StaticString("default"), PlanModifiers: replace,
			Validators:  []validator.String{idValidator{}},
			Description: "The key's id in its pool (up to 10 keys per scope and provider), " + ids.Rule + `. Default: "default". Changing it replaces the key.`,
		},
		"name": schema.StringAttribute{
			Optional: true, Computed: true, Default: stringdefault.StaticString(""),
			Validators:  []validator.String{nameValidator{}},
			Description: "A name people recognise, at most 120 characters.",
		},
		"priority": schema.Int64Attribute{
			Optional: true, Computed: true, Default: int64default.StaticInt64(100),
			Validators:  []validator.Int64{priorityValidator{}},
			Description: "Lower serves first; keys of equal priority take turns. 0 to 1000, default 100.",
		},
		"state": schema.StringAttribute{
			Optional: true, Computed: true, Default: stringdefault.StaticString("active"),
			Validators:  []validator.String{stateValidator{}},
			Description: `"active" or "disabled" (a disabled key never serves). Default: "active".`,
		},
		"models": schema.ListAttribute{
			ElementType: types.StringType, Optional: true, Computed: true,
			Default:     listdefault.StaticValue(types.ListValueMust(types.StringType, []attr.Value{})),
			Description: "The only models the key serves (a resolve naming another model skips it). Empty: every model.",
		},
		"expires_at": schema.StringAttribute{
			Optional: true, Computed: true,
			Validators:  []validator.String{expiryValidator{}},
			Description: `When the key stops working, in RFC 3339 UTC ("2027-01-31T00:00:00Z"): past it keybroker does not serve it (the next key or scope serves), and within the warning window (14 days) it is "expiring" and key.expiring events go out. Unset: keybroker's value (none, or what the provider's admin API says).`,
		},
		"api_key": schema.StringAttribute{
			Optional: true, Sensitive: true,
			Description: "The API key (providers of one API key), for CLIs without write-only attributes. Stored (sensitive) in state: prefer api_key_wo.",
		},
		"api_key_wo": schema.StringAttribute{
			Optional: true, Sensitive: true, WriteOnly: true,
			Description: "The API key, write-only: sent to keybroker, never stored in plan or state. Needs Terraform or OpenTofu >= 1.11.",
		},
		"api_key_wo_version": schema.Int64Attribute{
			Optional:    true,
			Description: "Bump to send api_key_wo again (rotation). Required with api_key_wo.",
		},
		"masked_key": schema.StringAttribute{Computed: true, Description: "Masked preview of the key (of a credential's first secret field), e.g. sk-pro...9f2c."},
		"kind":       schema.StringAttribute{Computed: true, Description: "The credential's kind: api_key, azure_openai, aws_bedrock or gcp_vertex."},
		"masked": schema.MapAttribute{Computed: true, ElementType: types.StringType,
			Description: "The masked preview of each secret field, by its name in keybroker's API (apiKey, clientSecret, secretAccessKey, ...)."},
		"version":     schema.Int64Attribute{Computed: true, Description: "KV version of the key in Vault."},
		"fingerprint": schema.StringAttribute{Computed: true, Description: "HMAC-SHA256 fingerprint of the key (keyed by keybroker's pepper)."},
		"updated_at":  schema.StringAttribute{Computed: true, Description: "When the key last changed (RFC 3339)."},
	}
	for _, k := range credKinds {
		attrs[k.attr] = k.schemaAttribute()
	}
	switch r.kind {
	case "workspace":
		attrs["workspace_id"] = schema.StringAttribute{Required: true, PlanModifiers: replace, Validators: []validator.String{idValidator{}},
			Description: "Workspace id, " + ids.Rule + ". Changing it replaces the key."}
	case "organization":
		attrs["organization_id"] = schema.StringAttribute{Required: true, PlanModifiers: replace, Validators: []validator.String{idValidator{}},
			Description: "Organization id, " + ids.Rule + ". Changing it replaces the key."}
	}
	resp.Schema = schema.Schema{
		Description: whose + ", stored in Vault by keybroker. Set the key with api_key_wo (Terraform/OpenTofu >= 1.11: never stored " +
			"in plan or state) and bump api_key_wo_version to rotate, or with api_key (sensitive, but stored in state) on older CLIs. " +
			"The cloud providers take a credential of several fields instead, in one of azure_openai (provider_id \"azure-openai\"), " +
			"bedrock (\"bedrock\") or vertex (\"vertex\"): their secret fields are write-only (Terraform/OpenTofu >= 1.11), each with a " +
			"*_wo_version to bump to send it again; a change of any of their fields writes the whole credential (a new version). " +
			"name, priority, state and models place it in its pool; changing them never rewrites the key.",
		Attributes: attrs,
	}
}

func (r *keyResource[M, PM]) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.client = clientFrom(req.ProviderData, &resp.Diagnostics)
}

func (r *keyResource[M, PM]) ValidateConfig(ctx context.Context, req resource.ValidateConfigRequest, resp *resource.ValidateConfigResponse) {
	var m M
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	cfg := PM(&m).key()
	if validateCredential(cfg, req.ClientCapabilities.WriteOnlyAttributesAllowed, &resp.Diagnostics) {
		return
	}
	if cfg.APIKey.IsUnknown() || cfg.APIKeyWO.IsUnknown() {
		return
	}
	hasKey, hasWO := !cfg.APIKey.IsNull(), !cfg.APIKeyWO.IsNull()
	switch {
	case hasKey == hasWO:
		resp.Diagnostics.AddAttributeError(path.Root("api_key_wo"), "Exactly one of api_key and api_key_wo",
			"Set the key with api_key_wo (write-only, kept out of state; Terraform/OpenTofu >= 1.11) or with api_key (older CLIs), not both and not neither.")
	case hasWO && cfg.APIKeyWOVersion.IsNull():
		resp.Diagnostics.AddAttributeError(path.Root("api_key_wo_version"), "api_key_wo_version is required with api_key_wo",
			"Write-only values are not stored, so Terraform cannot see them change: set api_key_wo_version, and bump it to rotate the key.")
	}
}

func refOf(m scopedModel) client.KeyRef {
	k := m.key()
	return client.KeyRef{Scope: m.scope(), Provider: k.ProviderID.ValueString(), KeyID: k.KeyID.ValueString()}
}

func modelsOf(ctx context.Context, l types.List, diags *diag.Diagnostics) []string {
	out := []string{}
	if l.IsNull() || l.IsUnknown() {
		return out
	}
	diags.Append(l.ElementsAs(ctx, &out, false)...)
	return out
}

func (r *keyResource[M, PM]) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var planM, configM M
	resp.Diagnostics.Append(req.Plan.Get(ctx, &planM)...)
	resp.Diagnostics.Append(req.Config.Get(ctx, &configM)...)
	if resp.Diagnostics.HasError() {
		return
	}
	plan := PM(&planM)
	ref, k := refOf(plan), plan.key()
	if _, err := r.client.Key(ctx, ref); err == nil {
		resp.Diagnostics.AddError("Key already exists",
			fmt.Sprintf("%s already has key %s for %s in keybroker. Import it: terraform import <address> %s", ref.Scope, ref.KeyID, ref.Provider, importIDOf(ref)))
		return
	} else if !client.IsStatus(err, http.StatusNotFound) {
		apiError(&resp.Diagnostics, "read", ref, err)
		return
	}
	priority := int(k.Priority.ValueInt64())
	add := client.AddKeyRequest{KeyID: ref.KeyID, Name: k.Name.ValueString(), Priority: &priority, State: k.State.ValueString(),
		Models: modelsOf(ctx, k.Models, &resp.Diagnostics)}
	if v := k.ExpiresAt; !v.IsNull() && !v.IsUnknown() {
		if t, err := time.Parse(time.RFC3339, v.ValueString()); err == nil {
			add.ExpiresAt = &t
		}
	}
	if kind := credentialKindOf(k); kind != nil {
		add.Credential = credentialOf(ctx, kind, *k.get(kind), *PM(&configM).key().get(kind), &resp.Diagnostics)
	} else {
		add.APIKey = keyOf(k, PM(&configM).key())
	}
	if resp.Diagnostics.HasError() {
		return
	}
	meta, err := r.client.AddKey(ctx, ref.Scope, ref.Provider, add)
	if err != nil {
		apiError(&resp.Diagnostics, "create", ref, err)
		return
	}
	setComputed(ctx, plan, meta, &resp.Diagnostics)
	resp.Diagnostics.Append(resp.State.Set(ctx, plan)...)
}

func (r *keyResource[M, PM]) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var stateM M
	resp.Diagnostics.Append(req.State.Get(ctx, &stateM)...)
	if resp.Diagnostics.HasError() {
		return
	}
	state := PM(&stateM)
	k := state.key()
	if k.KeyID.IsNull() || k.KeyID.ValueString() == "" {
		k.KeyID = types.StringValue("default") // state written before pools
	}
	ref := refOf(state)
	meta, err := r.client.Key(ctx, ref)
	if client.IsStatus(err, http.StatusNotFound) {
		// Deleted outside Terraform: the plan creates it again.
		resp.State.RemoveResource(ctx)
		return
	}
	if err != nil {
		apiError(&resp.Diagnostics, "read", ref, err)
		return
	}
	if !k.Version.IsNull() && k.Version.ValueInt64() != int64(meta.Version) {
		// Rotated outside Terraform. Terraform cannot read the key back
		// (nor should it), so it forgets what it sent: the plan then
		// sends the configured key again.
		k.APIKey = types.StringNull()
		k.APIKeyWOVersion = types.Int64Null()
		for _, kind := range k.set() {
			*k.get(kind) = forgetVersions(kind, *k.get(kind), &resp.Diagnostics)
		}
	}
	if kind := credKindOf(func(c credKind) bool { return c.kind == meta.Kind }); kind != nil {
		// The non-secret fields as keybroker has them (a change outside
		// Terraform shows in the plan); the secret ones stay unknown to
		// Terraform.
		*k.get(kind) = credentialState(kind, meta, *k.get(kind), &resp.Diagnostics)
	}
	setComputed(ctx, state, meta, &resp.Diagnostics)
	resp.Diagnostics.Append(resp.State.Set(ctx, state)...)
}

func (r *keyResource[M, PM]) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	var planM, configM, priorM M
	resp.Diagnostics.Append(req.Plan.Get(ctx, &planM)...)
	resp.Diagnostics.Append(req.Config.Get(ctx, &configM)...)
	resp.Diagnostics.Append(req.State.Get(ctx, &priorM)...)
	if resp.Diagnostics.HasError() {
		return
	}
	plan, prior := PM(&planM), PM(&priorM)
	ref, k, was := refOf(plan), plan.key(), prior.key()
	var meta client.KeyMetadata
	var err error
	if kind := credentialKindOf(k); kind != nil {
		// A credential is written whole: a change of any of its fields or
		// versions sends every field of the configuration.
		if !k.get(kind).Equal(*was.get(kind)) {
			cred := credentialOf(ctx, kind, *k.get(kind), *PM(&configM).key().get(kind), &resp.Diagnostics)
			if resp.Diagnostics.HasError() {
				return
			}
			if meta, _, err = r.client.PutCredential(ctx, ref, cred, 0, false); err != nil {
				apiError(&resp.Diagnostics, "write the credential of", ref, err)
				return
			}
		}
	} else if !k.APIKey.Equal(was.APIKey) || !k.APIKeyWOVersion.Equal(was.APIKeyWOVersion) {
		if meta, _, err = r.client.PutKey(ctx, ref, keyOf(k, PM(&configM).key()), 0); err != nil {
			apiError(&resp.Diagnostics, "rotate", ref, err)
			return
		}
	}
	var change client.UpdateKeyRequest
	if !k.Name.Equal(was.Name) {
		change.Name = new(k.Name.ValueString())
	}
	if !k.Priority.Equal(was.Priority) {
		change.Priority = new(int(k.Priority.ValueInt64()))
	}
	if !k.State.Equal(was.State) {
		change.State = new(k.State.ValueString())
	}
	if !k.Models.Equal(was.Models) {
		change.Models = new(modelsOf(ctx, k.Models, &resp.Diagnostics))
	}
	if v := k.ExpiresAt; !v.IsUnknown() && !v.Equal(was.ExpiresAt) {
		change.ExpiresAt = new(v.ValueString()) // null: "" removes the expiry
	}
	if change.Name != nil || change.Priority != nil || change.State != nil || change.Models != nil || change.ExpiresAt != nil {
		if meta, err = r.client.UpdateKey(ctx, ref, change); err != nil {
			apiError(&resp.Diagnostics, "update", ref, err)
			return
		}
	}
	if meta.KeyID == "" {
		if meta, err = r.client.Key(ctx, ref); err != nil {
			apiError(&resp.Diagnostics, "read", ref, err)
			return
		}
	}
	setComputed(ctx, plan, meta, &resp.Diagnostics)
	resp.Diagnostics.Append(resp.State.Set(ctx, plan)...)
}

func (r *keyResource[M, PM]) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var stateM M
	resp.Diagnostics.Append(req.State.Get(ctx, &stateM)...)
	if resp.Diagnostics.HasError() {
		return
	}
	ref := refOf(PM(&stateM))
	if err := r.client.RemoveKey(ctx, ref, 0, false); err != nil && !client.IsStatus(err, http.StatusNotFound) {
		apiError(&resp.Diagnostics, "delete", ref, err)
	}
}

// ImportState takes <scope>/<id>/<provider>/<key> ("hosted/<provider>/<key>"
// for hosted keys); a workspace key also takes v1's <workspace>/<provider>
// (key "default").
func (r *keyResource[M, PM]) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	parts := strings.Split(req.ID, "/")
	var scopeID, provider, keyID string
	switch {
	case r.kind == "hosted" && len(parts) == 3 && parts[0] == "hosted":
		provider, keyID = parts[1], parts[2]
	case r.kind != "hosted" && len(parts) == 4 && parts[0] == r.kind:
		scopeID, provider, keyID = parts[1], parts[2], parts[3]
	case r.kind == "workspace" && len(parts) == 2:
		scopeID, provider, keyID = parts[0], parts[1], "default"
	default:
		want := map[string]string{"workspace": "workspace/<workspace_id>/<provider_id>/<key_id>",
			"organization": "organization/<organization_id>/<provider_id>/<key_id>", "hosted": "hosted/<provider_id>/<key_id>"}[r.kind]
		resp.Diagnostics.AddError("Invalid import id", fmt.Sprintf("Expected %s, got %q.", want, req.ID))
		return
	}
	for _, id := range []string{provider, keyID} {
		if !ids.Valid(id) {
			resp.Diagnostics.AddError("Invalid import id", fmt.Sprintf("%q in %q must match %s.", id, req.ID, ids.Rule))
			return
		}
	}
	if r.kind != "hosted" {
		if !ids.Valid(scopeID) {
			resp.Diagnostics.AddError("Invalid import id", fmt.Sprintf("%q in %q must match %s.", scopeID, req.ID, ids.Rule))
			return
		}
		resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root(r.kind+"_id"), scopeID)...)
	}
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("provider_id"), provider)...)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("key_id"), keyID)...)
	ref := client.KeyRef{Scope: client.Scope{Kind: r.kind, ID: scopeID}, Provider: provider, KeyID: keyID}
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("id"), importIDOf(ref))...)
}

// importIDOf is a key's id and import id.
func importIDOf(ref client.KeyRef) string {
	if ref.Scope.Kind == "hosted" {
		return "hosted/" + ref.Provider + "/" + ref.KeyID
	}
	return ref.Scope.Kind + "/" + ref.Scope.ID + "/" + ref.Provider + "/" + ref.KeyID
}

// credentialKindOf is the kind of the credential attribute k sets, nil
// for an API key (validation lets at most one be set).
func credentialKindOf(k *keyModel) *credKind {
	if set := k.set(); len(set) > 0 {
		return set[0]
	}
	return nil
}

// keyOf is the key to send: api_key from the plan, or api_key_wo, which
// exists only in the config.
func keyOf(plan, config *keyModel) string {
	if !config.APIKeyWO.IsNull() {
		return config.APIKeyWO.ValueString()
	}
	return plan.APIKey.ValueString()
}

func setComputed(ctx context.Context, m scopedModel, meta client.KeyMetadata, diags *diag.Diagnostics) {
	k := m.key()
	if meta.Scope != "hosted" {
		m.setScopeID(meta.ScopeID)
	}
	ref := client.KeyRef{Scope: client.Scope{Kind: meta.Scope, ID: meta.ScopeID}, Provider: meta.Provider, KeyID: meta.KeyID}
	k.ID = types.StringValue(importIDOf(ref))
	k.keyMetadataModel = keyMetadataOf(meta)
	models, d := types.ListValueFrom(ctx, types.StringType, meta.Models)
	diags.Append(d...)
	k.Models = models
	k.APIKeyWO = types.StringNull()
	k.ExpiresAt = types.StringNull()
	if meta.ExpiresAt != nil {
		k.ExpiresAt = types.StringValue(meta.ExpiresAt.UTC().Format(time.RFC3339))
	}
}

// apiError turns an API error into a diagnostic that says what to do.
func apiError(diags diagAdder, op string, ref client.KeyRef, err error) {
	var apiErr *client.Error
	summary := fmt.Sprintf("Could not %s key %s of %s for %s", op, ref.KeyID, ref.Scope, ref.Provider)
	switch {
	case errors.As(err, &apiErr) && apiErr.StatusCode == http.StatusForbidden:
		diags.AddError(summary, "The provider's token may not manage keys of "+ref.Scope.String()+" (403): use an admin token of it, or an operator token ("+apiErr.Message+").")
	case errors.As(err, &apiErr) && apiErr.StatusCode == http.StatusUnauthorized:
		diags.AddError(summary, "keybroker refused the token (401): it is unknown, revoked or expired.")
	case errors.As(err, &apiErr) && apiErr.StatusCode == http.StatusUnprocessableEntity:
		diags.AddError(summary, "keybroker rejected the key: "+apiErr.Message)
	case errors.As(err, &apiErr) && apiErr.Code == "pool_full":
		diags.AddError(summary, "The pool is full: "+apiErr.Message)
	default:
		diags.AddError(summary, err.Error())
	}
}

type diagAdder interface{ AddError(summary, detail string) }

// idValidator applies keybroker's id rule at plan time.
type idValidator struct{}

func (idValidator) Description(context.Context) string {
	return "must match " + ids.Rule
}
func (v idValidator) MarkdownDescription(ctx context.Context) string { return v.Description(ctx) }
func (idValidator) ValidateString(_ context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	if !ids.Valid(req.ConfigValue.ValueString()) {
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid id",
			fmt.Sprintf("%q must match %s, as keybroker requires.", req.ConfigValue.ValueString(), ids.Rule))
	}
}

// nameValidator, priorityValidator and stateValidator apply keybroker's
// rules for a pool member at plan time.
type nameValidator struct{}

func (nameValidator) Description(context.Context) string               { return "at most 120 characters" }
func (v nameValidator) MarkdownDescription(ctx context.Context) string { return v.Description(ctx) }
func (nameValidator) ValidateString(_ context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if !req.ConfigValue.IsNull() && !req.ConfigValue.IsUnknown() && len([]rune(req.ConfigValue.ValueString())) > 120 {
		resp.Diagnostics.AddAttributeError(req.Path, "Name too long", "keybroker takes names of at most 120 characters.")
	}
}

type expiryValidator struct{}

func (expiryValidator) Description(context.Context) string {
	return `an RFC 3339 time in UTC, whole seconds ("2027-01-31T00:00:00Z")`
}
func (v expiryValidator) MarkdownDescription(ctx context.Context) string { return v.Description(ctx) }
func (expiryValidator) ValidateString(_ context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	v := req.ConfigValue
	if v.IsNull() || v.IsUnknown() {
		return
	}
	if t, err := time.Parse(time.RFC3339, v.ValueString()); err != nil || t.UTC().Format(time.RFC3339) != v.ValueString() {
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid expiry", `expires_at must be an RFC 3339 time in UTC with whole seconds, e.g. "2027-01-31T00:00:00Z".`)
	}
}

type priorityValidator struct{}

func (priorityValidator) Description(context.Context) string               { return "from 0 to 1000" }
func (v priorityValidator) MarkdownDescription(ctx context.Context) string { return v.Description(ctx) }
func (priorityValidator) ValidateInt64(_ context.Context, req validator.Int64Request, resp *validator.Int64Response) {
	if !req.ConfigValue.IsNull() && !req.ConfigValue.IsUnknown() && (req.ConfigValue.ValueInt64() < 0 || req.ConfigValue.ValueInt64() > 1000) {
		resp.Diagnostics.AddAttributeError(req.Path, "Priority out of range", "priority must be from 0 to 1000 (lower serves first).")
	}
}

type stateValidator struct{}

func (stateValidator) Description(context.Context) string               { return `"active" or "disabled"` }
func (v stateValidator) MarkdownDescription(ctx context.Context) string { return v.Description(ctx) }
func (stateValidator) ValidateString(_ context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if v := req.ConfigValue; !v.IsNull() && !v.IsUnknown() && v.ValueString() != "active" && v.ValueString() != "disabled" {
		resp.Diagnostics.AddAttributeError(req.Path, "Unknown state", `state must be "active" or "disabled".`)
	}
}
