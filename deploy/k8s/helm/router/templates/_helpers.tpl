{{- define "router.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "router.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "router.labels" -}}
{{ include "router.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: quadrate-maas-embeddings
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{/* repository@digest when a digest is given, else repository:tag (the tag defaults to appVersion). */}}
{{- define "router.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{/* The ConfigMap (generated key) or the operator's Secret that holds auth.yaml and rate_limits.yaml. */}}
{{- define "router.accessName" -}}
{{- default (printf "%s-access" (include "router.fullname" .)) .Values.access.existingSecret -}}
{{- end -}}

{{- define "router.keysSecret" -}}
{{- printf "%s-keys" (include "router.fullname" .) -}}
{{- end -}}

{{/* Where the generated key's Secret is mounted; auth.yaml names the file by this path. */}}
{{- define "router.keysDir" -}}
/etc/maas/keys
{{- end -}}

{{/* Several replicas (or an autoscaler that may add them): a PDB and the Redis warning apply. */}}
{{- define "router.replicated" -}}
{{- if or .Values.autoscaling.enabled (gt (int .Values.replicaCount) 1) -}}true{{- end -}}
{{- end -}}
