package terraform

import (
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/types"
)

func pathRoot(name string) path.Path { return path.Root(name) }

// keyModel is what every key resource's state has: the key's place in its
// pool, how the key is sent, and what keybroker says of it. APIKeyWO is
// always null in plan and state (write-only).
type keyModel struct {
	ID              types.String `tfsdk:"id"`
	ProviderID      types.String `tfsdk:"provider_id"`
	KeyID           types.String `tfsdk:"key_id"`
	Name            types.String `tfsdk:"name"`
	Priority        types.Int64  `tfsdk:"priority"`
	State           types.String `tfsdk:"state"`
	Models          types.List   `tfsdk:"models"`
	APIKey          types.String `tfsdk:"api_key"`
	APIKeyWO        types.String `tfsdk:"api_key_wo"`
	APIKeyWOVersion types.Int64  `tfsdk:"api_key_wo_version"`
	MaskedKey       types.String `tfsdk:"masked_key"`
	Version         types.Int64  `tfsdk:"version"`
	Fingerprint     types.String `tfsdk:"fingerprint"`
	UpdatedAt       types.String `tfsdk:"updated_at"`
}

// workspaceKeyModel is keybroker_workspace_key's state.
type workspaceKeyModel struct {
	WorkspaceID types.String `tfsdk:"workspace_id"`
	keyModel
}

// organizationKeyModel is keybroker_organization_key's state.
type organizationKeyModel struct {
	OrganizationID types.String `tfsdk:"organization_id"`
	keyModel
}

// hostedKeyModel is keybroker_hosted_key's state.
type hostedKeyModel struct {
	keyModel
}

type keySummaryModel struct {
	ProviderID  types.String `tfsdk:"provider_id"`
	KeyID       types.String `tfsdk:"key_id"`
	Name        types.String `tfsdk:"name"`
	Priority    types.Int64  `tfsdk:"priority"`
	State       types.String `tfsdk:"state"`
	MaskedKey   types.String `tfsdk:"masked_key"`
	Version     types.Int64  `tfsdk:"version"`
	Fingerprint types.String `tfsdk:"fingerprint"`
	UpdatedAt   types.String `tfsdk:"updated_at"`
	UpdatedBy   types.String `tfsdk:"updated_by"`
}

type workspaceKeysModel struct {
	WorkspaceID types.String      `tfsdk:"workspace_id"`
	Keys        []keySummaryModel `tfsdk:"keys"`
}

type providerEntryModel struct {
	ID          types.String `tfsdk:"id"`
	DisplayName types.String `tfsdk:"display_name"`
	FormatHint  types.String `tfsdk:"format_hint"`
}

type providersModel struct {
	Providers []providerEntryModel `tfsdk:"providers"`
}
