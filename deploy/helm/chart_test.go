// Package chart_test checks the Helm chart in deploy/helm/keybroker with the
// real helm CLI (built into the tools cache by scripts/tools.sh helm):
// helm lint with the values schema, helm template for several value sets,
// and every rendered object decoded strictly into the Kubernetes API types.
package chart_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

const chart = "keybroker"

// kubeVersion is the cluster version the chart is rendered for.
const kubeVersion = "1.31.0"

func helm(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("helm"); err == nil {
		return p
	}
	tools := os.Getenv("KEYBROKER_TOOLS_DIR")
	if tools == "" {
		home, _ := os.UserHomeDir()
		tools = filepath.Join(home, ".cache", "keybroker", "tools")
	}
	p := filepath.Join(tools, "bin", "helm")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("no helm: run scripts/tools.sh helm (%v)", err)
	}
	return p
}

// run runs helm with a values file holding values.
func run(t *testing.T, values string, args ...string) (string, error) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(f, []byte(values), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(helm(t), append(args, "-f", f, "--kube-version", kubeVersion)...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// ServiceMonitor is the part of prometheus-operator's type the chart
// renders (the operator's Go module is not needed for that).
type ServiceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector  metav1.LabelSelector `json:"selector"`
		Endpoints []struct {
			Port     string `json:"port"`
			Path     string `json:"path"`
			Interval string `json:"interval"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// rendered is a chart's objects by kind and name.
type rendered struct {
	deployments     map[string]*appsv1.Deployment
	services        map[string]*corev1.Service
	serviceAccounts map[string]*corev1.ServiceAccount
	configMaps      map[string]*corev1.ConfigMap
	jobs            map[string]*batchv1.Job
	pdbs            map[string]*policyv1.PodDisruptionBudget
	netpols         map[string]*networkingv1.NetworkPolicy
	monitors        map[string]*ServiceMonitor
	text            string
}

// strict decodes a YAML object into v, refusing any field the type does
// not have.
func strict(t *testing.T, doc []byte, v any) {
	t.Helper()
	j, err := yaml.YAMLToJSON(doc)
	if err != nil {
		t.Fatalf("not YAML: %v\n%s", err, doc)
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("does not decode strictly into %T: %v\n%s", v, err, doc)
	}
}

func render(t *testing.T, values string) rendered {
	t.Helper()
	if out, err := run(t, values, "lint", chart, "--strict"); err != nil {
		t.Fatalf("helm lint: %v\n%s", err, out)
	}
	out, err := run(t, values, "template", "kb", chart, "--namespace", "byok")
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, out)
	}
	r := rendered{deployments: map[string]*appsv1.Deployment{}, services: map[string]*corev1.Service{}, serviceAccounts: map[string]*corev1.ServiceAccount{},
		configMaps: map[string]*corev1.ConfigMap{}, jobs: map[string]*batchv1.Job{}, pdbs: map[string]*policyv1.PodDisruptionBudget{},
		netpols: map[string]*networkingv1.NetworkPolicy{}, monitors: map[string]*ServiceMonitor{}, text: out}
	for _, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(out, -1) {
		var meta metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatalf("a rendered document is not YAML: %v\n%s", err, doc)
		}
		if meta.Kind == "" {
			if strings.TrimSpace(regexp.MustCompile(`(?m)^#.*$`).ReplaceAllString(doc, "")) != "" {
				t.Fatalf("a rendered document has no kind:\n%s", doc)
			}
			continue
		}
		var name struct {
			Metadata metav1.ObjectMeta `json:"metadata"`
		}
		_ = yaml.Unmarshal([]byte(doc), &name)
		n := name.Metadata.Name
		switch meta.APIVersion + " " + meta.Kind {
		case "apps/v1 Deployment":
			r.deployments[n] = &appsv1.Deployment{}
			strict(t, []byte(doc), r.deployments[n])
		case "v1 Service":
			r.services[n] = &corev1.Service{}
			strict(t, []byte(doc), r.services[n])
		case "v1 ServiceAccount":
			r.serviceAccounts[n] = &corev1.ServiceAccount{}
			strict(t, []byte(doc), r.serviceAccounts[n])
		case "v1 ConfigMap":
			r.configMaps[n] = &corev1.ConfigMap{}
			strict(t, []byte(doc), r.configMaps[n])
		case "batch/v1 Job":
			r.jobs[n] = &batchv1.Job{}
			strict(t, []byte(doc), r.jobs[n])
		case "policy/v1 PodDisruptionBudget":
			r.pdbs[n] = &policyv1.PodDisruptionBudget{}
			strict(t, []byte(doc), r.pdbs[n])
		case "networking.k8s.io/v1 NetworkPolicy":
			r.netpols[n] = &networkingv1.NetworkPolicy{}
			strict(t, []byte(doc), r.netpols[n])
		case "monitoring.coreos.com/v1 ServiceMonitor":
			r.monitors[n] = &ServiceMonitor{}
			strict(t, []byte(doc), r.monitors[n])
		default:
			// A Secret above all: the chart renders none, it only refers to them.
			t.Fatalf("the chart renders an unexpected %s %s %s", meta.APIVersion, meta.Kind, n)
		}
	}
	return r
}

