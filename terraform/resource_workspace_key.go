package terraform

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/keybroker/keybroker/client"
	"github.com/keybroker/keybroker/ids"
)

type workspaceKeyResource struct{ client *client.Client }

var (
	_ resource.Resource                   = (*workspaceKeyResource)(nil)
	_ resource.ResourceWithConfigure      = (*workspaceKeyResource)(nil)
	_ resource.ResourceWithImportState    = (*workspaceKeyResource)(nil)
	_ resource.ResourceWithValidateConfig = (*workspaceKeyResource)(nil)
)

func newWorkspaceKeyResource() resource.Resource { return &workspaceKeyResource{} }

func (r *workspaceKeyResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_workspace_key"
}

func (r *workspaceKeyResource) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	replace := []planmodifier.String{stringplanmodifier.RequiresReplace()}
	resp.Schema = schema.Schema{
		Description: "A workspace's own API key for a provider (BYOK), stored in Vault by keybroker. " +
			"Set the key with api_key_wo (Terraform/OpenTofu >= 1.11: never stored in plan or state) and bump " +
			"api_key_wo_version to rotate, or with api_key (sensitive, but stored in state) on older CLIs.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{
				Computed: true, Description: "<workspace_id>/<provider_id>.",
				PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"workspace_id": schema.StringAttribute{
				Required: true, PlanModifiers: replace, Validators: []validator.String{idValidator{}},
				Description: "Workspace id, " + ids.Rule + ". Changing it replaces the key.",
			},
			"provider_id": schema.StringAttribute{
				Required: true, PlanModifiers: replace, Validators: []validator.String{idValidator{}},
				Description: "Provider id (see data.keybroker_providers), e.g. openai. Changing it replaces the key.",
			},
			"api_key": schema.StringAttribute{
				Optional: true, Sensitive: true,
				Description: "The API key, for CLIs without write-only attributes. Stored (sensitive) in state: prefer api_key_wo.",
			},
			"api_key_wo": schema.StringAttribute{
				Optional: true, Sensitive: true, WriteOnly: true,
				Description: "The API key, write-only: sent to keybroker, never stored in plan or state. Needs Terraform or OpenTofu >= 1.11.",
			},
			"api_key_wo_version": schema.Int64Attribute{
				Optional:    true,
				Description: "Bump to send api_key_wo again (rotation). Required with api_key_wo.",
			},
			"masked_key":  schema.StringAttribute{Computed: true, Description: "Masked preview of the key, e.g. sk-pro...9f2c."},
			"version":     schema.Int64Attribute{Computed: true, Description: "KV version of the key in Vault."},
			"fingerprint": schema.StringAttribute{Computed: true, Description: "HMAC-SHA256 fingerprint of the key (keyed by keybroker's pepper)."},
			"updated_at":  schema.StringAttribute{Computed: true, Description: "When the key last changed (RFC 3339)."},
		},
	}
}

func (r *workspaceKeyResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.client = clientFrom(req.ProviderData, &resp.Diagnostics)
}

