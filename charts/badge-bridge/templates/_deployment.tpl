{{/*
One Deployment of the bridge: (dict "ctx" $ "component" "web"|"worker").
web runs `bridge serve` (public listener 8080 + admin listener 8081);
worker runs `bridge work` (admin listener 8081 only: health and metrics).
*/}}
{{- define "badge-bridge.deployment" -}}
{{- $ctx := .ctx }}
{{- $v := $ctx.Values }}
{{- $component := .component }}
{{- $c := index $v $component }}
{{- $web := eq $component "web" }}
{{- include "badge-bridge.validate" $ctx }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "badge-bridge.fullname" $ctx }}-{{ $component }}
  namespace: {{ $ctx.Release.Namespace }}
  labels:
    {{- include "badge-bridge.componentLabels" . | nindent 4 }}
spec:
  {{- if not $c.autoscaling.enabled }}
  replicas: {{ int $c.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "badge-bridge.componentSelectorLabels" . | nindent 6 }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 25%
      maxUnavailable: 0
  template:
    metadata:
      {{- with include "badge-bridge.podAnnotations" . | trim }}
      annotations:
        {{- . | nindent 8 }}
      {{- end }}
      labels:
        {{- include "badge-bridge.componentLabels" . | nindent 8 }}
        {{- with $c.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "badge-bridge.serviceAccountName" $ctx }}
      automountServiceAccountToken: {{ $v.serviceAccount.automountServiceAccountToken }}
      enableServiceLinks: false
      terminationGracePeriodSeconds: {{ include "badge-bridge.terminationGrace" . }}
      {{- with $v.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $c.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      {{- with $v.podSecurityContext }}
      securityContext:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: bridge
          image: {{ include "badge-bridge.image" $ctx | quote }}
          imagePullPolicy: {{ $v.image.pullPolicy }}
          args: [{{ ternary "serve" "work" $web | quote }}]
          {{- with $v.securityContext }}
          securityContext:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          ports:
            {{- if $web }}
            - name: http
              containerPort: 8080
              protocol: TCP
            {{- end }}
            - name: admin
              containerPort: 8081
              protocol: TCP
          env:
            {{- include "badge-bridge.env" . | trim | nindent 12 }}
          livenessProbe:
            httpGet:
              path: /healthz
              port: admin
            {{- toYaml $v.probes.liveness | nindent 12 }}
          readinessProbe:
            httpGet:
              path: /readyz
              port: {{ ternary "http" "admin" $web }}
            {{- toYaml $v.probes.readiness | nindent 12 }}
          {{- if and $web (gt (int $c.preStopSleepSeconds) 0) }}
          lifecycle:
            preStop:
              sleep:
                seconds: {{ int $c.preStopSleepSeconds }}
          {{- end }}
          {{- with $c.resources }}
          resources:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          volumeMounts:
            {{- include "badge-bridge.volumeMounts" . | trim | nindent 12 }}
      volumes:
        {{- include "badge-bridge.volumes" . | trim | nindent 8 }}
      {{- with $c.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $c.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $c.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $c.topologySpreadConstraints }}
      topologySpreadConstraints:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end }}
