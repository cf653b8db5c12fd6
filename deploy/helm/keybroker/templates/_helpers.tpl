{{/* The chart's name and the release's full name (63 characters at most). */}}
{{- define "keybroker.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "keybroker.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "keybroker.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "keybroker.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of a component (admin, resolver, migrate): pass (list $ "admin"). */}}
{{- define "keybroker.selectorLabels" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/name: {{ include "keybroker.name" $ }}
app.kubernetes.io/instance: {{ $.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "keybroker.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{/* The Vault identity of a component: admin writes, resolver and proxy read. */}}
{{- define "keybroker.identity" -}}
{{- if eq . "admin" -}}writer{{- else -}}reader{{- end -}}
{{- end -}}

{{/* The Deployments the chart can render, each one identity and one mode:
use as (include "keybroker.components" . | splitList " "). */}}
{{- define "keybroker.components" -}}
admin resolver proxy
{{- end -}}
