package terraform

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/provider"
	"github.com/hashicorp/terraform-plugin-framework/provider/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/keybroker/keybroker/client"
)

// New returns the provider factory for providerserver.Serve.
func New(version string) func() provider.Provider {
	return func() provider.Provider { return &keybrokerProvider{version: version} }
}

type keybrokerProvider struct{ version string }

var _ provider.Provider = (*keybrokerProvider)(nil)

type providerModel struct {
	Address        types.String `tfsdk:"address"`
	Token          types.String `tfsdk:"token"`
	CACertFile     types.String `tfsdk:"ca_cert_file"`
	ClientCertFile types.String `tfsdk:"client_cert_file"`
	ClientKeyFile  types.String `tfsdk:"client_key_file"`
	InsecureHTTP   types.Bool   `tfsdk:"insecure_http"`
	RequestTimeout types.String `tfsdk:"request_timeout"`
}

func (p *keybrokerProvider) Metadata(_ context.Context, _ provider.MetadataRequest, resp *provider.MetadataResponse) {
	resp.TypeName = "keybroker"
	resp.Version = p.version
}

func (p *keybrokerProvider) Schema(_ context.Context, _ provider.SchemaRequest, resp *provider.SchemaResponse) {
	resp.Schema = schema.Schema{
		Description: "Manages workspace API keys (bring-your-own-key) in keybroker. Keys live in Vault behind keybroker; with api_key_wo they never enter Terraform state or plans.",
		Attributes: map[string]schema.Attribute{
			"address": schema.StringAttribute{
				Optional:    true,
				Description: "keybroker's address, e.g. https://keybroker.internal:8080. Default: KEYBROKER_ADDR.",
			},
			"token": schema.StringAttribute{
				Optional:    true,
				Sensitive:   true,
				Description: "Bearer token (an admin of the managed workspaces, or an operator). Default: KEYBROKER_TOKEN.",
			},
			"ca_cert_file": schema.StringAttribute{
				Optional:    true,
				Description: "PEM file of CA certificates to trust for keybroker's TLS. Default: KEYBROKER_CACERT, else the system pool.",
			},
			"client_cert_file": schema.StringAttribute{
				Optional:    true,
				Description: "PEM client certificate, for a keybroker that requires mutual TLS (with client_key_file). Default: KEYBROKER_CLIENT_CERT.",
			},
			"client_key_file": schema.StringAttribute{
				Optional:    true,
				Description: "PEM private key of client_cert_file. Default: KEYBROKER_CLIENT_KEY.",
			},
			"insecure_http": schema.BoolAttribute{
				Optional:    true,
				Description: "Allow an http:// address to a host that is not loopback (the token and keys would cross the network in clear). Default: false. The provider never follows redirects.",
			},
			"request_timeout": schema.StringAttribute{
				Optional:    true,
				Description: `Timeout of each API request, as a Go duration ("30s"). Default: 30s.`,
			},
		},
	}
}

func (p *keybrokerProvider) Configure(ctx context.Context, req provider.ConfigureRequest, resp *provider.ConfigureResponse) {
	var cfg providerModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &cfg)...)
	if resp.Diagnostics.HasError() {
		return
	}
	address := valueOr(cfg.Address, os.Getenv("KEYBROKER_ADDR"))
	token := valueOr(cfg.Token, os.Getenv("KEYBROKER_TOKEN"))
	if address == "" || token == "" {
		resp.Diagnostics.AddError("keybroker provider is not configured",
			"Set address and token in the provider block, or KEYBROKER_ADDR and KEYBROKER_TOKEN in the environment.")
		return
	}
	timeout := 30 * time.Second
	if s := cfg.RequestTimeout.ValueString(); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			resp.Diagnostics.AddAttributeError(pathRoot("request_timeout"), "Invalid request_timeout", fmt.Sprintf("%q is not a positive Go duration such as \"30s\".", s))
			return
		}
		timeout = d
	}
	c, err := client.New(client.Config{Address: address, Token: token, Timeout: timeout,
		CACertFile:        valueOr(cfg.CACertFile, os.Getenv("KEYBROKER_CACERT")),
		ClientCertFile:    valueOr(cfg.ClientCertFile, os.Getenv("KEYBROKER_CLIENT_CERT")),
		ClientKeyFile:     valueOr(cfg.ClientKeyFile, os.Getenv("KEYBROKER_CLIENT_KEY")),
		AllowInsecureHTTP: cfg.InsecureHTTP.ValueBool()})
	if err != nil {
		resp.Diagnostics.AddError("Invalid keybroker client settings", err.Error())
		return
	}
	// Fail early, and clearly, when keybroker cannot be reached or refuses
	// the token.
	if _, err := c.Providers(ctx); err != nil {
		var apiErr *client.Error
		switch {
		case errors.As(err, &apiErr) && apiErr.StatusCode == http.StatusUnauthorized:
			resp.Diagnostics.AddError("keybroker refused the token",
				"The token is unknown, revoked or expired (401). Create one with `keybroker token create --role admin --workspace <ws>`.")
		case errors.As(err, &apiErr):
			resp.Diagnostics.AddError("keybroker answered with an error", apiErr.Error())
		default:
			resp.Diagnostics.AddError("keybroker is unreachable", fmt.Sprintf("Could not reach keybroker at %s: %v", address, err))
		}
		return
	}
	resp.ResourceData = c
	resp.DataSourceData = c
}

func (p *keybrokerProvider) Resources(context.Context) []func() resource.Resource {
	return []func() resource.Resource{newWorkspaceKeyResource, newOrganizationKeyResource, newHostedKeyResource, newWorkspaceSettingsResource}
}

func (p *keybrokerProvider) DataSources(context.Context) []func() datasource.DataSource {
	return []func() datasource.DataSource{newWorkspaceKeysDataSource, newProvidersDataSource}
}

func valueOr(v types.String, def string) string {
	if v.IsNull() || v.IsUnknown() || v.ValueString() == "" {
		return def
	}
	return v.ValueString()
}

// clientFrom is the Configure of every resource and data source: the
// provider hands over one API client.
func clientFrom(providerData any, diags diagAdder) *client.Client {
	if providerData == nil {
		return nil // the provider is not configured yet (validation)
	}
	c, ok := providerData.(*client.Client)
	if !ok {
		diags.AddError("Unexpected provider data", fmt.Sprintf("Expected *client.Client, got %T. This is a bug in the provider.", providerData))
	}
	return c
}
