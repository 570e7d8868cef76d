{{- define "infinity-embed.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "infinity-embed.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "infinity-embed.labels" -}}
{{ include "infinity-embed.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: quadrate-maas-embeddings
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}
