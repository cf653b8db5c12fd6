package providers

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/aws-sdk-go-v2/service/sts/types"
	"github.com/aws/smithy-go"
)

// Amazon Bedrock: a credential of kind aws_bedrock holds a region, an
// optional modelMap, and one of two ways in: an IAM key pair
// (accessKeyId, secretAccessKey; optionally a role to assume, roleArn
// with externalId and sessionName), or a Bedrock API key (bedrockApiKey,
// sent as a bearer token). From a key pair keybroker mints an STS session
// (Derive) and hands out only that; requests are signed with SigV4 for
// the service "bedrock" in the credential's region (Authorize). See
// docs/providers.md, "Amazon Bedrock".

// KindAWSBedrock is the credential kind of Amazon Bedrock.
const KindAWSBedrock = "aws_bedrock"

// The fields of an aws_bedrock credential. FieldSessionToken is in no
// schema: only a derived credential (an STS session minted by Derive)
// carries it, next to the session's accessKeyId and secretAccessKey.
const (
	FieldRegion          = "region"
	FieldModelMap        = "modelMap"
	FieldAccessKeyID     = "accessKeyId"
	FieldSecretAccessKey = "secretAccessKey"
	FieldRoleARN         = "roleArn"
	FieldExternalID      = "externalId"
	FieldSessionName     = "sessionName"
	FieldBedrockAPIKey   = "bedrockApiKey"
	FieldSessionToken    = "sessionToken"
)

// bedrockSigningName is the SigV4 service name of Bedrock, of its control
// plane (bedrock.<region>) and of its runtime (bedrock-runtime.<region>).
const bedrockSigningName = "bedrock"

// defaultSessionName is the RoleSessionName of AssumeRole when the
// credential names none.
const defaultSessionName = "keybroker"

// bedrockSessionSeconds is how long a minted STS session lasts: an hour,
// the least AssumeRole's default allows, so a session that leaks is short.
const bedrockSessionSeconds = 3600

// bedrockRegions are the AWS regions where Bedrock's runtime answers
// (bedrock-runtime.<region>.amazonaws.com), from AWS's list of Bedrock
// endpoints.
var bedrockRegions = []string{
	"af-south-1",
	"ap-east-2", "ap-northeast-1", "ap-northeast-2", "ap-northeast-3", "ap-south-1", "ap-south-2",
	"ap-southeast-1", "ap-southeast-2", "ap-southeast-3", "ap-southeast-4", "ap-southeast-5", "ap-southeast-7",
	"ca-central-1", "ca-west-1",
	"eu-central-1", "eu-central-2", "eu-north-1", "eu-south-1", "eu-south-2", "eu-west-1", "eu-west-2", "eu-west-3",
	"il-central-1", "me-central-1", "me-south-1", "mx-central-1", "sa-east-1",
	"us-east-1", "us-east-2", "us-gov-east-1", "us-gov-west-1", "us-west-1", "us-west-2",
}

