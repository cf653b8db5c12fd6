package terraform

import (
	"context"

	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/keybroker/keybroker/client"
)

type workspaceKeysDataSource struct{ client *client.Client }

var _ datasource.DataSourceWithConfigure = (*workspaceKeysDataSource)(nil)

func newWorkspaceKeysDataSource() datasource.DataSource { return &workspaceKeysDataSource{} }

func (d *workspaceKeysDataSource) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_workspace_keys"
}

func (d *workspaceKeysDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	resp.Schema = schema.Schema{
		Description: "Metadata of every key of a workspace (never the keys).",
		Attributes: map[string]schema.Attribute{
			"workspace_id": schema.StringAttribute{Required: true, Validators: []validator.String{idValidator{}}},
			"keys": schema.ListNestedAttribute{
				Computed: true, Description: "One entry per key, by provider, then as each pool orders them (priority, then age).",
				NestedObject: schema.NestedAttributeObject{Attributes: map[string]schema.Attribute{
					"provider_id": schema.StringAttribute{Computed: true},
					"key_id":      schema.StringAttribute{Computed: true},
					"name":        schema.StringAttribute{Computed: true},
					"priority":    schema.Int64Attribute{Computed: true},
					"state":       schema.StringAttribute{Computed: true},
					"masked_key":  schema.StringAttribute{Computed: true},
					"kind":        schema.StringAttribute{Computed: true, Description: "The credential's kind: api_key, azure_openai, aws_bedrock or gcp_vertex."},
					"masked":      schema.MapAttribute{Computed: true, ElementType: types.StringType, Description: "The masked preview of each secret field, by its name in keybroker's API (apiKey, clientSecret, secretAccessKey, ...)."},
					"version":     schema.Int64Attribute{Computed: true},
					"fingerprint": schema.StringAttribute{Computed: true},
					"updated_at":  schema.StringAttribute{Computed: true},
					"updated_by":  schema.StringAttribute{Computed: true},
				}},
			},
		},
	}
}

func (d *workspaceKeysDataSource) Configure(_ context.Context, req datasource.ConfigureRequest, resp *datasource.ConfigureResponse) {
	d.client = clientFrom(req.ProviderData, &resp.Diagnostics)
}

func (d *workspaceKeysDataSource) Read(ctx context.Context, req datasource.ReadRequest, resp *datasource.ReadResponse) {
	var m workspaceKeysModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	keys, err := d.client.ListKeys(ctx, m.WorkspaceID.ValueString())
	if err != nil {
		apiError(&resp.Diagnostics, "list", client.KeyRef{Scope: client.Workspace(m.WorkspaceID.ValueString()), Provider: "every provider", KeyID: "every"}, err)
		return
	}
	m.Keys = make([]keySummaryModel, 0, len(keys))
	for _, k := range keys {
		m.Keys = append(m.Keys, keySummaryModel{keyMetadataModel: keyMetadataOf(k), UpdatedBy: types.StringValue(k.UpdatedBy)})
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}
