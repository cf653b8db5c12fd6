package terraform

import (
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/types"
)

func pathRoot(name string) path.Path { return path.Root(name) }

// workspaceKeyModel is keybroker_workspace_key's state. APIKeyWO is always
// null in plan and state (write-only).
type workspaceKeyModel struct {
	ID              types.String `tfsdk:"id"`
	WorkspaceID     types.String `tfsdk:"workspace_id"`
	ProviderID      types.String `tfsdk:"provider_id"`
	APIKey          types.String `tfsdk:"api_key"`
	APIKeyWO        types.String `tfsdk:"api_key_wo"`
	APIKeyWOVersion types.Int64  `tfsdk:"api_key_wo_version"`
	MaskedKey       types.String `tfsdk:"masked_key"`
	Version         types.Int64  `tfsdk:"version"`
	Fingerprint     types.String `tfsdk:"fingerprint"`
	UpdatedAt       types.String `tfsdk:"updated_at"`
}

type keySummaryModel struct {
	ProviderID  types.String `tfsdk:"provider_id"`
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