var secretish = regexp.MustCompile(`(?i)(PASSWORD|PEPPER|DATABASE_URL|SECRET|TOKEN$|_KEY$)`)

// checkPod holds every pod of the chart to the security bar: non-root,
// read-only root, no privilege escalation, every capability dropped, the
// runtime's seccomp profile, no Kubernetes API token, and secrets only by
// reference.
func checkPod(t *testing.T, what string, spec corev1.PodSpec) {
	t.Helper()
	psc := spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Fatalf("%s: pod security context %+v", what, psc)
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Fatalf("%s mounts the Kubernetes API token", what)
	}
	for _, c := range spec.Containers {
		sc := c.SecurityContext
		if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
			sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || (sc.Privileged != nil && *sc.Privileged) || sc.Capabilities == nil ||
			len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" || len(sc.Capabilities.Add) != 0 {
			t.Fatalf("%s container %s: security context %+v", what, c.Name, sc)
		}
		for _, e := range c.Env {
			if secretish.MatchString(e.Name) && !strings.HasSuffix(e.Name, "_FILE") && !strings.HasSuffix(e.Name, "_PATH") && !strings.HasSuffix(e.Name, "_ROLE") {
				if e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
					t.Fatalf("%s container %s: %s is not taken from a Secret", what, c.Name, e.Name)
				}
			}
			if strings.Contains(e.Value, "://") && strings.Contains(e.Value, "@") || strings.Contains(e.Value, "kbt_") {
				t.Fatalf("%s container %s: %s holds a credential in plain text", what, c.Name, e.Name)
			}
		}
		if c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
			t.Fatalf("%s container %s has no memory request or limit", what, c.Name)
		}
	}
}

func env(c corev1.Container) map[string]corev1.EnvVar {
	out := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		out[e.Name] = e
	}
	return out
}

const tlsValues = `
tls:
  enabled: true
  secretName: kb-tls
`

