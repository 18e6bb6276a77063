{{/* The scale set's name on GitHub (what workflows put in `runs-on`). */}}
{{- define "rssc-scale-set.scaleSetName" -}}
{{- default .Release.Name .Values.runnerScaleSetName }}
{{- end }}

{{/* The name of the AutoscaleSet and the RunnerSet: the scale set name, lowercased, `_` as `-`. */}}
{{- define "rssc-scale-set.name" -}}
{{- include "rssc-scale-set.scaleSetName" . | lower | replace "_" "-" }}
{{- end }}

{{- define "rssc-scale-set.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride }}
{{- end }}

{{- define "rssc-scale-set.githubSecretName" -}}
{{- if kindIs "string" .Values.githubConfigSecret }}
{{- .Values.githubConfigSecret }}
{{- else }}
{{- printf "%s-github" (include "rssc-scale-set.name" .) }}
{{- end }}
{{- end }}

{{/* "app" or "token": what the credentials are. */}}
{{- define "rssc-scale-set.authKind" -}}
{{- if kindIs "string" .Values.githubConfigSecret }}
{{- if .Values.githubApp.clientID }}app{{ else }}token{{ end }}
{{- else if .Values.githubConfigSecret.github_app_private_key }}app
{{- else }}token
{{- end }}
{{- end }}

{{/* A number or string value as text, integers without an exponent. */}}
{{- define "rssc-scale-set.text" -}}
{{- if or (kindIs "float64" .) (kindIs "int64" .) (kindIs "int" .) }}
{{- printf "%d" (int64 .) }}
{{- else }}
{{- toString . }}
{{- end }}
{{- end }}

{{- define "rssc-scale-set.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "rssc-scale-set.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: rssc
{{- with .Values.labels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "rssc-scale-set.metadata" -}}
name: {{ include "rssc-scale-set.name" . }}
namespace: {{ include "rssc-scale-set.namespace" . }}
labels:
  {{- include "rssc-scale-set.labels" . | nindent 2 }}
{{- with .Values.annotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* The image of the runner container: the template's, else runnerImage. */}}
{{- define "rssc-scale-set.runnerImage" -}}
{{- $image := .Values.runnerImage }}
{{- range (dig "spec" "containers" list (.Values.template | default dict)) }}
{{- if and (eq .name "runner") .image }}{{ $image = .image }}{{ end }}
{{- end }}
{{- $image }}
{{- end }}

{{/* listenerTemplate (a PodTemplateSpec, as in ARC) in the RunnerSet's listenerTemplate shape. */}}
{{- define "rssc-scale-set.listenerTemplate" -}}
{{- $t := .Values.listenerTemplate | default dict }}
{{- $spec := $t.spec | default dict }}
{{- $out := dict }}
{{- with $t.metadata }}{{ $_ := set $out "metadata" . }}{{ end }}
{{- range $key := list "nodeSelector" "tolerations" "affinity" "priorityClassName" }}
{{- with (get $spec $key) }}{{ $_ := set $out $key . }}{{ end }}
{{- end }}
{{- range ($spec.containers | default list) }}
{{- with .resources }}{{ $_ := set $out "resources" . }}{{ end }}
{{- with .env }}{{ $_ := set $out "env" . }}{{ end }}
{{- end }}
{{- if $out }}{{ toYaml $out }}{{ end }}
{{- end }}
