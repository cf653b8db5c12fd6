package terraform

import (
	"context"

	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/keybroker/keybroker/client"
)

type providersDataSource struct{ client *client.Client }

var _ datasource.DataSourceWithConfigure = (*providersDataSource)(nil)

func newProvidersDataSource() datasource.DataSource { return &providersDataSource{} }

func (d *providersDataSource) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_providers"
}

func (d *providersDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	resp.Schema = schema.Schema{
		Description: "The providers keybroker holds keys for.",
		Attributes: map[string]schema.Attribute{
			"providers": schema.ListNestedAttribute{
				Computed: true,
				NestedObject: schema.NestedAttributeObject{Attributes: map[string]schema.Attribute{
					"id":           schema.StringAttribute{Computed: true},
					"display_name": schema.StringAttribute{Computed: true},
					"format_hint":  schema.StringAttribute{Computed: true},
				}},
			},
		},
	}
}

func (d *providersDataSource) Configure(_ context.Context, req datasource.ConfigureRequest, resp *datasource.ConfigureResponse) {
	d.client = clientFrom(req.ProviderData, &resp.Diagnostics)
}

func (d *providersDataSource) Read(ctx context.Context, _ datasource.ReadRequest, resp *datasource.ReadResponse) {
	ps, err := d.client.Providers(ctx)
	if err != nil {
		resp.Diagnostics.AddError("Could not list keybroker's providers", err.Error())
		return
	}
	var m providersModel
	for _, p := range ps {
		m.Providers = append(m.Providers, providerEntryModel{
			ID: types.StringValue(p.ID), DisplayName: types.StringValue(p.DisplayName), FormatHint: types.StringValue(p.FormatHint),
		})
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}
