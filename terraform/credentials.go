package terraform

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/keybroker/keybroker/client"
)

// The credential kinds of several fields (docs/credentials.md), each a
// single nested attribute of the key resources: azure_openai, bedrock,
// vertex. Their non-secret fields are ordinary attributes (read back from
// keybroker, so drift shows); their secret fields are write-only (never in
// plan or state), each sent again when its *_wo_version changes. A key's
// credential is written whole (PUT), so any change of the attribute sends
// every field of the configuration, secrets included.

// credField is one field of a credential kind as Terraform shows it.
type credField struct {
	// attr is the Terraform attribute ("client_secret_wo"); api the field's
	// name in keybroker's API ("clientSecret").
	attr, api string
	// secret fields are write-only; version is the attribute whose change
	// sends them again.
	secret  bool
	version string
	// isMap fields are maps of strings (model → deployment).
	isMap    bool
	required bool
	desc     string
}

// credKind is a credential kind of several fields and its attribute.
type credKind struct {
	// attr is the resource's attribute ("azure_openai"); kind keybroker's
	// credential kind ("azure_openai"); provider the provider id that
	// takes it ("azure-openai").
	attr, kind, provider string
	desc                 string
	fields               []credField
	// versions are the *_wo_version attributes, with what each sends.
	versions map[string]string
	// oneWay checks that the configuration is one of the kind's ways of
	// authenticating; set says which attributes are set (not null).
	oneWay func(set func(attr string) bool, diags *diag.Diagnostics, at path.Path)
}

const woNote = " Write-only: sent to keybroker, never stored in plan or state (Terraform/OpenTofu >= 1.11)."