var (
	// awsRegionShape is what an AWS region name looks like (partition
	// prefix, area, number), to tell "no AWS region" from "no Bedrock".
	awsRegionShape = regexp.MustCompile(`^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-[0-9]{1,2}$`)
	// iamRoleARN is an IAM role's ARN in any partition: account id, an
	// optional path, the role name.
	iamRoleARN = regexp.MustCompile(`^arn:aws(-cn|-us-gov|-iso|-iso-b)?:iam::[0-9]{12}:role/([\x21-\x7e]+/)*[\w+=,.@-]{1,64}$`)
	// sessionNameShape and externalIDShape are STS's own rules of
	// RoleSessionName and ExternalId.
	sessionNameShape = regexp.MustCompile(`^[\w+=,.@-]{2,64}$`)
	externalIDShape  = regexp.MustCompile(`^[\w+=,.@:/-]+$`) // and 2 to 1224 long
	// bedrockModelTarget is a model id, an inference profile id or an ARN
	// of a model or a profile: letters, digits and . : / _ -.
	bedrockModelTarget = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9.:/_-]{0,1000}$`)
)

func isUpperAlnum(c byte) bool { return c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' }
func isBase64Char(c byte) bool { return isAlnum(c) || c == '+' || c == '/' || c == '=' }
func isAPIKeyChar(c byte) bool { return isBase64Char(c) || c == '-' || c == '_' || c == '.' }

// bedrockSchema is the aws_bedrock credential kind.
var bedrockSchema = Schema{Kind: KindAWSBedrock,
	Fields: []Field{
		{Name: FieldRegion, VaultField: "region", Required: true, Label: "Region", Hint: "an AWS region where Bedrock runs (us-east-1, eu-west-1, ...)"},
		{Name: FieldModelMap, VaultField: "model_map", Type: FieldMap, Label: "Model map", MapLabels: [2]string{"Model", "Inference profile id or ARN"}, Hint: "model → inference profile id or ARN (us.anthropic.claude-...)"},
		{Name: FieldAccessKeyID, VaultField: "access_key_id", Secret: true, Label: "Access key ID", Choice: "keyPair", Hint: `starts with "AKIA" (or "ASIA"), then 16 capital letters and digits`,
			rule: &keyRule{prefixes: []string{"AKIA", "ASIA"}, minLen: 20, maxLen: 20, allowed: isUpperAlnum, allowedText: "capital letters and digits"}},
		{Name: FieldSecretAccessKey, VaultField: "secret_access_key", Secret: true, Label: "Secret access key", Choice: "keyPair", Hint: "40 characters: letters, digits, '+' and '/'",
			rule: &keyRule{minLen: 40, maxLen: 40, allowed: isBase64Char, allowedText: "letters, digits, '+', '/' and '='"}},
		{Name: FieldRoleARN, VaultField: "role_arn", Label: "Role ARN", Choice: "keyPair", Hint: "arn:aws:iam::ACCOUNT:role/NAME, assumed with the key pair"},
		{Name: FieldExternalID, VaultField: "external_id", Label: "External ID", Choice: "keyPair", Hint: "the external id the role's trust policy requires"},
		{Name: FieldSessionName, VaultField: "session_name", Label: "Session name", Choice: "keyPair", Hint: `the role session's name (default "keybroker")`},
		{Name: FieldBedrockAPIKey, VaultField: "bedrock_api_key", Secret: true, Label: "Bedrock API key", Choice: "bedrockApiKey", Hint: `a Bedrock API key: starts with "ABSK" or "bedrock-api-key-"`,
			rule: &keyRule{prefixes: []string{"ABSK", "bedrock-api-key-"}, minLen: 20, maxLen: 8192, allowed: isAPIKeyChar, allowedText: "letters, digits and + / = - _ ."}},
	},
	Validate:     checkBedrock,
	ChoicesLabel: "How keybroker signs in to AWS",
	Choices: []Choice{
		{ID: "keyPair", Label: "An access key pair, optionally with a role to assume (keybroker hands out short-lived sessions)",
			Required: []string{FieldAccessKeyID, FieldSecretAccessKey}},
		{ID: "bedrockApiKey", Label: "A Bedrock API key", Required: []string{FieldBedrockAPIKey}},
	},
}

// checkBedrock checks what the fields' rules cannot: the region, the
// model map, the role's fields, and that the credential is one of the two
// ways in.
func checkBedrock(c Credential) error {
	const what = "Amazon Bedrock"
	has := func(n string) bool { _, ok := c.fields()[n]; return ok }
	region := c.Field(FieldRegion)
	if !slices.Contains(bedrockRegions, region) {
		if awsRegionShape.MatchString(region) {
			return refuse("%s region is not a region where Bedrock runs (regions: %s)", what, strings.Join(bedrockRegions, ", "))
		}
		return refuse("%s region is not an AWS region (like us-east-1 or eu-west-1)", what)
	}
	if has(FieldModelMap) {
		if _, err := bedrockModelMap(c); err != nil {
			return err
		}
	}
	pair := has(FieldAccessKeyID) || has(FieldSecretAccessKey)
	role := []string{}
	for _, n := range []string{FieldRoleARN, FieldExternalID, FieldSessionName} {
		if has(n) {
			role = append(role, n)
		}
	}
	switch {
	case has(FieldBedrockAPIKey) && (pair || len(role) > 0):
		extra := role
		for _, n := range []string{FieldSecretAccessKey, FieldAccessKeyID} {
			if has(n) {
				extra = append([]string{n}, extra...)
			}
		}
		return refuse("%s credentials take either a key pair (accessKeyId, secretAccessKey) or a bedrockApiKey, not both: drop %s or bedrockApiKey", what, strings.Join(extra, ", "))
	case has(FieldBedrockAPIKey):
		return nil
	case !pair:
		return refuse("%s credentials need accessKeyId and secretAccessKey (optionally roleArn, externalId, sessionName), or a bedrockApiKey", what)
	case !has(FieldAccessKeyID):
		return refuse("%s credentials with a secretAccessKey need its accessKeyId", what)
	case !has(FieldSecretAccessKey):
		return refuse("%s credentials with an accessKeyId need its secretAccessKey", what)
	}
	if len(role) > 0 && !has(FieldRoleARN) {
		return refuse("%s %s applies only to a role: add roleArn", what, strings.Join(role, " and "))
	}
	if has(FieldRoleARN) && !iamRoleARN.MatchString(c.Field(FieldRoleARN)) {
		return refuse("%s roleArn is not the ARN of an IAM role (arn:aws:iam::<12-digit account>:role/<name>)", what)
	}
	if ext := c.Field(FieldExternalID); has(FieldExternalID) && (len(ext) < 2 || len(ext) > 1224 || !externalIDShape.MatchString(ext)) {
		return refuse("%s externalId must be 2 to 1224 letters, digits and + = , . @ : / - _", what)
	}
	if has(FieldSessionName) && !sessionNameShape.MatchString(c.Field(FieldSessionName)) {
		return refuse("%s sessionName must be 2 to 64 letters, digits and + = , . @ - _", what)
	}
	return nil
}

