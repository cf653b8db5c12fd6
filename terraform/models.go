package terraform

import (
	"time"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/keybroker/keybroker/client"
)

func pathRoot(name string) path.Path { return path.Root(name) }

// keyMetadataModel is what keybroker says of a key (client.KeyMetadata) as
// Terraform shows it, in every key resource's state and in each key of the
// keybroker_workspace_keys data source; keyMetadataOf fills it.
type keyMetadataModel struct {
	ProviderID  types.String `tfsdk:"provider_id"`
	KeyID       types.String `tfsdk:"key_id"`
	Name        types.String `tfsdk:"name"`
	Priority    types.Int64  `tfsdk:"priority"`
	State       types.String `tfsdk:"state"`
	MaskedKey   types.String `tfsdk:"masked_key"`
	Kind        types.String `tfsdk:"kind"`
	Masked      types.Map    `tfsdk:"masked"`
	Version     types.Int64  `tfsdk:"version"`
	Fingerprint types.String `tfsdk:"fingerprint"`
	UpdatedAt   types.String `tfsdk:"updated_at"`
}

// keyMetadataOf is the state of what keybroker says of a key.
func keyMetadataOf(m client.KeyMetadata) keyMetadataModel {
	return keyMetadataModel{
		ProviderID: types.StringValue(m.Provider), KeyID: types.StringValue(m.KeyID), Name: types.StringValue(m.Name),
		Priority: types.Int64Value(int64(m.Priority)), State: types.StringValue(m.State), MaskedKey: types.StringValue(m.MaskedKey),
		Kind: types.StringValue(kindOf(m)), Masked: maskedOf(m),
		Version: types.Int64Value(int64(m.Version)), Fingerprint: types.StringValue(m.Fingerprint),
		UpdatedAt: types.StringValue(m.UpdatedAt.UTC().Format(time.RFC3339)),
	}
}

// kindOf is the key's credential kind ("api_key" when keybroker says
// none, as before credentials of several fields).
func kindOf(m client.KeyMetadata) string {
	if m.Kind == "" {
		return "api_key"
	}
	return m.Kind
}

// maskedOf is the masked preview of each secret field, by its API name.
func maskedOf(m client.KeyMetadata) types.Map {
	elems := map[string]attr.Value{}
	for name, v := range m.Masked {
		elems[name] = types.StringValue(v)
	}
	return types.MapValueMust(types.StringType, elems)
}

// keyModel is what every key resource's state has: the key's place in its
// pool, how the key is sent, and what keybroker says of it. APIKeyWO is
// always null in plan and state (write-only).
type keyModel struct {
	ID types.String `tfsdk:"id"`
	keyMetadataModel
	Models          types.List   `tfsdk:"models"`
	ExpiresAt       types.String `tfsdk:"expires_at"`
	APIKey          types.String `tfsdk:"api_key"`
	APIKeyWO        types.String `tfsdk:"api_key_wo"`
	APIKeyWOVersion types.Int64  `tfsdk:"api_key_wo_version"`
	credentialModel
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

// keySummaryModel is a key of the keybroker_workspace_keys data source.
type keySummaryModel struct {
	keyMetadataModel
	UpdatedBy types.String `tfsdk:"updated_by"`
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