var credKinds = []credKind{
	{
		attr: "azure_openai", kind: "azure_openai", provider: "azure-openai",
		desc: "An Azure OpenAI resource's credential (provider_id \"azure-openai\"): its endpoint, API version and deployments, and " +
			"either its API key (api_key_wo) or Entra ID client credentials (tenant_id, client_id, client_secret_wo), from which keybroker mints access tokens.",
		fields: []credField{
			{attr: "endpoint", api: "endpoint", required: true, desc: "The resource's endpoint, https://<resource>.openai.azure.com or https://<resource>.cognitiveservices.azure.com."},
			{attr: "api_version", api: "apiVersion", required: true, desc: `The API version, e.g. "2024-10-21".`},
			{attr: "deployments", api: "deployments", isMap: true, desc: "Model → deployment name, for calls on OpenAI-style paths that name a model."},
			{attr: "api_key_wo", api: "apiKey", secret: true, version: "api_key_wo_version", desc: "The resource's API key (or give the Entra client credentials instead)."},
			{attr: "tenant_id", api: "tenantId", desc: "The Entra tenant id (a UUID), with client_id and client_secret_wo."},
			{attr: "client_id", api: "clientId", desc: "The application (client) id (a UUID), with tenant_id and client_secret_wo."},
			{attr: "client_secret_wo", api: "clientSecret", secret: true, version: "client_secret_wo_version", desc: "The application's client secret (its value, not its id)."},
		},
		versions: map[string]string{"api_key_wo_version": "api_key_wo", "client_secret_wo_version": "client_secret_wo"},
		oneWay: func(set func(string) bool, diags *diag.Diagnostics, at path.Path) {
			entra := []string{"tenant_id", "client_id", "client_secret_wo"}
			var have, lack []string
			for _, a := range entra {
				if set(a) {
					have = append(have, a)
				} else {
					lack = append(lack, a)
				}
			}
			switch {
			case set("api_key_wo") && len(have) > 0:
				diags.AddAttributeError(at.AtName("api_key_wo"), "Either api_key_wo or the Entra client credentials",
					"azure_openai takes the resource's API key (api_key_wo) or Entra client credentials (tenant_id, client_id, client_secret_wo), not both: drop "+strings.Join(have, ", ")+" or api_key_wo.")
			case set("api_key_wo"):
			case len(have) == 0:
				diags.AddAttributeError(at, "azure_openai has no way to authenticate",
					"Set api_key_wo (the resource's API key), or tenant_id, client_id and client_secret_wo (Entra ID client credentials).")
			case len(lack) > 0:
				diags.AddAttributeError(at.AtName(lack[0]), "Incomplete Entra client credentials",
					"Entra client credentials take tenant_id, client_id and client_secret_wo together: "+strings.Join(lack, " and ")+" missing.")
			}
		},
	},
	{
		attr: "bedrock", kind: "aws_bedrock", provider: "bedrock",
		desc: "An Amazon Bedrock credential (provider_id \"bedrock\"): its region and model map, and either an IAM key pair " +
			"(access_key_id_wo, secret_access_key_wo; optionally a role to assume: role_arn, external_id, session_name), from which keybroker mints " +
			"STS sessions, or a Bedrock API key (api_key_wo).",
		fields: []credField{
			{attr: "region", api: "region", required: true, desc: "An AWS region where Bedrock runs, e.g. eu-west-1."},
			{attr: "model_map", api: "modelMap", isMap: true, desc: "Model → inference profile id or ARN."},
			{attr: "access_key_id_wo", api: "accessKeyId", secret: true, version: "access_key_wo_version", desc: "The IAM access key id (AKIA...), with secret_access_key_wo."},
			{attr: "secret_access_key_wo", api: "secretAccessKey", secret: true, version: "access_key_wo_version", desc: "The IAM secret access key, with access_key_id_wo."},
			{attr: "role_arn", api: "roleArn", desc: "An IAM role keybroker assumes with the key pair (AssumeRole), arn:aws:iam::<account>:role/<name>."},
			{attr: "external_id", api: "externalId", desc: "The external id the role's trust policy requires (with role_arn)."},
			{attr: "session_name", api: "sessionName", desc: `The role session's name (with role_arn; default "keybroker").`},
			{attr: "api_key_wo", api: "bedrockApiKey", secret: true, version: "api_key_wo_version", desc: "A Bedrock API key (ABSK... or bedrock-api-key-...), instead of a key pair."},
		},
		versions: map[string]string{"access_key_wo_version": "access_key_id_wo and secret_access_key_wo", "api_key_wo_version": "api_key_wo"},
		oneWay: func(set func(string) bool, diags *diag.Diagnostics, at path.Path) {
			pair := set("access_key_id_wo") || set("secret_access_key_wo")
			var role []string
			for _, a := range []string{"role_arn", "external_id", "session_name"} {
				if set(a) {
					role = append(role, a)
				}
			}
			switch {
			case set("api_key_wo") && (pair || len(role) > 0):
				diags.AddAttributeError(at.AtName("api_key_wo"), "Either a key pair or api_key_wo",
					"bedrock takes an IAM key pair (access_key_id_wo, secret_access_key_wo, optionally role_arn, external_id, session_name) or a Bedrock API key (api_key_wo), not both.")
			case set("api_key_wo"):
			case !pair:
				diags.AddAttributeError(at, "bedrock has no way to authenticate",
					"Set access_key_id_wo and secret_access_key_wo (an IAM key pair, optionally with role_arn), or api_key_wo (a Bedrock API key).")
			case !set("access_key_id_wo"):
				diags.AddAttributeError(at.AtName("access_key_id_wo"), "Incomplete key pair", "secret_access_key_wo needs its access_key_id_wo.")
			case !set("secret_access_key_wo"):
				diags.AddAttributeError(at.AtName("secret_access_key_wo"), "Incomplete key pair", "access_key_id_wo needs its secret_access_key_wo.")
			case len(role) > 0 && !set("role_arn"):
				diags.AddAttributeError(at.AtName(role[0]), "No role to assume", strings.Join(role, " and ")+" apply only to a role: set role_arn.")
			}
		},
	},
	{
		attr: "vertex", kind: "gcp_vertex", provider: "vertex",
		desc: "A Google Vertex AI credential (provider_id \"vertex\"): project, location and a service-account key file, " +
			"from which keybroker mints access tokens (the private key never leaves keybroker).",
		fields: []credField{
			{attr: "project", api: "project", required: true, desc: "The Google Cloud project id."},
			{attr: "location", api: "location", required: true, desc: `A Google Cloud region such as "us-central1", or "global".`},
			{attr: "service_account_json_wo", api: "serviceAccountJson", secret: true, required: true, version: "service_account_json_wo_version",
				desc: "The service-account key file (JSON), e.g. file(\"sa.json\") or an ephemeral value."},
		},
		versions: map[string]string{"service_account_json_wo_version": "service_account_json_wo"},
		oneWay:   func(func(string) bool, *diag.Diagnostics, path.Path) {},
	},
}

// credKindOf is the kind of the attribute or provider id named.
func credKindOf(match func(credKind) bool) *credKind {
	for i := range credKinds {
		if match(credKinds[i]) {
			return &credKinds[i]
		}
	}
	return nil
}