// bedrockModelMap reads the credential's modelMap (canonical JSON of an
// object of strings); nil when it has none.
func bedrockModelMap(c Credential) (map[string]string, error) {
	raw, ok := c.fields()[FieldModelMap]
	if !ok {
		return nil, nil
	}
	var m map[string]string
	if err := json.Unmarshal([]byte(raw), &m); err != nil || m == nil {
		return nil, refuse("Amazon Bedrock modelMap must be an object whose members are strings (model → inference profile id or ARN)")
	}
	for _, model := range slices.Sorted(maps.Keys(m)) {
		if model == "" || !bedrockModelTarget.MatchString(model) {
			return nil, refuse("Amazon Bedrock modelMap has a model name that is not a Bedrock model id (letters, digits and . : / _ -)")
		}
		if !bedrockModelTarget.MatchString(m[model]) {
			return nil, refuse("Amazon Bedrock modelMap[%q] is not an inference profile id or ARN (letters, digits and . : / _ -)", model)
		}
	}
	return m, nil
}

// BedrockModel is the model id a Bedrock call for model goes to with
// credential c: its modelMap's entry (an inference profile), else model.
func BedrockModel(c Credential, model string) string {
	if m, err := bedrockModelMap(c); err == nil {
		if to, ok := m[model]; ok {
			return to
		}
	}
	return model
}

func bedrockHost(service string) func(Credential) string {
	return func(c Credential) string { return "https://" + service + "." + c.Field(FieldRegion) + ".amazonaws.com" }
}

func init() {
	register(Provider{ID: "bedrock", DisplayName: "Amazon Bedrock",
		Credential: bedrockSchema,
		Authorize:  authorizeBedrock,
		// ListFoundationModels, on the control plane of the credential's
		// region; BaseURL is us-east-1's, for a credential without region.
		Check: CheckSpec{BaseURL: "https://bedrock.us-east-1.amazonaws.com", BaseURLFor: bedrockHost("bedrock"), Path: "/foundation-models"},
		Proxy: ProxySpec{Endpoints: []Endpoint{
			post("/model/{model}/converse"), post("/model/{model}/converse-stream"),
			post("/model/{model}/invoke"), post("/model/{model}/invoke-with-response-stream"),
		},
			Headers: []ProxyHeader{{Name: "X-Amzn-Bedrock-Accept"}, {Name: "X-Amzn-Bedrock-Trace"},
				{Name: "X-Amzn-Bedrock-GuardrailIdentifier"}, {Name: "X-Amzn-Bedrock-GuardrailVersion"},
				{Name: "X-Amzn-Bedrock-PerformanceConfig-Latency"}},
			BaseURLFor: bedrockHost("bedrock-runtime")},
		Derive: deriveBedrock,
		Dev: New(KindAWSBedrock, map[string]string{FieldRegion: "us-west-2",
			FieldAccessKeyID: "AKIAFAKEHOSTEDDEV000", FieldSecretAccessKey: "FAKEhostedDevSecretNotReal/0000000000000"})})
}