func TestChartRendersTwoIdentitiesSafelyForEveryValueSet(t *testing.T) {
	for _, tc := range []struct {
		name, values string
		// proxy: the values enable the credential proxy's Deployment.
		proxy bool
		check func(t *testing.T, r rendered)
	}{
		{"minimal", tlsValues, false, nil},
		{"Go's own collector settings", tlsValues + `goRuntime: {gcPercent: "", memoryLimit: ""}`, false, nil},
		{"the collector set by extraEnv", tlsValues + `extraEnv: {GOGC: "200", GOMEMLIMIT: 900MiB}`, false, nil},
		{"kubernetes auth with Vault's CA", tlsValues + `
vault:
  address: https://vault.example.internal:8200
  kvMount: byok
  namespace: platform
  caSecret: {name: vault-ca, key: ca.crt}
  auth:
    method: kubernetes
    kubernetes: {mount: k8s-prod, writerRole: kb-writer, readerRole: kb-reader, audience: vault, expirationSeconds: 900}
`, false, func(t *testing.T, r rendered) {
			e := env(r.deployments["kb-keybroker-admin"].Spec.Template.Spec.Containers[0])
			if e["KEYBROKER_WRITER_KUBERNETES_ROLE"].Value != "kb-writer" || e["KEYBROKER_KUBERNETES_MOUNT"].Value != "k8s-prod" ||
				e["VAULT_NAMESPACE"].Value != "platform" || e["VAULT_CACERT"].Value != "/etc/keybroker/vault-ca/ca.crt" {
				t.Fatalf("admin's Vault settings: %+v", e)
			}
			var projected *corev1.ServiceAccountTokenProjection
			for _, v := range r.deployments["kb-keybroker-resolver"].Spec.Template.Spec.Volumes {
				if v.Projected != nil {
					projected = v.Projected.Sources[0].ServiceAccountToken
				}
			}
			if projected == nil || projected.Audience != "vault" || *projected.ExpirationSeconds != 900 {
				t.Fatalf("the resolver's projected token: %+v", projected)
			}
		}},
		{"Vault Agent sidecar", tlsValues + `
vault:
  address: https://vault.vault.svc:8200
  kvMount: byok
  auth:
    method: agent
    agent: {image: "registry.example/vault:1.18.3", writerRole: kb-writer, readerRole: kb-reader, mount: kubernetes}
`, false, func(t *testing.T, r rendered) {
			for comp, role := range map[string]string{"admin": "kb-writer", "resolver": "kb-reader"} {
				spec := r.deployments["kb-keybroker-"+comp].Spec.Template.Spec
				if len(spec.Containers) != 2 || spec.Containers[1].Name != "vault-agent" || spec.Containers[1].Image != "registry.example/vault:1.18.3" {
					t.Fatalf("%s has no agent sidecar: %+v", comp, spec.Containers)
				}
				e := env(spec.Containers[0])
				id := map[string]string{"admin": "WRITER", "resolver": "READER"}[comp]
				if e["KEYBROKER_VAULT_AUTH"].Value != "token-file" || e["KEYBROKER_"+id+"_TOKEN_FILE"].Value != "/vault/token/token" {
					t.Fatalf("%s does not read the agent's token: %+v", comp, e)
				}
				hcl := r.configMaps["kb-keybroker-vault-agent"].Data[comp+".hcl"]
				if !strings.Contains(hcl, `role       = "`+role+`"`) || !strings.Contains(hcl, `path = "/vault/token/token"`) {
					t.Fatalf("the %s agent's configuration:\n%s", comp, hcl)
				}
			}
		}},
		{"mutual TLS", tlsValues + `
  clientCA: {secretName: kb-client-ca, key: ca.crt}
`, false, func(t *testing.T, r rendered) {
			spec := r.deployments["kb-keybroker-resolver"].Spec.Template.Spec
			e := env(spec.Containers[0])
			if e["KEYBROKER_TLS_CERT_FILE"].Value != "/etc/keybroker/tls/tls.crt" || e["KEYBROKER_TLS_CLIENT_CA_FILE"].Value != "/etc/keybroker/client-ca/ca.crt" {
				t.Fatalf("TLS settings: %+v", e)
			}
			if p := spec.Containers[0].ReadinessProbe.HTTPGet; p.Scheme != corev1.URISchemeHTTPS {
				t.Fatalf("the readiness probe asks over %s", p.Scheme)
			}
			found := false
			for _, v := range spec.Volumes {
				found = found || (v.Secret != nil && v.Secret.SecretName == "kb-tls")
			}
			if !found {
				t.Fatal("the TLS Secret is not mounted")
			}
		}},
		{"ServiceMonitor and network peers", tlsValues + `
metrics:
  port: 9464
  serviceMonitor: {enabled: true, interval: 15s, labels: {release: prometheus}}
networkPolicy:
  enabled: true
  resolverFrom:
    - podSelector: {matchLabels: {app: executor}}
  metricsFrom:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}
`, false, func(t *testing.T, r rendered) {
			m := r.monitors["kb-keybroker"]
			if m == nil || m.Labels["release"] != "prometheus" || m.Spec.Endpoints[0].Port != "metrics" || m.Spec.Endpoints[0].Interval != "15s" {
				t.Fatalf("ServiceMonitor: %+v", m)
			}
			np := r.netpols["kb-keybroker-resolver"]
			if np.Spec.Ingress[0].From[0].PodSelector.MatchLabels["app"] != "executor" ||
				np.Spec.Ingress[1].From[0].NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] != "monitoring" {
				t.Fatalf("resolver NetworkPolicy: %+v", np.Spec)
			}
		}},
		{"plain HTTP behind a mesh, pinned by digest", `
insecurePlaintext: true
image: {repository: registry.example/keybroker, digest: "sha256:` + strings.Repeat("ab", 32) + `"}
`, false, func(t *testing.T, r rendered) {
			c := r.deployments["kb-keybroker-resolver"].Spec.Template.Spec.Containers[0]
			if c.Image != "registry.example/keybroker@sha256:"+strings.Repeat("ab", 32) || env(c)["KEYBROKER_INSECURE_PLAINTEXT"].Value != "true" {
				t.Fatalf("image %s, env %+v", c.Image, env(c))
			}
		}},
		{"the credential proxy, its sandboxes and its egress", tlsValues + `
vault:
  address: https://vault.vault.svc:8200
  kvMount: byok
  auth:
    method: agent
    agent: {image: "registry.example/vault:1.18.3", writerRole: kb-writer, readerRole: kb-reader, mount: kubernetes}
extraEnv: {KEYBROKER_ACCESS_LOG: errors, KEYBROKER_LOG_LEVEL: info}
providers:
  baseURLs: {openai: "https://egress.internal/openai", anthropic: "https://egress.internal/anthropic"}
proxy:
  enabled: true
  replicas: 4
  shutdownGraceSeconds: 900
  service: {type: ClusterIP, port: 8443}
  extraEnv: {KEYBROKER_PROXY_TIMEOUT: 14m, KEYBROKER_LOG_LEVEL: debug}
networkPolicy:
  enabled: true
  proxyFrom:
    - podSelector: {matchLabels: {app: sandbox}}
  proxyEgress:
    - to: [{ipBlock: {cidr: 10.20.0.0/16}}]
      ports: [{port: 8200, protocol: TCP}, {port: 5432, protocol: TCP}]
    - to: [{ipBlock: {cidr: 192.0.2.10/32}}]
      ports: [{port: 443, protocol: TCP}]
`, true, func(t *testing.T, r rendered) {
			d := r.deployments["kb-keybroker-proxy"]
			spec := d.Spec.Template.Spec
			e := env(spec.Containers[0])
			if *d.Spec.Replicas != 4 || e["KEYBROKER_SHUTDOWN_GRACE"].Value != "900s" || *spec.TerminationGracePeriodSeconds != 915 {
				t.Fatalf("proxy: %d replicas, grace %q, pod grace %d", *d.Spec.Replicas, e["KEYBROKER_SHUTDOWN_GRACE"].Value, *spec.TerminationGracePeriodSeconds)
			}
			// The proxy's own settings win over the common ones, and stay its own.
			if e["KEYBROKER_PROXY_TIMEOUT"].Value != "14m" || e["KEYBROKER_LOG_LEVEL"].Value != "debug" || e["KEYBROKER_ACCESS_LOG"].Value != "errors" {
				t.Fatalf("proxy settings: %+v", e)
			}
			names := map[string]int{}
			for _, v := range spec.Containers[0].Env {
				names[v.Name]++
				if names[v.Name] > 1 {
					t.Fatalf("proxy sets %s twice", v.Name)
				}
			}
			re := env(r.deployments["kb-keybroker-resolver"].Spec.Template.Spec.Containers[0])
			if re["KEYBROKER_LOG_LEVEL"].Value != "info" || re["KEYBROKER_PROXY_TIMEOUT"].Name != "" || re["KEYBROKER_SHUTDOWN_GRACE"].Value != "20s" ||
				re["KEYBROKER_SHUTDOWN_DELAY"].Value != "5s" {
				t.Fatalf("the resolver took the proxy's settings: %+v", re)
			}
			for _, comp := range []string{"admin", "proxy"} {
				ce := env(r.deployments["kb-keybroker-"+comp].Spec.Template.Spec.Containers[0])
				if ce["KEYBROKER_PROVIDER_OPENAI_BASE_URL"].Value != "https://egress.internal/openai" || ce["KEYBROKER_PROVIDER_ANTHROPIC_BASE_URL"].Value != "https://egress.internal/anthropic" {
					t.Fatalf("%s does not reach the providers through the egress proxy: %+v", comp, ce)
				}
			}
			if hcl := r.configMaps["kb-keybroker-vault-agent"].Data["proxy.hcl"]; !strings.Contains(hcl, `role       = "kb-reader"`) {
				t.Fatalf("the proxy's agent does not log in as the reader:\n%s", hcl)
			}
			if p := r.services["kb-keybroker-proxy"].Spec.Ports[0]; p.Port != 8443 || p.Name != "https" {
				t.Fatalf("proxy Service port %+v", p)
			}
			np := r.netpols["kb-keybroker-proxy"].Spec
			if np.Ingress[0].From[0].PodSelector.MatchLabels["app"] != "sandbox" || len(np.PolicyTypes) != 2 || np.PolicyTypes[1] != networkingv1.PolicyTypeEgress {
				t.Fatalf("proxy NetworkPolicy: %+v", np)
			}
			if len(np.Egress) != 3 || np.Egress[0].Ports[0].Port.IntValue() != 53 || len(np.Egress[0].To) != 0 ||
				np.Egress[1].To[0].IPBlock.CIDR != "10.20.0.0/16" || np.Egress[2].Ports[0].Port.IntValue() != 443 {
				t.Fatalf("proxy egress: %+v", np.Egress)
			}
			// Only the proxy's egress is closed; the resolver, whose
			// callers are not named, takes no API call (closed by default):
			// its one ingress rule is the metrics port's.
			if rp := r.netpols["kb-keybroker-resolver"].Spec; len(rp.PolicyTypes) != 1 || len(rp.Egress) != 0 || len(rp.Ingress) != 1 ||
				rp.Ingress[0].Ports[0].Port.String() != "metrics" {
				t.Fatalf("resolver NetworkPolicy: %+v", rp)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := render(t, tc.values)
			// One identity per mode: its own service account, mode and Vault role.
			identities := map[string]string{"admin": "WRITER", "resolver": "READER"}
			if tc.proxy {
				identities["proxy"] = "READER"
			}
			n := len(identities)
			if len(r.deployments) != n || len(r.services) != n || len(r.serviceAccounts) != n || len(r.pdbs) != n || len(r.netpols) != n || len(r.jobs) != 1 {
				t.Fatalf("rendered %d deployments, %d services, %d service accounts, %d PDBs, %d network policies, %d jobs",
					len(r.deployments), len(r.services), len(r.serviceAccounts), len(r.pdbs), len(r.netpols), len(r.jobs))
			}
			if (len(r.monitors) == 1) != strings.Contains(tc.values, "serviceMonitor: {enabled: true") {
				t.Fatalf("%d ServiceMonitors", len(r.monitors))
			}
			for comp, id := range identities {
				d := r.deployments["kb-keybroker-"+comp]
				if d == nil {
					t.Fatalf("no %s Deployment", comp)
				}
				spec := d.Spec.Template.Spec
				checkPod(t, comp, spec)
				if spec.ServiceAccountName != "kb-keybroker-"+comp || r.serviceAccounts[spec.ServiceAccountName] == nil {
					t.Fatalf("%s runs as service account %q", comp, spec.ServiceAccountName)
				}
				other := map[string]string{"WRITER": "READER", "READER": "WRITER"}[id]
				e := env(spec.Containers[0])
				if e["KEYBROKER_MODE"].Value != comp {
					t.Fatalf("%s runs mode %q", comp, e["KEYBROKER_MODE"].Value)
				}
				hasOwn := false
				for name := range e {
					if strings.HasPrefix(name, "KEYBROKER_"+other+"_") {
						t.Fatalf("%s carries the %s identity's %s", comp, strings.ToLower(other), name)
					}
					hasOwn = hasOwn || strings.HasPrefix(name, "KEYBROKER_"+id+"_")
				}
				if !hasOwn {
					t.Fatalf("%s has no setting of its %s identity", comp, strings.ToLower(id))
				}
				// The Go runtime's defaults (goRuntime), unless the values
				// name their own.
				wantGC, wantLimit := "400", "450MiB"
				switch {
				case strings.Contains(tc.values, "goRuntime: {gcPercent: \"\", memoryLimit: \"\"}"):
					wantGC, wantLimit = "", ""
				case strings.Contains(tc.values, "GOGC: \"200\""):
					wantGC, wantLimit = "200", "900MiB"
				}
				if e["GOGC"].Value != wantGC || e["GOMEMLIMIT"].Value != wantLimit {
					t.Fatalf("%s runs with GOGC %q and GOMEMLIMIT %q, want %q and %q", comp, e["GOGC"].Value, e["GOMEMLIMIT"].Value, wantGC, wantLimit)
				}
				c := spec.Containers[0]
				seen := map[string]bool{}
				for _, v := range c.Env {
					if seen[v.Name] {
						t.Fatalf("%s sets %s twice", comp, v.Name)
					}
					seen[v.Name] = true
				}
				if c.LivenessProbe.HTTPGet.Path != "/healthz" || c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.StartupProbe == nil {
					t.Fatalf("%s probes: %+v %+v", comp, c.LivenessProbe, c.ReadinessProbe)
				}
				// Each side its own database role and signing keys: the
				// admin side never holds what makes a key-reading token,
				// the execution side never the pepper.
				wantURL, holds, lacks := "resolver-url", "KEYBROKER_RESOLVER_KEYS", []string{"KEYBROKER_FINGERPRINT_PEPPER"}
				if comp == "admin" {
					wantURL, holds, lacks = "runtime-url", "KEYBROKER_ADMIN_TOKEN_KEYS", []string{"KEYBROKER_RESOLVER_KEYS"}
				}
				// Every side verifies organization links with the admin keys.
				if a := e["KEYBROKER_ADMIN_TOKEN_KEYS"]; a.ValueFrom == nil || a.ValueFrom.SecretKeyRef == nil || a.ValueFrom.SecretKeyRef.Key != "admin-token-keys" {
					t.Fatalf("%s lacks the admin keys (it verifies organization links): %+v", comp, a)
				}
				if e["DATABASE_URL"].ValueFrom.SecretKeyRef.Key != wantURL {
					t.Fatalf("%s connects with %+v, want the secret's %s", comp, e["DATABASE_URL"].ValueFrom, wantURL)
				}
				if e[holds].ValueFrom == nil || e[holds].ValueFrom.SecretKeyRef == nil || e[holds].ValueFrom.SecretKeyRef.Name != "keybroker-signing-keys" {
					t.Fatalf("%s lacks %s from the signing keys' Secret: %+v", comp, holds, e[holds])
				}
				for _, name := range lacks {
					if _, ok := e[name]; ok {
						t.Fatalf("%s holds %s", comp, name)
					}
				}
				if !strings.HasPrefix(c.Image, "registry.example/") && c.Image != "ghcr.io/keybroker/keybroker:"+chartAppVersion(t) {
					t.Fatalf("%s image %s, want the chart's appVersion", comp, c.Image)
				}
				if r.services["kb-keybroker-"+comp].Spec.Selector["app.kubernetes.io/component"] != comp ||
					r.pdbs["kb-keybroker-"+comp].Spec.Selector.MatchLabels["app.kubernetes.io/component"] != comp {
					t.Fatalf("%s's Service or PDB selects other pods", comp)
				}
			}
			job := r.jobs["kb-keybroker-migrate"]
			checkPod(t, "the migration", job.Spec.Template.Spec)
			if job.Annotations["helm.sh/hook"] != "pre-install,pre-upgrade" || strings.Join(job.Spec.Template.Spec.Containers[0].Args, " ") != "migrate" ||
				env(job.Spec.Template.Spec.Containers[0])["DATABASE_URL"].ValueFrom.SecretKeyRef.Key != "owner-url" ||
				env(job.Spec.Template.Spec.Containers[0])["KEYBROKER_RESOLVER_ROLE"].Value != "keybroker_resolver" {
				t.Fatalf("migration job: %+v", job)
			}
			if tc.check != nil {
				tc.check(t, r)
			}
		})
	}
}

