{{/* Chart name, truncated to the 63 characters a DNS label allows. */}}
{{- define "tollgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-qualified name, used for every object. */}}
{{- define "tollgate.fullname" -}}
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

{{- define "tollgate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tollgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tollgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "tollgate.labels" -}}
helm.sh/chart: {{ include "tollgate.chart" . }}
{{ include "tollgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "tollgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tollgate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "tollgate.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* "true" when Redis is configured: replicas then share keys, limits and budgets. */}}
{{- define "tollgate.redisEnabled" -}}
{{- if or .Values.redis.url .Values.redis.existingSecret }}true{{ end }}
{{- end }}

{{- define "tollgate.clickhouseEnabled" -}}
{{- if or .Values.clickhouse.url .Values.clickhouse.existingSecret }}true{{ end }}
{{- end }}

{{- define "tollgate.pvcName" -}}
{{- default (printf "%s-data" (include "tollgate.fullname" .)) .Values.persistence.existingClaim }}
{{- end }}

{{/*
Checks that JSON Schema cannot express (values.schema.json covers the rest). Renders nothing;
fails the install with a message instead.
*/}}
{{- define "tollgate.validate" -}}
{{- $needed := add .Values.preStopSleepSeconds .Values.shutdownGraceSeconds 5 }}
{{- if le (int .Values.terminationGracePeriodSeconds) (int $needed) }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must exceed preStopSleepSeconds + shutdownGraceSeconds + 5 = %d, or Kubernetes kills Tollgate before in-flight requests drain" (int .Values.terminationGracePeriodSeconds) (int $needed)) }}
{{- end }}
{{- if not (include "tollgate.redisEnabled" .) }}
{{- if and (not .Values.allowSqliteReplicas) (or (gt (int .Values.replicaCount) 1) .Values.hpa.enabled) }}
{{- fail "more than one replica (replicaCount > 1 or hpa.enabled) needs Redis (redis.url or redis.existingSecret): with the SQLite store every replica keeps its own keys, limits and budgets. Set allowSqliteReplicas=true only if that is what you want" }}
{{- end }}
{{- end }}
{{- if .Values.persistence.enabled }}
{{- if or (gt (int .Values.replicaCount) 1) .Values.hpa.enabled }}
{{- fail "persistence.enabled keeps one replica's SQLite files on a ReadWriteOnce volume: use replicaCount 1 and no HPA (use Redis to scale out)" }}
{{- end }}
{{- end }}
{{- if .Values.hpa.enabled }}
{{- if and (not .Values.hpa.targetCPUUtilizationPercentage) (not .Values.hpa.targetMemoryUtilizationPercentage) }}
{{- fail "hpa.enabled needs hpa.targetCPUUtilizationPercentage or hpa.targetMemoryUtilizationPercentage" }}
{{- end }}
{{- if lt (int .Values.hpa.maxReplicas) (int .Values.hpa.minReplicas) }}
{{- fail "hpa.maxReplicas must be at least hpa.minReplicas" }}
{{- end }}
{{- end }}
{{- if and .Values.clickhouse.passwordKey (not .Values.secrets.existingSecret) }}
{{- fail "clickhouse.passwordKey names a key inside secrets.existingSecret, which is empty" }}
{{- end }}
{{- if regexMatch "(?m)^\\s*\\[store\\]" .Values.config.toml }}
{{- fail "config.toml must not have a [store] section: the chart sets the store (SQLite under /var/lib/tollgate, or Redis from redis.*), and the replica checks rely on redis.*" }}
{{- end }}
{{- end }}