// deriveBedrock mints the credential resolve hands out for a Bedrock
// credential. From a key pair: an STS session, AssumeRole's when the
// credential names a role (with its external id and session name), else
// GetSessionToken's; the derived credential holds the session's
// accessKeyId, secretAccessKey and sessionToken, the region and the
// modelMap, and never the long-lived pair. A bedrockApiKey is a bearer
// token the customer made for this use: it is handed out as it is, with a
// zero ExpiresAt (nothing to refresh; it is cached as a stored key is).
func deriveBedrock(ctx context.Context, env MintEnv, c Credential) (Derived, error) {
	keep := map[string]string{FieldRegion: c.Field(FieldRegion)}
	if mm, ok := c.fields()[FieldModelMap]; ok {
		keep[FieldModelMap] = mm
	}
	if key := c.Field(FieldBedrockAPIKey); key != "" {
		keep[FieldBedrockAPIKey] = key
		return Derived{Credential: New(KindAWSBedrock, keep)}, nil
	}
	id, secret := c.Field(FieldAccessKeyID), c.Field(FieldSecretAccessKey)
	if id == "" || secret == "" {
		return Derived{}, errors.New("bedrock: the credential has neither a key pair nor a Bedrock API key")
	}
	region := c.Field(FieldRegion)
	cfg := aws.Config{
		Region:      region,
		Credentials: credentials.NewStaticCredentialsProvider(id, secret, ""),
		// One attempt: the broker's singleflight and cache decide when to
		// mint again, and a refused key is not worth a retry.
		Retryer: func() aws.Retryer { return aws.NopRetryer{} },
	}
	if env.HTTP != nil {
		cfg.HTTPClient = env.HTTP
	}
	endpoint := env.Endpoint("sts", "https://sts."+region+".amazonaws.com")
	client := sts.NewFromConfig(cfg, func(o *sts.Options) { o.BaseEndpoint = aws.String(endpoint) })
	var creds *types.Credentials
	op := "GetSessionToken"
	if roleARN := c.Field(FieldRoleARN); roleARN != "" {
		op = "AssumeRole"
		name := c.Field(FieldSessionName)
		if name == "" {
			name = defaultSessionName
		}
		in := &sts.AssumeRoleInput{RoleArn: aws.String(roleARN), RoleSessionName: aws.String(name), DurationSeconds: aws.Int32(bedrockSessionSeconds)}
		if ext := c.Field(FieldExternalID); ext != "" {
			in.ExternalId = aws.String(ext)
		}
		out, err := client.AssumeRole(ctx, in)
		if err != nil {
			return Derived{}, stsError(op, err)
		}
		creds = out.Credentials
	} else {
		out, err := client.GetSessionToken(ctx, &sts.GetSessionTokenInput{DurationSeconds: aws.Int32(bedrockSessionSeconds)})
		if err != nil {
			return Derived{}, stsError(op, err)
		}
		creds = out.Credentials
	}
	if creds == nil || creds.AccessKeyId == nil || creds.SecretAccessKey == nil || creds.SessionToken == nil || creds.Expiration == nil {
		return Derived{}, fmt.Errorf("bedrock: STS %s answered without session credentials", op)
	}
	keep[FieldAccessKeyID] = *creds.AccessKeyId
	keep[FieldSecretAccessKey] = *creds.SecretAccessKey
	keep[FieldSessionToken] = *creds.SessionToken
	return Derived{Credential: New(KindAWSBedrock, keep), ExpiresAt: *creds.Expiration}, nil
}

// bedrockSigners are the signers of Bedrock calls, one per secret access
// key. A signer keeps the signing key it derived for a region and service
// and reuses it for any credential of the same access key id that day,
// whatever its secret (the SDK's cache compares the id, not the secret):
// one signer shared by every credential would sign a call made with
// another tenant's access key id and a wrong secret with the key derived
// from the right one. Per secret, a call derives none while its session
// lasts, and a secret signs only with its own key. At most
// maxBedrockSigners are kept (all forgotten past it: a derivation each).
var bedrockSigners = struct {
	sync.Mutex
	m map[[sha256.Size]byte]*v4.Signer
}{m: map[[sha256.Size]byte]*v4.Signer{}}