func chartAppVersion(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(chart, "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		AppVersion string `json:"appVersion"`
	}
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c.AppVersion
}

// Values the schema or the templates refuse stop helm with a clear error.
func TestChartRefusesBadValues(t *testing.T) {
	for _, tc := range []struct{ name, values, want string }{
		{"neither TLS nor a mesh", `{}`, "keybroker serves TLS off loopback"},
		{"TLS without its Secret", "tls: {enabled: true}", "tls.enabled needs tls.secretName"},
		{"replicas as words", tlsValues + "resolver: {enabled: true, replicas: three, service: {type: ClusterIP, port: 8080}}", "replicas"},
		{"an unknown auth method", tlsValues + "vault: {address: https://v:8200, kvMount: byok, auth: {method: approle}}", "method"},
		{"a typo in a value", tlsValues + "resolvr: {replicas: 2}", "resolvr"},
		{"a plain-HTTP Vault address typo", tlsValues + "vault: {address: vault:8200, kvMount: byok, auth: {method: kubernetes}}", "address"},
		{"a memory limit in megabytes", tlsValues + "goRuntime: {memoryLimit: 450MB}", "memoryLimit"},
		{"a collector percentage in words", tlsValues + "goRuntime: {gcPercent: four hundred}", "gcPercent"},
		{"a lowercase extra variable", tlsValues + "extraEnv: {keybroker_mode: all}", "keybroker_mode"},
		{"a proxy with no shutdown grace", tlsValues + "proxy: {enabled: true, replicas: 2, service: {type: ClusterIP, port: 8080}, shutdownGraceSeconds: 0}", "shutdownGraceSeconds"},
		{"a provider id in capitals", tlsValues + "providers: {baseURLs: {OpenAI: https://egress.internal}}", "OpenAI"},
		{"a provider base URL without a scheme", tlsValues + "providers: {baseURLs: {openai: egress.internal/openai}}", "baseURLs"},
		{"the proxy with no egress rules", tlsValues + "proxy: {enabled: true}", "name where it may connect in networkPolicy.proxyEgress"},
		{"a typo in the proxy's values", tlsValues + "proxy: {enabled: true, replicas: 2, service: {type: ClusterIP, port: 8080}, shutdownGrace: 30}", "'shutdownGrace' not allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := run(t, tc.values, "template", "kb", chart)
			if err == nil || !strings.Contains(out, tc.want) {
				t.Fatalf("helm template took it (%v):\n%s", err, out)
			}
		})
	}
}

// make chart stamps the appVersion; unstamped, it is the Makefile's
// version before the first tag, so the chart and the image agree.
func TestChartAppVersionIsTheBuildsVersion(t *testing.T) {
	mk, err := os.ReadFile(filepath.Join("..", "..", "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`\|\| echo (v[^)\s]+)\)`).FindSubmatch(mk)
	if m == nil {
		t.Fatal("the Makefile has no fallback VERSION")
	}
	if got := chartAppVersion(t); got != string(m[1]) {
		t.Fatalf("Chart.yaml appVersion %s, the Makefile's version %s", got, m[1])
	}
}
