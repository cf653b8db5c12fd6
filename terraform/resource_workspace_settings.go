package terraform

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/booldefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/keybroker/keybroker/client"
	"github.com/keybroker/keybroker/ids"
)

// workspaceSettingsModel is keybroker_workspace_settings's state.
type workspaceSettingsModel struct {
	ID             types.String `tfsdk:"id"`
	WorkspaceID    types.String `tfsdk:"workspace_id"`
	Organization   types.String `tfsdk:"organization"`
	Inherit        types.Bool   `tfsdk:"inherit"`
	HostedFallback types.Bool   `tfsdk:"hosted_fallback"`
	UpdatedAt      types.String `tfsdk:"updated_at"`
}

type workspaceSettingsResource struct{ client *client.Client }

var (
	_ resource.Resource                = (*workspaceSettingsResource)(nil)
	_ resource.ResourceWithConfigure   = (*workspaceSettingsResource)(nil)
	_ resource.ResourceWithImportState = (*workspaceSettingsResource)(nil)
)

func newWorkspaceSettingsResource() resource.Resource { return &workspaceSettingsResource{} }

func (r *workspaceSettingsResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_workspace_settings"
}

func (r *workspaceSettingsResource) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	resp.Schema = schema.Schema{
		Description: "A workspace's settings in keybroker: the organization it belongs to, and whether calls without a key of " +
			"its own may use its organization's keys or the platform's hosted keys (billed). Destroying the resource puts " +
			"inherit and hosted_fallback back to their defaults (true) and leaves the organization link as it is.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{
				Computed: true, Description: "The workspace id.",
				PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"workspace_id": schema.StringAttribute{
				Required: true, Validators: []validator.String{idValidator{}},
				PlanModifiers: []planmodifier.String{stringplanmodifier.RequiresReplace()},
				Description:   "Workspace id, " + ids.Rule + ".",
			},
			"organization": schema.StringAttribute{
				Optional: true, Computed: true, Validators: []validator.String{idValidator{}},
				PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
				Description: "The organization the workspace belongs to. Setting or changing it needs an operator token; " +
					"left out, the link is not managed here (an admin token can then manage the rest).",
			},
			"inherit": schema.BoolAttribute{
				Optional: true, Computed: true, Default: booldefault.StaticBool(true),
				Description: "Use the organization's keys when the workspace has none. Default: true.",
			},
			"hosted_fallback": schema.BoolAttribute{
				Optional: true, Computed: true, Default: booldefault.StaticBool(true),
				Description: "Fall back to the platform's hosted keys (billed at hosted rates) when no key of the workspace can serve. " +
					"false fails closed: resolve answers no_key. Default: true.",
			},
			"updated_at": schema.StringAttribute{Computed: true, Description: "When the settings last changed (RFC 3339)."},
		},
	}
}

func (r *workspaceSettingsResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.client = clientFrom(req.ProviderData, &resp.Diagnostics)
}

func (r *workspaceSettingsResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var plan workspaceSettingsModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	r.put(ctx, plan, &resp.State, &resp.Diagnostics)
}

func (r *workspaceSettingsResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	var plan workspaceSettingsModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	r.put(ctx, plan, &resp.State, &resp.Diagnostics)
}

// put sends the planned settings; organization only when it differs from
// the current one (an admin token may then manage the rest).
func (r *workspaceSettingsResource) put(ctx context.Context, plan workspaceSettingsModel, state stateSetter, diags *diag.Diagnostics) {
	ws := plan.WorkspaceID.ValueString()
	cur, err := r.client.Settings(ctx, ws)
	if err != nil {
		settingsError(diags, "read", ws, err)
		return
	}
	inherit, fallback := plan.Inherit.ValueBool(), plan.HostedFallback.ValueBool()
	req := client.SettingsRequest{Inherit: &inherit, HostedFallback: &fallback}
	// An organization that is not configured is unknown or null in the
	// plan: the link is left alone.
	if !plan.Organization.IsUnknown() && !plan.Organization.IsNull() {
		if want := plan.Organization.ValueString(); want != orgOf(cur) {
			req.Organization = &want
		}
	}
	got, err := r.client.PutSettings(ctx, ws, req)
	if err != nil {
		settingsError(diags, "change", ws, err)
		return
	}
	fromSettings(&plan, got)
	diags.Append(state.Set(ctx, &plan)...)
}

type stateSetter interface {
	Set(ctx context.Context, v any) diag.Diagnostics
}

func (r *workspaceSettingsResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var state workspaceSettingsModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	got, err := r.client.Settings(ctx, state.WorkspaceID.ValueString())
	if err != nil {
		settingsError(&resp.Diagnostics, "read", state.WorkspaceID.ValueString(), err)
		return
	}
	fromSettings(&state, got)
	resp.Diagnostics.Append(resp.State.Set(ctx, &state)...)
}

// Delete puts inherit and hosted_fallback back to their defaults. The
// organization link stays: state cannot tell whether this configuration or
// an operator elsewhere made it, and unlinking is an operator's decision.
func (r *workspaceSettingsResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var state workspaceSettingsModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	yes := true
	put := client.SettingsRequest{Inherit: &yes, HostedFallback: &yes}
	if _, err := r.client.PutSettings(ctx, state.WorkspaceID.ValueString(), put); err != nil {
		settingsError(&resp.Diagnostics, "reset", state.WorkspaceID.ValueString(), err)
	}
}

func (r *workspaceSettingsResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	if !ids.Valid(req.ID) {
		resp.Diagnostics.AddError("Invalid import id", fmt.Sprintf("Expected a workspace id (%s), got %q.", ids.Rule, req.ID))
		return
	}
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("workspace_id"), req.ID)...)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("id"), req.ID)...)
}

func orgOf(s client.Settings) string {
	if s.Organization == nil {
		return ""
	}
	return *s.Organization
}

func fromSettings(m *workspaceSettingsModel, s client.Settings) {
	m.ID = m.WorkspaceID
	if org := orgOf(s); org != "" {
		m.Organization = types.StringValue(org)
	} else {
		m.Organization = types.StringNull()
	}
	m.Inherit = types.BoolValue(s.Inherit)
	m.HostedFallback = types.BoolValue(s.HostedFallback)
	m.UpdatedAt = types.StringNull()
	if !s.UpdatedAt.IsZero() {
		m.UpdatedAt = types.StringValue(s.UpdatedAt.UTC().Format(time.RFC3339))
	}
}

func settingsError(diags diagAdder, op, ws string, err error) {
	var apiErr *client.Error
	summary := fmt.Sprintf("Could not %s the settings of workspace %s", op, ws)
	switch {
	case errors.As(err, &apiErr) && apiErr.StatusCode == http.StatusForbidden:
		diags.AddError(summary, "The provider's token may not do this (403): an admin token of "+ws+
			" changes inherit and hosted_fallback; only an operator token sets or changes organization.")
	case errors.As(err, &apiErr) && apiErr.StatusCode == http.StatusUnauthorized:
		diags.AddError(summary, "keybroker refused the token (401): it is unknown, revoked or expired.")
	default:
		diags.AddError(summary, err.Error())
	}
}
