{{/*
Egress rules every Portfolio OS workload needs towards its stores: the in-chart Redis and MLflow
when enabled, and the external endpoints (networkPolicy.externalCidrs x externalPorts) otherwise
and for PostgreSQL, S3 and data sources.
*/}}
{{- define "portfolio-os.inChartEgress" -}}
{{- if .Values.redis.enabled }}
- to:
    - podSelector:
        matchLabels:
          app.kubernetes.io/instance: {{ .Release.Name }}
          app.kubernetes.io/component: redis
  ports:
    - protocol: TCP
      port: 6379
{{- end }}
{{- if .Values.mlflow.enabled }}
- to:
    - podSelector:
        matchLabels:
          app.kubernetes.io/instance: {{ .Release.Name }}
          app.kubernetes.io/component: mlflow
  ports:
    - protocol: TCP
      port: {{ .Values.mlflow.port }}
{{- end }}
{{- if and .Values.networkPolicy.externalCidrs .Values.networkPolicy.externalPorts }}
- to:
    {{- include "portfolio-os.externalPeers" . | nindent 4 }}
  ports:
    {{- include "portfolio-os.externalPorts" . | nindent 4 }}
{{- end }}
{{- end }}

{{/* A pod peer of this release by component. Call with (dict "ctx" $ "component" "gateway"). */}}
{{- define "portfolio-os.peer" -}}
- podSelector:
    matchLabels:
      app.kubernetes.io/instance: {{ .ctx.Release.Name }}
      app.kubernetes.io/component: {{ .component }}
{{- end }}
{{/* External CIDR peers and ports; namespace peers from a list of names. */}}
{{- define "portfolio-os.externalPeers" -}}
{{- range .Values.networkPolicy.externalCidrs }}
- ipBlock:
    cidr: {{ . }}
{{- end }}
{{- end }}
{{- define "portfolio-os.externalPorts" -}}
{{- range .Values.networkPolicy.externalPorts }}
- protocol: TCP
  port: {{ . }}
{{- end }}
{{- end }}
{{- define "portfolio-os.namespacePeers" -}}
{{- range . }}
- namespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: {{ . }}
{{- end }}
{{- end }}
