{{/* Chart name, at most 63 characters. */}}
{{- define "rssc-controller.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the release's objects: the release name, or release-chart if that does not
contain the chart name. */}}
{{- define "rssc-controller.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "rssc-controller.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride }}
{{- end }}

{{- define "rssc-controller.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rssc-controller.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "rssc-controller.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "rssc-controller.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: rssc
app.kubernetes.io/component: controller
{{- end }}

{{- define "rssc-controller.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "rssc-controller.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "rssc-controller.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "rssc-controller.listenerImage" -}}
{{- printf "%s:%s" .Values.listenerImage.repository (default .Chart.AppVersion .Values.listenerImage.tag) }}
{{- end }}

{{/*
What the controller does, resource by resource (crates/rssc-controller), no more:
crates/chart-tests/tests/rbac.rs records every request the controller makes through a scale
set's life and fails on a missing or an unused permission. Some rules exist only so the
controller may create the Roles it creates: Kubernetes lets a subject create a Role only with
permissions it holds itself (no `escalate` is granted, which would allow any Role).
*/}}
{{- define "rssc-controller.rules" -}}
# The four resources: watched, finalized, status written; RunnerSets own EphemeralRunnerSets,
# which own EphemeralRunners (created and deleted by the controller).
- apiGroups: ["scaleset.actions.github.com"]
  resources: ["autoscalesets", "ephemeralrunnersets"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["scaleset.actions.github.com"]
  resources: ["runnersets"]
  verbs: ["list", "watch", "patch"]
# EphemeralRunnerSets are server-side applied (an apply that creates needs `create`).
- apiGroups: ["scaleset.actions.github.com"]
  resources: ["ephemeralrunnersets"]
  verbs: ["create"]
- apiGroups: ["scaleset.actions.github.com"]
  resources: ["ephemeralrunners"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["scaleset.actions.github.com"]
  resources: ["autoscalesets/status", "runnersets/status", "ephemeralrunnersets/status", "ephemeralrunners/status"]
  verbs: ["patch"]
# Owner references with blockOwnerDeletion (OwnerReferencesPermissionEnforcement).
- apiGroups: ["scaleset.actions.github.com"]
  resources: ["runnersets/finalizers", "ephemeralrunnersets/finalizers", "ephemeralrunners/finalizers"]
  verbs: ["update"]
# Runner Pods (label-selected watch).
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch", "create", "delete"]
# Credentials (read; metadata watch of referenced Secrets), JIT, listener config and proxy
# Secrets (created, applied). `delete`: granted to runners of the kubernetes modes.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "patch"{{ if .Values.rbac.kubernetesMode }}, "delete"{{ end }}]
# CA bundles of GitHub Enterprise Server.
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get"]
# The listener's and the kubernetes-mode runners' ServiceAccounts (server-side apply).
- apiGroups: [""]
  resources: ["serviceaccounts"]
  verbs: ["create", "patch"]
# Cache volume claims.
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["get", "create", "patch"]
# Events of the controller.
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
# Listener Deployments.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# The listener's and the kubernetes-mode runners' Roles and RoleBindings.
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles", "rolebindings"]
  verbs: ["create", "patch"]
{{- if .Values.rbac.kubernetesMode }}
# Granted to runners of the kubernetes container modes (job containers run as Pods); the
# controller itself never uses these.
- apiGroups: [""]
  resources: ["pods/exec"]
  verbs: ["get", "create"]
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "create", "delete"]
{{- end }}
{{- end }}

{{/* The top of a CRD's metadata: labels, and the keep policy (uninstalling the chart must not
delete every AutoscaleSet and RunnerSet with their CRDs). */}}
{{- define "rssc-controller.crdMetadata" -}}
metadata:
  {{- if .Values.crds.keep }}
  annotations:
    helm.sh/resource-policy: keep
  {{- end }}
  labels:
    {{- include "rssc-controller.labels" . | nindent 4 }}
{{- end }}