const maxBedrockSigners = 4096

// bedrockSignerFor is the signer of the credentials whose secret is secret.
func bedrockSignerFor(secret string) *v4.Signer {
	h := sha256.Sum256([]byte(secret))
	bedrockSigners.Lock()
	defer bedrockSigners.Unlock()
	s, ok := bedrockSigners.m[h]
	if !ok {
		if len(bedrockSigners.m) >= maxBedrockSigners {
			clear(bedrockSigners.m)
		}
		s = v4.NewSigner()
		bedrockSigners.m[h] = s
	}
	return s
}

// BedrockMintError is STS refusing to mint a session: its error code
// ("AccessDenied", "InvalidClientTokenId", "SignatureDoesNotMatch") and
// HTTP status, never its message (which quotes ARNs) nor a field's value.
type BedrockMintError struct {
	Op     string
	Code   string
	Status int
}

func (e *BedrockMintError) Error() string {
	return fmt.Sprintf("bedrock: STS %s refused the credential: %s (HTTP %d)", e.Op, e.Code, e.Status)
}

// Is makes a refusal match ErrMintRefused.
func (e *BedrockMintError) Is(target error) bool { return target == ErrMintRefused && e.Refused() }

// Refused reports whether STS refused the credential itself (a wrong or
// unknown key, a role it may not assume), as against STS failing.
func (e *BedrockMintError) Refused() bool {
	return e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden
}

// stsError describes a failed STS call by its code and status, or as a
// transport failure, without the SDK's message (which may quote the
// role's ARN or the request).
func stsError(op string, err error) error {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		e := &BedrockMintError{Op: op, Code: apiErr.ErrorCode()}
		var re interface{ HTTPStatusCode() int }
		if errors.As(err, &re) {
			e.Status = re.HTTPStatusCode()
		}
		return e
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("bedrock: STS %s: %w", op, context.DeadlineExceeded)
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("bedrock: STS %s: %w", op, context.Canceled)
	}
	return fmt.Errorf("bedrock: STS %s: the token service could not be reached", op)
}

// authorizeBedrock puts credential c into r: a bedrockApiKey as a bearer
// token; else a SigV4 signature for the service "bedrock" in c's region,
// made with the session (or key pair) of c, over the body of r (read and
// put back), with X-Amz-Security-Token when c is a session. Whatever
// Authorization and X-Amz-* headers r came with (a caller's own
// signature) are dropped first. A credential naming a role is refused:
// it signs with the role's session (Derive). r's Host (r.Host, else r.URL.Host) must
// be where the request goes: it is signed.
func authorizeBedrock(r *http.Request, c Credential) error {
	for name := range r.Header {
		if strings.HasPrefix(http.CanonicalHeaderKey(name), "X-Amz-") {
			r.Header.Del(name)
		}
	}
	r.Header.Del("Authorization")
	if key := c.Field(FieldBedrockAPIKey); key != "" {
		r.Header.Set("Authorization", "Bearer "+key)
		return nil
	}
	if c.Field(FieldRoleARN) != "" {
		// The pair is only the way to the role: its calls are the role
		// session's, which Derive mints.
		return errors.New("bedrock: a credential with a roleArn signs with the role's session: derive it first")
	}
	id, secret, region := c.Field(FieldAccessKeyID), c.Field(FieldSecretAccessKey), c.Field(FieldRegion)
	if c.Kind() != KindAWSBedrock || id == "" || secret == "" || region == "" {
		return fmt.Errorf("a credential of kind %q has no AWS key pair and region to sign with", c.Kind())
	}
	sum := sha256.New()
	if r.Body != nil && r.Body != http.NoBody {
		body, err := io.ReadAll(r.Body)
		_ = r.Body.Close()
		if err != nil {
			return fmt.Errorf("bedrock: reading the request body to sign it: %w", err)
		}
		sum.Write(body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		r.ContentLength = int64(len(body))
	}
	creds := aws.Credentials{AccessKeyID: id, SecretAccessKey: secret, SessionToken: c.Field(FieldSessionToken)}
	if err := bedrockSignerFor(secret).SignHTTP(r.Context(), creds, r, hex.EncodeToString(sum.Sum(nil)), bedrockSigningName, region, time.Now().UTC()); err != nil {
		return fmt.Errorf("bedrock: signing the request: %w", err)
	}
	return nil
}
