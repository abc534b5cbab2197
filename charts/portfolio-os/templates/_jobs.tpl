{{/*
A CronJob running one Portfolio OS job in the training image.
Call with (dict "ctx" $ "job" "materialize" "schedule" "..." "command" (list ...) "resources" (...) "env" (list of env maps)).
Every job pod uses the "jobs" ServiceAccount and carries the component label "jobs" plus portfolio-os.io/job.
*/}}
{{- define "portfolio-os.cronJob" -}}
{{- $ctx := .ctx }}
{{- $component := dict "ctx" $ctx "component" "jobs" }}
apiVersion: batch/v1
kind: CronJob
metadata:
  name: {{ include "portfolio-os.componentName" (dict "ctx" $ctx "component" .job) }}
  namespace: {{ $ctx.Release.Namespace }}
  labels:
    {{- include "portfolio-os.labels" $component | nindent 4 }}
    portfolio-os.io/job: {{ .job }}
spec:
  schedule: {{ .schedule | quote }}
  concurrencyPolicy: Forbid
  startingDeadlineSeconds: 3600
  successfulJobsHistoryLimit: {{ $ctx.Values.jobs.successfulJobsHistoryLimit }}
  failedJobsHistoryLimit: {{ $ctx.Values.jobs.failedJobsHistoryLimit }}
  jobTemplate:
    metadata:
      labels:
        {{- include "portfolio-os.labels" $component | nindent 8 }}
        portfolio-os.io/job: {{ .job }}
    spec:
      backoffLimit: {{ $ctx.Values.jobs.backoffLimit }}
      activeDeadlineSeconds: {{ $ctx.Values.jobs.activeDeadlineSeconds }}
      ttlSecondsAfterFinished: 86400
      template:
        metadata:
          labels:
            {{- include "portfolio-os.labels" $component | nindent 12 }}
            portfolio-os.io/job: {{ .job }}
          annotations:
            checksum/run-config: {{ $ctx.Values.runConfig | sha256sum }}
        spec:
          restartPolicy: Never
          serviceAccountName: {{ include "portfolio-os.componentName" $component }}
          automountServiceAccountToken: false
          {{- include "portfolio-os.imagePullSecrets" $ctx | nindent 10 }}
          securityContext:
            {{- include "portfolio-os.podSecurityContext" $ctx | nindent 12 }}
          containers:
            - name: {{ .job }}
              image: {{ include "portfolio-os.image" $ctx.Values.images.training | quote }}
              imagePullPolicy: {{ $ctx.Values.images.pullPolicy }}
              command:
                {{- toYaml .command | nindent 16 }}
              env:
                {{- include "portfolio-os.commonEnv" $ctx | nindent 16 }}
                {{- include "portfolio-os.secretEnv" (dict "name" "EODHD_API_KEY" "ref" $ctx.Values.secrets.eodhdApiKey) | nindent 16 }}
                {{- with .env }}
                {{- toYaml . | nindent 16 }}
                {{- end }}
              resources:
                {{- toYaml .resources | nindent 16 }}
              securityContext:
                {{- include "portfolio-os.containerSecurityContext" $ctx | nindent 16 }}
              volumeMounts:
                {{- include "portfolio-os.volumeMounts" $ctx | nindent 16 }}
                {{- include "portfolio-os.configVolumeMount" $ctx | nindent 16 }}
          volumes:
            {{- include "portfolio-os.volumes" $ctx | nindent 12 }}
            {{- include "portfolio-os.configVolume" $ctx | nindent 12 }}
{{- end }}
