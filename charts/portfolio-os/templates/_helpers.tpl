{{/*
Expand the name of the chart.
*/}}
{{- define "portfolio-os.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create a default fully qualified app name, truncated at 63 characters (the DNS label limit).
If the release name contains the chart name it is used as the full name.
*/}}
{{- define "portfolio-os.fullname" -}}
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

{{/*
Chart name and version, as used by the helm.sh/chart label.
*/}}
{{- define "portfolio-os.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels. Call with (dict "ctx" $ "component" "gateway").
*/}}
{{- define "portfolio-os.labels" -}}
helm.sh/chart: {{ include "portfolio-os.chart" .ctx }}
{{ include "portfolio-os.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: portfolio-os
{{- end }}

{{/*
Selector labels (stable across upgrades: never helm.sh/chart or the version).
*/}}
{{- define "portfolio-os.selectorLabels" -}}
app.kubernetes.io/name: {{ include "portfolio-os.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
Name of a component's resources: <fullname>-<component>, at most 63 characters.
Call with (dict "ctx" $ "component" "gateway").
*/}}
{{- define "portfolio-os.componentName" -}}
{{- printf "%s-%s" (include "portfolio-os.fullname" .ctx | trunc (int (sub 62 (len .component))) | trimSuffix "-") .component }}
{{- end }}

{{/*
InferenceService name of a model: DNS-1035 (underscores become dashes) and short enough for the
Knative revision and route names KServe derives from it. Call with (dict "ctx" $ "model" "sentiment_signal").
*/}}
{{- define "portfolio-os.isvcName" -}}
{{- $model := .model | replace "_" "-" }}
{{- printf "%s-%s" (include "portfolio-os.fullname" .ctx | trunc (int (sub 44 (len $model))) | trimSuffix "-") $model }}
{{- end }}

{{/*
A container image reference: repository:tag.
*/}}
{{- define "portfolio-os.image" -}}
{{- printf "%s:%s" .repository .tag }}
{{- end }}

{{/*
Restricted pod security context (Pod Security Standards "restricted").
*/}}
{{- define "portfolio-os.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.podSecurity.runAsUser }}
runAsGroup: {{ .Values.podSecurity.runAsGroup }}
fsGroup: {{ .Values.podSecurity.fsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
Restricted container security context.
*/}}
{{- define "portfolio-os.containerSecurityContext" -}}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: {{ .Values.podSecurity.runAsUser }}
runAsGroup: {{ .Values.podSecurity.runAsGroup }}
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
Image pull secrets of a pod spec.
*/}}
{{- define "portfolio-os.imagePullSecrets" -}}
{{- with .Values.images.pullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The MLflow tracking URI every component uses: the in-chart server or the external one.
*/}}
{{- define "portfolio-os.trackingUri" -}}
{{- if .Values.mlflow.enabled }}
{{- printf "http://%s:%d" (include "portfolio-os.componentName" (dict "ctx" . "component" "mlflow")) (int .Values.mlflow.port) }}
{{- else }}
{{- .Values.endpoints.mlflowUrl }}
{{- end }}
{{- end }}

{{/*
An env entry read from a Secret reference; nothing when the reference is empty.
Call with (dict "name" "PORTFOLIO_OS_API_KEY_PEPPER" "ref" .Values.secrets.apiKeyPepper).
*/}}
{{- define "portfolio-os.secretEnv" -}}
{{- if .ref.existingSecret }}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ .ref.existingSecret }}
      key: {{ .ref.key }}
{{- end }}
{{- end }}

{{/*
Environment shared by every Portfolio OS container: telemetry off (training/environment.py),
settings environment, data folder, tracking URI and the feature store endpoints.
The Redis URL comes from the in-chart Redis in dev, from a Secret otherwise.
*/}}
{{- define "portfolio-os.commonEnv" -}}
- name: PORTFOLIO_OS_ENVIRONMENT
  value: {{ .Values.environment | quote }}
- name: PORTFOLIO_OS_DATA_DIR
  value: {{ .Values.dataDir | quote }}
- name: PORTFOLIO_OS_TRACKING_URI
  value: {{ include "portfolio-os.trackingUri" . | quote }}
- name: HOME
  value: /tmp
- name: FEAST_USAGE
  value: "False"
- name: DO_NOT_TRACK
  value: "1"
- name: MLFLOW_DISABLE_TELEMETRY
  value: "true"
- name: HF_HUB_OFFLINE
  value: "1"
- name: RAY_USAGE_STATS_ENABLED
  value: "0"
- name: PYTHONDONTWRITEBYTECODE
  value: "1"
- name: PYTHONUNBUFFERED
  value: "1"
{{- if .Values.redis.enabled }}
- name: PORTFOLIO_OS_REDIS_URL
  value: {{ printf "redis://%s:6379/0" (include "portfolio-os.componentName" (dict "ctx" . "component" "redis")) | quote }}
{{- else }}
{{- include "portfolio-os.secretEnv" (dict "name" "PORTFOLIO_OS_REDIS_URL" "ref" .Values.secrets.redisUrl) }}
{{- end }}
{{- include "portfolio-os.secretEnv" (dict "name" "PORTFOLIO_OS_REGISTRY_URL" "ref" .Values.secrets.registryUrl) }}
{{- end }}

{{/*
Volumes every Portfolio OS pod mounts: a writable /tmp (the root filesystem is read-only) and the
data folder (PVC when persistence is on, scratch emptyDir otherwise).
*/}}
{{- define "portfolio-os.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: 1Gi
- name: data
{{- if .Values.persistence.enabled }}
  persistentVolumeClaim:
    claimName: {{ .Values.persistence.existingClaim | default (include "portfolio-os.componentName" (dict "ctx" . "component" "data")) }}
{{- else }}
  emptyDir:
    sizeLimit: 10Gi
{{- end }}
{{- end }}

{{- define "portfolio-os.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: data
  mountPath: /data
{{- end }}

{{/*
The run configuration volume and mount (jobs only).
*/}}
{{- define "portfolio-os.configVolume" -}}
- name: run-config
  configMap:
    name: {{ include "portfolio-os.componentName" (dict "ctx" . "component" "run-config") }}
{{- end }}

{{- define "portfolio-os.configVolumeMount" -}}
- name: run-config
  mountPath: /config
  readOnly: true
{{- end }}

{{/*
Gateway PORTFOLIO_OS_MODEL_URLS: model name -> KServe predictor URL, for every enabled model.
*/}}
{{- define "portfolio-os.modelUrls" -}}
{{- $urls := dict }}
{{- if .Values.inferenceServices.enabled }}
{{- $ns := .Values.endpoints.modelNamespace | default .Release.Namespace }}
{{- range $name, $model := .Values.inferenceServices.models }}
{{- if $model.enabled }}
{{- $_ := set $urls $name (printf "http://%s-predictor.%s.svc.%s" (include "portfolio-os.isvcName" (dict "ctx" $ "model" $name)) $ns $.Values.endpoints.clusterDomain) }}
{{- end }}
{{- end }}
{{- end }}
{{- toJson $urls }}
{{- end }}

{{/*
ServiceAccount of a component (one per component, token not mounted unless stated).
Call with (dict "ctx" $ "component" "gateway").
*/}}
{{- define "portfolio-os.serviceAccount" -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "portfolio-os.componentName" . }}
  namespace: {{ .ctx.Release.Namespace }}
  labels:
    {{- include "portfolio-os.labels" . | nindent 4 }}
  {{- with .ctx.Values.serviceAccount.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
automountServiceAccountToken: false
{{- end }}
