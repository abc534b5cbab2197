{{/*
Pod template of the RayJob's head, workers and submitter: the training image, restricted security,
a writable /tmp (Ray's session folder), shared memory for the object store and the run config.
Call with (dict "ctx" $ "name" "ray-head" "resources" (...) "ports" (list ...) "restartPolicy" "Never");
"database" true adds the gateway database URL (backtest jobs write their results there).
*/}}
{{- define "portfolio-os.rayPod" -}}
{{- $ctx := .ctx }}
metadata:
  labels:
    {{- include "portfolio-os.labels" (dict "ctx" $ctx "component" "ray") | nindent 4 }}
spec:
  {{- with .restartPolicy }}
  restartPolicy: {{ . }}
  {{- end }}
  serviceAccountName: {{ include "portfolio-os.componentName" (dict "ctx" $ctx "component" "ray") }}
  automountServiceAccountToken: false
  {{- include "portfolio-os.imagePullSecrets" $ctx | nindent 2 }}
  securityContext:
    {{- include "portfolio-os.podSecurityContext" $ctx | nindent 4 }}
  containers:
    - name: {{ .name }}
      image: {{ include "portfolio-os.image" $ctx.Values.images.training | quote }}
      imagePullPolicy: {{ $ctx.Values.images.pullPolicy }}
      {{- with .ports }}
      ports:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      env:
        {{- include "portfolio-os.commonEnv" $ctx | nindent 8 }}
        {{- include "portfolio-os.secretEnv" (dict "name" "EODHD_API_KEY" "ref" $ctx.Values.secrets.eodhdApiKey) | nindent 8 }}
        {{- if .database }}
        # Backtest jobs write their progress and results into the gateway's database.
        {{- include "portfolio-os.secretEnv" (dict "name" "PORTFOLIO_OS_DATABASE_URL" "ref" $ctx.Values.secrets.databaseUrl) | nindent 8 }}
        {{- end }}
      resources:
        {{- toYaml .resources | nindent 8 }}
      securityContext:
        {{- include "portfolio-os.containerSecurityContext" $ctx | nindent 8 }}
      volumeMounts:
        {{- include "portfolio-os.volumeMounts" $ctx | nindent 8 }}
        {{- include "portfolio-os.configVolumeMount" $ctx | nindent 8 }}
        # Ray's object store lives in shared memory.
        - name: dshm
          mountPath: /dev/shm
  volumes:
    {{- include "portfolio-os.volumes" $ctx | nindent 4 }}
    {{- include "portfolio-os.configVolume" $ctx | nindent 4 }}
    - name: dshm
      emptyDir:
        medium: Memory
        sizeLimit: 2Gi
{{- end }}

{{/*
The Ray dashboard the gateway submits backtest jobs to: backtests.rayAddress, else the chart's
RayCluster head service (KubeRay names it <cluster>-head-svc) when backtests are enabled, else empty.
*/}}
{{- define "portfolio-os.backtestsRayAddress" -}}
{{- if .Values.backtests.rayAddress -}}
{{ .Values.backtests.rayAddress }}
{{- else if .Values.backtests.enabled -}}
http://{{ include "portfolio-os.componentName" (dict "ctx" . "component" "backtests") }}-head-svc.{{ .Release.Namespace }}.svc.cluster.local:8265
{{- end -}}
{{- end }}