// attrTypes is the object type of k's attribute.
func (k credKind) attrTypes() map[string]attr.Type {
	out := map[string]attr.Type{}
	for _, f := range k.fields {
		out[f.attr] = types.StringType
		if f.isMap {
			out[f.attr] = types.MapType{ElemType: types.StringType}
		}
	}
	for v := range k.versions {
		out[v] = types.Int64Type
	}
	return out
}

// schemaAttribute is k's single nested attribute.
func (k credKind) schemaAttribute() schema.SingleNestedAttribute {
	attrs := map[string]schema.Attribute{}
	for _, f := range k.fields {
		switch {
		case f.isMap:
			attrs[f.attr] = schema.MapAttribute{ElementType: types.StringType, Optional: true, Description: f.desc}
		case f.secret:
			attrs[f.attr] = schema.StringAttribute{Optional: !f.required, Required: f.required, Sensitive: true, WriteOnly: true,
				Description: f.desc + woNote + " Needs " + f.version + "."}
		default:
			attrs[f.attr] = schema.StringAttribute{Optional: !f.required, Required: f.required, Description: f.desc}
		}
	}
	for v, what := range k.versions {
		attrs[v] = schema.Int64Attribute{Optional: true,
			Description: "Required with " + what + ": write-only values are not stored, so Terraform cannot see them change; bump it to send " + what + " again (rotation)."}
	}
	return schema.SingleNestedAttribute{Optional: true, Attributes: attrs,
		Description: k.desc + " Exactly one of api_key, api_key_wo, azure_openai, bedrock and vertex; this one only with provider_id \"" + k.provider + "\"."}
}

// credentialModel is the credential attributes of a key resource; at most
// one is not null.
type credentialModel struct {
	AzureOpenAI types.Object `tfsdk:"azure_openai"`
	Bedrock     types.Object `tfsdk:"bedrock"`
	Vertex      types.Object `tfsdk:"vertex"`
}

func (m *credentialModel) get(k *credKind) *types.Object {
	switch k.attr {
	case "azure_openai":
		return &m.AzureOpenAI
	case "bedrock":
		return &m.Bedrock
	default:
		return &m.Vertex
	}
}

// set is the credential attribute that is not null, if any.
func (m *credentialModel) set() []*credKind {
	var out []*credKind
	for i := range credKinds {
		if !m.get(&credKinds[i]).IsNull() {
			out = append(out, &credKinds[i])
		}
	}
	return out
}

// validateCredential checks the credential attributes of a configuration
// at plan time: which one the provider takes, each secret with its
// version, one way of authenticating. It reports whether provider is a
// kind of several fields (then api_key and api_key_wo are not checked).
func validateCredential(cfg *keyModel, writeOnlyOK bool, diags *diag.Diagnostics) bool {
	provider := cfg.ProviderID
	set := cfg.set()
	var want *credKind
	if !provider.IsUnknown() && !provider.IsNull() {
		want = credKindOf(func(k credKind) bool { return k.provider == provider.ValueString() })
	}
	for _, k := range set {
		if !provider.IsUnknown() && k != want {
			diags.AddAttributeError(path.Root(k.attr), "Wrong credential for the provider",
				fmt.Sprintf("%s is the credential of provider_id %q, not of %q. ", k.attr, k.provider, provider.ValueString())+credentialHint(want))
			continue
		}
		validateKind(k, *cfg.get(k), writeOnlyOK, diags)
	}
	if want == nil {
		return provider.IsUnknown() && len(set) > 0
	}
	for _, name := range []string{"api_key", "api_key_wo"} {
		if v := map[string]types.String{"api_key": cfg.APIKey, "api_key_wo": cfg.APIKeyWO}[name]; !v.IsNull() {
			diags.AddAttributeError(path.Root(name), name+" is for providers of one API key",
				fmt.Sprintf("Provider %q takes a credential of several fields: set it in %s = { ... }, not in %s.", want.provider, want.attr, name))
		}
	}
	if cfg.get(want).IsNull() {
		diags.AddAttributeError(path.Root(want.attr), "Missing "+want.attr,
			fmt.Sprintf("Provider %q takes a credential of several fields: set %s = { ... } (see the resource's documentation).", want.provider, want.attr))
	}
	return true
}

func credentialHint(want *credKind) string {
	if want == nil {
		return "That provider takes one API key: set api_key_wo (or api_key)."
	}
	return "That provider takes " + want.attr + " = { ... }."
}

