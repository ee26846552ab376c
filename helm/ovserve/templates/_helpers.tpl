{{/*
Names and labels shared by every template of the ovserve chart.

Selectors use only the stable labels (name, instance, component): never the chart version,
which changes on every upgrade and would make a Deployment's selector immutable-mismatched.
*/}}

{{/* The chart name, overridable. */}}
{{- define "ovserve.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The fully qualified app name: the release name, plus the chart name unless the release name
already contains it. Truncated to 63 characters (DNS label limit).
*/}}
{{- define "ovserve.fullname" -}}
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

{{/* The operator's object names. */}}
{{- define "ovserve.operator.fullname" -}}
{{- printf "%s-operator" (include "ovserve.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Cluster-scoped names carry the release namespace: two releases of the same name in two
namespaces must not share a ClusterRole. */}}
{{- define "ovserve.operator.clusterName" -}}
{{- printf "%s-%s" .Release.Namespace (include "ovserve.operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* chart label value: name-version, "+" is not allowed in label values. */}}
{{- define "ovserve.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every object of the release carries. */}}
{{- define "ovserve.labels" -}}
helm.sh/chart: {{ include "ovserve.chart" . }}
{{ include "ovserve.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.operator.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ovserve
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Stable labels for selectors: no version in here. */}}
{{- define "ovserve.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ovserve.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The operator's labels and selector labels (component=operator). */}}
{{- define "ovserve.operator.labels" -}}
{{ include "ovserve.labels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "ovserve.operator.selectorLabels" -}}
{{ include "ovserve.selectorLabels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{/* The ServiceAccount the operator runs as. */}}
{{- define "ovserve.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ovserve.operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* image reference: repository:tag, or repository@digest when a digest is set. */}}
{{- define "ovserve.image" -}}
{{- $img := index . 0 }}
{{- $ctx := index . 1 }}
{{- if $img.digest }}
{{- printf "%s@%s" $img.repository $img.digest }}
{{- else }}
{{- printf "%s:%s" $img.repository ($img.tag | default $ctx.Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
The namespaces the operator watches. Cluster scope: all namespaces unless watchNamespaces lists
some. Namespaced RBAC: the release namespace plus watchNamespaces (each gets a Role).
*/}}
{{- define "ovserve.watchNamespaces" -}}
{{- $ns := list }}
{{- if eq .Values.rbac.scope "namespace" }}
{{- $ns = append $ns .Release.Namespace }}
{{- end }}
{{- range .Values.operator.watchNamespaces }}
{{- if not (has . $ns) }}
{{- $ns = append $ns . }}
{{- end }}
{{- end }}
{{- join "," $ns }}
{{- end }}

{{/* The default InferenceServer's name. */}}
{{- define "ovserve.defaultServer.name" -}}
{{- .Values.defaultServer.name }}
{{- end }}

{{/* The ovserve-server image: the operator's --server-image, run by every InferenceServer
that sets no spec.image (the default one sets none, so it follows chart upgrades). */}}
{{- define "ovserve.defaultServer.image" -}}
{{- include "ovserve.image" (list .Values.defaultServer.image .) }}
{{- end }}

{{/*
Cross-field checks the JSON schema cannot express well; each fails with one plain sentence.
*/}}
{{- define "ovserve.validate" -}}
{{- $st := .Values.defaultServer.storage }}
{{- if and $st (not (or $st.persistentVolumeClaim $st.hostPath)) }}
{{- fail "defaultServer.storage needs persistentVolumeClaim or hostPath (or leave storage: {} for no model storage)" }}
{{- end }}
{{- if and $st.persistentVolumeClaim $st.hostPath }}
{{- fail "defaultServer.storage: give exactly one of persistentVolumeClaim and hostPath, not both" }}
{{- end }}
{{- range $key := list "serviceMonitor" "podMonitor" }}
{{- if and (index $.Values $key).enabled $.Values.defaultServer.enabled (not $.Values.defaultServer.metrics.enabled) }}
{{- fail (printf "%s.enabled needs defaultServer.metrics.enabled: true (the server serves /metrics only when metrics are on)" $key) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
ovserve-operator's command line (operator/ovserve/operator/cli.py): the namespaces it watches
(all, or a list that matches the RBAC), its liveness endpoint and log level.
*/}}
{{- define "ovserve.operator.args" -}}
{{- $ns := include "ovserve.watchNamespaces" . }}
{{- if $ns }}
{{- range splitList "," $ns }}
- --namespace={{ . }}
{{- end }}
{{- else }}
- --all-namespaces
{{- end }}
- --liveness-port={{ .Values.operator.livenessPort }}
- --log-level={{ .Values.operator.logLevel }}
- --server-image={{ include "ovserve.defaultServer.image" . }}
{{- range .Values.operator.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end }}

{{/*
What the operator renders for an InferenceServer (operator/ovserve/operator/render.py): the
Service's name, its labels and the name of its REST port. Kept here so the ServiceMonitor and
the test pod follow the operator in one place.
*/}}
{{- define "ovserve.defaultServer.serviceName" -}}
{{- include "ovserve.defaultServer.name" . }}
{{- end }}

{{- define "ovserve.defaultServer.serviceLabels" -}}
app.kubernetes.io/name: ovserve-server
app.kubernetes.io/instance: {{ include "ovserve.defaultServer.name" . }}
{{- end }}

{{- define "ovserve.defaultServer.portName" -}}
http
{{- end }}

{{/*
Every pool's server pods and Services carry these labels (render.py: labels()): what the
Pod/ServiceMonitor and the NetworkPolicy select, so every InferenceServer is covered, not
only the default one.
*/}}
{{- define "ovserve.servers.selectorLabels" -}}
app.kubernetes.io/name: ovserve-server
app.kubernetes.io/managed-by: ovserve-operator
{{- end }}

{{/* Scheme of a monitor: its own value, else https when the default server serves TLS. */}}
{{- define "ovserve.monitorScheme" -}}
{{- $v := index . 0 }}
{{- $ctx := index . 1 }}
{{- if $v.scheme }}{{ $v.scheme }}{{ else }}{{ ternary "https" "http" (not (empty $ctx.Values.defaultServer.tlsSecretName)) }}{{ end }}
{{- end }}

{{/* namespaceSelector of the monitors: the watched namespaces, or any namespace. */}}
{{- define "ovserve.monitorNamespaceSelector" -}}
{{- $ns := include "ovserve.watchNamespaces" . }}
{{- if $ns }}
matchNames:
{{- range splitList "," $ns }}
  - {{ . }}
{{- end }}
{{- else }}
any: true
{{- end }}
{{- end }}

{{/* Relabelings shared by both monitors: a `server` label naming the InferenceServer. */}}
{{- define "ovserve.monitorRelabelings" -}}
- sourceLabels: [__meta_kubernetes_pod_label_ovserve_io_server]
  targetLabel: server
{{- end }}

{{/* Namespaces the NetworkPolicy is rendered in. */}}
{{- define "ovserve.networkPolicyNamespaces" -}}
{{- $ns := .Values.networkPolicy.namespaces }}
{{- if not $ns }}
{{- $w := include "ovserve.watchNamespaces" . }}
{{- $ns = ternary (splitList "," $w) (list .Release.Namespace) (not (empty $w)) }}
{{- end }}
{{- join "," (uniq $ns) }}
{{- end }}
