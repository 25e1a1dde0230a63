{{/* vim: set filetype=mustache: */}}

{{- define "badge-bridge.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name, kept to 48 characters so suffixes such as "-worker-metrics" stay within the 63 of a
DNS label.
*/}}
{{- define "badge-bridge.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 48 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 48 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 48 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "badge-bridge.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "badge-bridge.selectorLabels" -}}
app.kubernetes.io/name: {{ include "badge-bridge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "badge-bridge.labels" -}}
helm.sh/chart: {{ include "badge-bridge.chart" . }}
{{ include "badge-bridge.selectorLabels" . }}
app.kubernetes.io/version: {{ include "badge-bridge.imageTag" . | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: badge-bridge
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one component: include with (dict "ctx" $ "component" "web"). */}}
{{- define "badge-bridge.componentSelectorLabels" -}}
{{ include "badge-bridge.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "badge-bridge.componentLabels" -}}
{{ include "badge-bridge.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "badge-bridge.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "badge-bridge.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "badge-bridge.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{- define "badge-bridge.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "badge-bridge.imageTag" .) }}
{{- end }}
{{- end }}

{{- define "badge-bridge.secretName" -}}
{{- default (printf "%s-secrets" (include "badge-bridge.fullname" .)) .Values.existingSecret.name }}
{{- end }}

{{- define "badge-bridge.mappingConfigMapName" -}}
{{- default (printf "%s-mapping" (include "badge-bridge.fullname" .)) .Values.existingMappingConfigMap }}
{{- end }}

{{- define "badge-bridge.mappingKey" -}}
{{- if .Values.existingMappingConfigMap }}
{{- .Values.existingMappingConfigMapKey }}
{{- else }}
{{- "mapping.yaml" }}
{{- end }}
{{- end }}

{{/*
The Secret data the chart creates from values: key -> value, only the values that are set.
Rendered as YAML; parse with fromYaml.
*/}}
{{- define "badge-bridge.secretValues" -}}
{{- $v := .Values }}
{{- $d := dict }}
{{- with $v.redis.url }}{{ $_ := set $d "redis-url" . }}{{ end }}
{{- with $v.badgr.username }}{{ $_ := set $d "badgr-username" . }}{{ end }}
{{- with $v.badgr.password }}{{ $_ := set $d "badgr-password" . }}{{ end }}
{{- with $v.badgr.clientSecret }}{{ $_ := set $d "badgr-client-secret" . }}{{ end }}
{{- with $v.webhook.secrets }}{{ $_ := set $d "webhook-secrets" (join "," .) }}{{ end }}
{{- with $v.webhook.tokens }}{{ $_ := set $d "webhook-tokens" (join "," .) }}{{ end }}
{{- with $v.webhook.queryTokens }}{{ $_ := set $d "webhook-query-tokens" (join "," .) }}{{ end }}
{{- with $v.admin.token }}{{ $_ := set $d "admin-token" . }}{{ end }}
{{- with $v.eventBus.redisUrl }}{{ $_ := set $d "eventbus-redis-url" . }}{{ end }}
{{- toYaml $d }}
{{- end }}

{{/* The secret keys available, from existingSecret.keys or the values that are set. */}}
{{- define "badge-bridge.secretKeys" -}}
{{- if .Values.existingSecret.name }}
{{- join "," (uniq .Values.existingSecret.keys) }}
{{- else }}
{{- join "," (keys (include "badge-bridge.secretValues" . | fromYaml) | sortAlpha) }}
{{- end }}
{{- end }}

{{/*
The secret keys one component mounts: (dict "ctx" $ "component" "web"|"worker").
web serves webhooks and the admin API; worker calls the badge host and reads the event bus.
*/}}
{{- define "badge-bridge.componentSecretKeys" -}}
{{- $ctx := .ctx }}
{{- $wanted := list "redis-url" "webhook-secrets" "webhook-tokens" "webhook-query-tokens" "admin-token" }}
{{- if eq .component "worker" }}
{{- $wanted = list "redis-url" "badgr-username" "badgr-password" "badgr-client-secret" }}
{{- if $ctx.Values.eventBus.enabled }}
{{- $wanted = append $wanted "eventbus-redis-url" }}
{{- end }}
{{- end }}
{{- $have := splitList "," (include "badge-bridge.secretKeys" $ctx) }}
{{- $out := list }}
{{- range $wanted }}
{{- if has . $have }}
{{- $out = append $out . }}
{{- end }}
{{- end }}
{{- join "," $out }}
{{- end }}

{{/* Checks that stop the render with a clear message. Included by every Deployment. */}}
{{- define "badge-bridge.validate" -}}
{{- $v := .Values }}
{{- if and $v.existingSecret.name (ne (include "badge-bridge.secretValues" . | fromYaml | len) 0) }}
{{- fail (printf "existingSecret.name is set: leave redis.url, badgr.username/password/clientSecret, webhook.*, admin.token and eventBus.redisUrl empty and put them in the Secret %q instead" $v.existingSecret.name) }}
{{- end }}
{{- if le (int $v.config.shutdownGraceSeconds) (int $v.badgr.timeoutSeconds) }}
{{- fail (printf "config.shutdownGraceSeconds (%d) must exceed badgr.timeoutSeconds (%d) so an in-flight call can finish" (int $v.config.shutdownGraceSeconds) (int $v.badgr.timeoutSeconds)) }}
{{- end }}
{{- if lt (int $v.config.settleSeconds) (int $v.badgr.timeoutSeconds) }}
{{- fail (printf "config.settleSeconds (%d) must be at least badgr.timeoutSeconds (%d)" (int $v.config.settleSeconds) (int $v.badgr.timeoutSeconds)) }}
{{- end }}
{{- if ne (empty $v.redis.sentinel.master) (empty $v.redis.sentinel.addrs) }}
{{- fail "redis.sentinel.master and redis.sentinel.addrs must be set together" }}
{{- end }}
{{- if and (not $v.existingMappingConfigMap) (not (trim $v.mapping)) }}
{{- fail "mapping is empty: set it to the mapping YAML (at least \"badges: []\") or set existingMappingConfigMap" }}
{{- end }}
{{- if $v.eventBus.enabled }}
{{- if not (has "eventbus-redis-url" (splitList "," (include "badge-bridge.secretKeys" .))) }}
{{- fail "eventBus.enabled is true but there is no event-bus Redis URL: set eventBus.redisUrl, or list eventbus-redis-url in existingSecret.keys" }}
{{- end }}
{{- end }}
{{- range $c := list "web" "worker" }}
{{- $pdb := (index $v $c).podDisruptionBudget }}
{{- if and $pdb.enabled (kindIs "invalid" $pdb.minAvailable) (kindIs "invalid" $pdb.maxUnavailable) }}
{{- fail (printf "%s.podDisruptionBudget: set minAvailable or maxUnavailable (or enabled: false)" $c) }}
{{- end }}
{{- $hpa := (index $v $c).autoscaling }}
{{- if and $hpa.enabled (gt (int $hpa.minReplicas) (int $hpa.maxReplicas)) }}
{{- fail (printf "%s.autoscaling.minReplicas (%d) exceeds maxReplicas (%d)" $c (int $hpa.minReplicas) (int $hpa.maxReplicas)) }}
{{- end }}
{{- if and $hpa.enabled (not $hpa.targetCPUUtilizationPercentage) (not $hpa.targetMemoryUtilizationPercentage) }}
{{- fail (printf "%s.autoscaling: set targetCPUUtilizationPercentage and/or targetMemoryUtilizationPercentage" $c) }}
{{- end }}
{{- end }}
{{- end }}

{{/* What is missing for a working release; listed by NOTES.txt (the pods would fail to start). */}}
{{- define "badge-bridge.missing" -}}
{{- $v := .Values }}
{{- $keys := splitList "," (include "badge-bridge.secretKeys" .) }}
{{- $out := list }}
{{- if and (not (has "redis-url" $keys)) (not $v.redis.sentinel.master) (not $v.redis.clusterAddrs) }}
{{- $out = append $out "redis.url (or redis.sentinel / redis.clusterAddrs, or redis-url in existingSecret.keys): every pod stops with \"BRIDGE_REDIS_URL: not set\"; development mode is not supported by this chart" }}
{{- end }}
{{- if not $v.badgr.url }}
{{- $out = append $out "badgr.url: the worker pods stop with \"BRIDGE_BADGR_URL: not set\"" }}
{{- end }}
{{- if not (or (has "webhook-secrets" $keys) (has "webhook-tokens" $keys) (has "webhook-query-tokens" $keys)) }}
{{- $out = append $out "webhook.secrets / webhook.tokens / webhook.queryTokens: with no webhook credential every webhook is refused with 401" }}
{{- end }}
{{- join "\n" $out }}
{{- end }}

{{/*
terminationGracePeriodSeconds of a component: (dict "ctx" $ "component" "web"|"worker").
Above the shutdown grace, so in-flight jobs get their whole BRIDGE_SHUTDOWN_GRACE before SIGKILL.
*/}}
{{- define "badge-bridge.terminationGrace" -}}
{{- $v := .ctx.Values }}
{{- $c := index $v .component }}
{{- $preStop := 0 }}
{{- if eq .component "web" }}{{ $preStop = int $c.preStopSleepSeconds }}{{ end }}
{{- $floor := add (int $v.config.shutdownGraceSeconds) $preStop }}
{{- if kindIs "invalid" $c.terminationGracePeriodSeconds }}
{{- add $floor (int $v.badgr.timeoutSeconds) 10 }}
{{- else if le (int $c.terminationGracePeriodSeconds) $floor }}
{{- fail (printf "%s.terminationGracePeriodSeconds (%d) must exceed config.shutdownGraceSeconds%s (%d), or in-flight work is killed before it can finish; leave it null to compute it" .component (int $c.terminationGracePeriodSeconds) (ternary " + web.preStopSleepSeconds" "" (gt $preStop 0)) $floor) }}
{{- else }}
{{- int $c.terminationGracePeriodSeconds }}
{{- end }}
{{- end }}

{{/*
The whole container env of a component: (dict "ctx" $ "component" "web"|"worker").
Variables named in extraEnv or <component>.extraEnv replace the chart's own (no duplicate names).
*/}}
{{- define "badge-bridge.env" -}}
{{- $v := .ctx.Values }}
{{- $c := index $v .component }}
{{- $env := list }}
{{- if eq .component "web" }}
{{- $env = append $env (dict "name" "BRIDGE_HTTP_ADDR" "value" ":8080") }}
{{- end }}
{{- $env = append $env (dict "name" "BRIDGE_DEV" "value" "false") }}
{{- $env = append $env (dict "name" "BRIDGE_ADMIN_ADDR" "value" ":8081") }}
{{- $env = append $env (dict "name" "BRIDGE_MAPPING_FILE" "value" "/etc/badge-bridge/mapping.yaml") }}
{{- with $v.badgr.url }}
{{- $env = append $env (dict "name" "BRIDGE_BADGR_URL" "value" .) }}
{{- end }}
{{- $env = append $env (dict "name" "BRIDGE_BADGR_CLIENT_ID" "value" $v.badgr.clientId) }}
{{- $env = append $env (dict "name" "BRIDGE_BADGR_SCOPE" "value" $v.badgr.scope) }}
{{- $env = append $env (dict "name" "BRIDGE_BADGR_RATE_LIMIT" "value" (toString (int $v.badgr.rateLimit))) }}
{{- $env = append $env (dict "name" "BRIDGE_BADGR_TIMEOUT" "value" (printf "%ds" (int $v.badgr.timeoutSeconds))) }}
{{- $env = append $env (dict "name" "BRIDGE_SHUTDOWN_GRACE" "value" (printf "%ds" (int $v.config.shutdownGraceSeconds))) }}
{{- $env = append $env (dict "name" "BRIDGE_SETTLE" "value" (printf "%ds" (int $v.config.settleSeconds))) }}
{{- $env = append $env (dict "name" "BRIDGE_MAX_RETRY" "value" (toString (int $v.config.maxRetry))) }}
{{- $env = append $env (dict "name" "BRIDGE_EVENT_RETENTION" "value" $v.config.eventRetention) }}
{{- $env = append $env (dict "name" "BRIDGE_LOG_LEVEL" "value" $v.config.logLevel) }}
{{- $env = append $env (dict "name" "BRIDGE_LOG_FORMAT" "value" $v.config.logFormat) }}
{{- with $v.redis.sentinel.master }}
{{- $env = append $env (dict "name" "BRIDGE_REDIS_SENTINEL_MASTER" "value" .) }}
{{- $env = append $env (dict "name" "BRIDGE_REDIS_SENTINEL_ADDRS" "value" (join "," $v.redis.sentinel.addrs)) }}
{{- end }}
{{- with $v.redis.clusterAddrs }}
{{- $env = append $env (dict "name" "BRIDGE_REDIS_CLUSTER_ADDRS" "value" (join "," .)) }}
{{- end }}
{{- $env = append $env (dict "name" "BRIDGE_REDIS_MIN_REPLICAS" "value" (toString (int $v.redis.minReplicas))) }}
{{- $env = append $env (dict "name" "BRIDGE_REDIS_WAIT_TIMEOUT" "value" $v.redis.waitTimeout) }}
{{- if eq .component "worker" }}
{{- $env = append $env (dict "name" "BRIDGE_WORKER_CONCURRENCY" "value" (toString (int $v.worker.concurrency))) }}
{{- if $v.eventBus.enabled }}
{{- $env = append $env (dict "name" "BRIDGE_EVENTBUS_STREAMS" "value" (join "," $v.eventBus.streams)) }}
{{- $env = append $env (dict "name" "BRIDGE_EVENTBUS_GROUP" "value" $v.eventBus.group) }}
{{- $env = append $env (dict "name" "BRIDGE_EVENTBUS_START" "value" $v.eventBus.start) }}
{{- end }}
{{- end }}
{{- range compact (splitList "," (include "badge-bridge.componentSecretKeys" .)) }}
{{- $env = append $env (dict "name" (printf "BRIDGE_%s_FILE" (. | upper | replace "-" "_")) "value" (printf "/etc/badge-bridge/secrets/%s" .)) }}
{{- end }}
{{- $extra := concat ($v.extraEnv | default list) ($c.extraEnv | default list) }}
{{- $extraNames := list }}
{{- range $extra }}{{ $extraNames = append $extraNames .name }}{{ end }}
{{- $out := list }}
{{- range $env }}
{{- if not (has .name $extraNames) }}{{ $out = append $out . }}{{ end }}
{{- end }}
{{- /* The last of several extra entries with one name wins, as in Kubernetes. */}}
{{- range $i, $e := $extra }}
{{- $later := false }}
{{- range $j, $f := $extra }}{{ if and (gt $j $i) (eq $f.name $e.name) }}{{ $later = true }}{{ end }}{{ end }}
{{- if not $later }}{{ $out = append $out $e }}{{ end }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{/* Pod template annotations: checksums so a mapping or chart-secret change rolls the pods. */}}
{{- define "badge-bridge.podAnnotations" -}}
{{- $ctx := .ctx }}
{{- if not $ctx.Values.existingMappingConfigMap }}
checksum/mapping: {{ $ctx.Values.mapping | sha256sum }}
{{- end }}
{{- if and (not $ctx.Values.existingSecret.name) (include "badge-bridge.secretValues" $ctx | fromYaml) }}
checksum/secret: {{ include "badge-bridge.secretValues" $ctx | sha256sum }}
{{- end }}
{{- with (index $ctx.Values .component).podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Volumes of a component: (dict "ctx" $ "component" "web"|"worker"). */}}
{{- define "badge-bridge.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
- name: mapping
  configMap:
    name: {{ include "badge-bridge.mappingConfigMapName" .ctx }}
    items:
      - key: {{ include "badge-bridge.mappingKey" .ctx }}
        path: mapping.yaml
{{- $keys := compact (splitList "," (include "badge-bridge.componentSecretKeys" .)) }}
{{- if $keys }}
- name: secrets
  secret:
    secretName: {{ include "badge-bridge.secretName" .ctx }}
    defaultMode: 0440
    items:
      {{- range $keys }}
      - key: {{ . }}
        path: {{ . }}
      {{- end }}
{{- end }}
{{- end }}

{{- define "badge-bridge.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: mapping
  mountPath: /etc/badge-bridge/mapping.yaml
  subPath: mapping.yaml
  readOnly: true
{{- if include "badge-bridge.componentSecretKeys" . }}
- name: secrets
  mountPath: /etc/badge-bridge/secrets
  readOnly: true
{{- end }}
{{- end }}

{{/* Whether a component's PDB is rendered: "true" or "". */}}
{{- define "badge-bridge.pdbEnabled" -}}
{{- $c := index .ctx.Values .component }}
{{- if $c.podDisruptionBudget.enabled }}
{{- if or $c.podDisruptionBudget.force (and $c.autoscaling.enabled (gt (int $c.autoscaling.minReplicas) 1)) (and (not $c.autoscaling.enabled) (gt (int $c.replicas) 1)) }}
{{- "true" }}
{{- end }}
{{- end }}
{{- end }}