// validateKind checks one credential attribute's configuration.
func validateKind(k *credKind, obj types.Object, writeOnlyOK bool, diags *diag.Diagnostics) {
	at := path.Root(k.attr)
	if obj.IsUnknown() {
		return
	}
	if !writeOnlyOK {
		diags.AddAttributeError(at, k.attr+" needs write-only attributes",
			"Its secret fields are write-only, so that no plan or state holds them, and this CLI has no write-only attributes: "+
				"use Terraform >= 1.11 or OpenTofu >= 1.11 (or write the key with the keybroker CLI: keybroker keys add --provider "+k.provider+").")
		return
	}
	values := obj.Attributes()
	set := func(a string) bool { v, ok := values[a]; return ok && !v.IsNull() }
	for _, f := range k.fields {
		if f.secret && set(f.attr) && !set(f.version) {
			diags.AddAttributeError(at.AtName(f.version), f.version+" is required with "+f.attr,
				"Write-only values are not stored, so Terraform cannot see them change: set "+f.version+", and bump it to send "+k.versions[f.version]+" again.")
		}
	}
	for _, v := range slices.Sorted(maps.Keys(k.versions)) {
		sends := false
		for _, f := range k.fields {
			sends = sends || (f.version == v && set(f.attr))
		}
		if set(v) && !sends {
			diags.AddAttributeError(at.AtName(v), v+" without "+k.versions[v], v+" sends "+k.versions[v]+" again when it changes: set "+k.versions[v]+" or drop "+v+".")
		}
	}
	k.oneWay(set, diags, at)
}

// credentialOf is the credential to write: the non-secret fields from the
// plan, the secret ones from the configuration (write-only values exist
// only there).
func credentialOf(ctx context.Context, k *credKind, plan, config types.Object, diags *diag.Diagnostics) map[string]any {
	out := map[string]any{}
	pv, cv := plan.Attributes(), config.Attributes()
	for _, f := range k.fields {
		v := pv[f.attr]
		if f.secret {
			v = cv[f.attr]
		}
		if v == nil || v.IsNull() || v.IsUnknown() {
			continue
		}
		switch v := v.(type) {
		case types.Map:
			m := map[string]string{}
			diags.Append(v.ElementsAs(ctx, &m, false)...)
			out[f.api] = m
		case types.String:
			out[f.api] = v.ValueString()
		}
	}
	return out
}

// credentialState is k's attribute as keybroker describes the key: the
// non-secret fields it answers, the write-only ones null, and the
// versions of prior (null when prior is null, as after an import).
func credentialState(k *credKind, meta client.KeyMetadata, prior types.Object, diags *diag.Diagnostics) types.Object {
	values := map[string]attr.Value{}
	for _, f := range k.fields {
		raw, ok := meta.Fields[f.api]
		switch {
		case f.isMap && ok:
			m, isMap := raw.(map[string]any)
			elems := map[string]attr.Value{}
			for name, e := range m {
				s, isString := e.(string)
				isMap = isMap && isString
				elems[name] = types.StringValue(s)
			}
			if !isMap {
				diags.AddError("Unexpected answer from keybroker", fmt.Sprintf("The key's %s is not an object of strings.", f.api))
			}
			values[f.attr] = types.MapValueMust(types.StringType, elems)
		case f.isMap:
			values[f.attr] = types.MapNull(types.StringType)
		case ok && !f.secret:
			s, isString := raw.(string)
			if !isString {
				diags.AddError("Unexpected answer from keybroker", fmt.Sprintf("The key's %s is not a string.", f.api))
			}
			values[f.attr] = types.StringValue(s)
		default:
			values[f.attr] = types.StringNull()
		}
	}
	pv := prior.Attributes()
	for v := range k.versions {
		values[v] = types.Int64Null()
		if p, ok := pv[v]; ok && !prior.IsNull() && !prior.IsUnknown() {
			values[v] = p
		}
	}
	obj, d := types.ObjectValue(k.attrTypes(), values)
	diags.Append(d...)
	return obj
}

// forgetVersions nulls the *_wo_version attributes of obj: the next plan
// then sends the configured credential again (after a change outside
// Terraform).
func forgetVersions(k *credKind, obj types.Object, diags *diag.Diagnostics) types.Object {
	if obj.IsNull() || obj.IsUnknown() {
		return obj
	}
	values := maps.Clone(obj.Attributes())
	for v := range k.versions {
		values[v] = types.Int64Null()
	}
	out, d := types.ObjectValue(k.attrTypes(), values)
	diags.Append(d...)
	return out
}