func (r *workspaceKeyResource) ValidateConfig(ctx context.Context, req resource.ValidateConfigRequest, resp *resource.ValidateConfigResponse) {
	var cfg workspaceKeyModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &cfg)...)
	if resp.Diagnostics.HasError() {
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

func (r *workspaceKeyResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var plan, config workspaceKeyModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	resp.Diagnostics.Append(req.Config.Get(ctx, &config)...)
	if resp.Diagnostics.HasError() {
		return
	}
	ws, provider := plan.WorkspaceID.ValueString(), plan.ProviderID.ValueString()
	if _, err := r.client.GetKey(ctx, ws, provider); err == nil {
		resp.Diagnostics.AddError("Key already exists",
			fmt.Sprintf("Workspace %s already has a %s key in keybroker. Import it: terraform import <address> %s/%s", ws, provider, ws, provider))
		return
	} else if !client.IsStatus(err, http.StatusNotFound) {
		apiError(&resp.Diagnostics, "read", ws, provider, err)
		return
	}
	r.write(ctx, "create", plan, config, &resp.State, &resp.Diagnostics)
}

// write sends the key (create or rotate) and records the answer in state.
func (r *workspaceKeyResource) write(ctx context.Context, op string, plan, config workspaceKeyModel, state *tfsdk.State, diags *diag.Diagnostics) {
	ws, provider := plan.WorkspaceID.ValueString(), plan.ProviderID.ValueString()
	meta, _, err := r.client.SetKey(ctx, ws, provider, keyOf(plan, config), 0)
	if err != nil {
		apiError(diags, op, ws, provider, err)
		return
	}
	setComputed(&plan, meta)
	diags.Append(state.Set(ctx, &plan)...)
}

func (r *workspaceKeyResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var state workspaceKeyModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	ws, provider := state.WorkspaceID.ValueString(), state.ProviderID.ValueString()
	meta, err := r.client.GetKey(ctx, ws, provider)
	if client.IsStatus(err, http.StatusNotFound) {
		// Deleted outside Terraform: the plan creates it again.
		resp.State.RemoveResource(ctx)
		return
	}
	if err != nil {
		apiError(&resp.Diagnostics, "read", ws, provider, err)
		return
	}
	if !state.Version.IsNull() && state.Version.ValueInt64() != int64(meta.Version) {
		// Rotated outside Terraform. Terraform cannot read the key back
		// (nor should it), so it forgets what it sent: the plan then
		// sends the configured key again.
		state.APIKey = types.StringNull()
		state.APIKeyWOVersion = types.Int64Null()
	}
	setComputed(&state, meta)
	resp.Diagnostics.Append(resp.State.Set(ctx, &state)...)
}

func (r *workspaceKeyResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	var plan, config workspaceKeyModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	resp.Diagnostics.Append(req.Config.Get(ctx, &config)...)
	if resp.Diagnostics.HasError() {
		return
	}
	r.write(ctx, "rotate", plan, config, &resp.State, &resp.Diagnostics)
}

func (r *workspaceKeyResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var state workspaceKeyModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	ws, provider := state.WorkspaceID.ValueString(), state.ProviderID.ValueString()
	if err := r.client.DeleteKey(ctx, ws, provider, 0); err != nil && !client.IsStatus(err, http.StatusNotFound) {
		apiError(&resp.Diagnostics, "delete", ws, provider, err)
	}
}

func (r *workspaceKeyResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	ws, provider, ok := strings.Cut(req.ID, "/")
	if !ok || !ids.Valid(ws) || !ids.Valid(provider) {
		resp.Diagnostics.AddError("Invalid import id", fmt.Sprintf("Expected <workspace_id>/<provider_id>, got %q.", req.ID))
		return
	}
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("workspace_id"), ws)...)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("provider_id"), provider)...)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("id"), req.ID)...)
}

// keyOf is the key to send: api_key from the plan, or api_key_wo, which
// exists only in the config.
func keyOf(plan, config workspaceKeyModel) string {
	if !config.APIKeyWO.IsNull() {
		return config.APIKeyWO.ValueString()
	}
	return plan.APIKey.ValueString()
}

func setComputed(m *workspaceKeyModel, meta client.KeyMetadata) {
	m.ID = types.StringValue(meta.Workspace + "/" + meta.Provider)
	m.MaskedKey = types.StringValue(meta.MaskedKey)
	m.Version = types.Int64Value(int64(meta.Version))
	m.Fingerprint = types.StringValue(meta.Fingerprint)
	m.UpdatedAt = types.StringValue(meta.UpdatedAt.UTC().Format(time.RFC3339))
	m.APIKeyWO = types.StringNull()
}

// apiError turns an API error into a diagnostic that says what to do.
func apiError(diags diagAdder, op, ws, provider string, err error) {
	var apiErr *client.Error
	summary := fmt.Sprintf("Could not %s the %s key of workspace %s", op, provider, ws)
	switch {
	case errors.As(err, &apiErr) && apiErr.StatusCode == http.StatusForbidden:
		diags.AddError(summary, "The provider's token may not manage keys of this workspace (403): use an admin token of "+ws+" or an operator token.")
	case errors.As(err, &apiErr) && apiErr.StatusCode == http.StatusUnauthorized:
		diags.AddError(summary, "keybroker refused the token (401): it is unknown, revoked or expired.")
	case errors.As(err, &apiErr) && apiErr.StatusCode == http.StatusUnprocessableEntity:
		diags.AddError(summary, "keybroker rejected the key: "+apiErr.Message)
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
