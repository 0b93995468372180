{{/* Names and labels. */}}
{{- define "cml.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "cml.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Selector labels of one component: (dict "root" $ "component" "api") */}}
{{- define "cml.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cml.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "cml.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "cml.selectorLabels" . }}
app.kubernetes.io/part-of: cml-cloud-manager
{{- if .root.Chart.AppVersion }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- end }}

{{- define "cml.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "cml.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "cml.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Environment of every container: the settings map, then the secret references, then extraEnv.
Strings are rendered as they are, maps and lists as JSON (OIDC_ROLE_MAP, CML_INSTANCE_TAGS), numbers and booleans
as JSON scalars (1048576, not 1.048576e+06). A name in both settings and secretEnv is an error.
*/}}
{{- define "cml.env" -}}
{{- $root := . -}}
{{- range $name := keys .Values.settings | sortAlpha }}
{{- $value := index $root.Values.settings $name }}
{{- if hasKey $root.Values.secretEnv $name }}
{{- fail (printf "%s is in both settings and secretEnv: keep it in one" $name) }}
{{- end }}
{{- if not (kindIs "invalid" $value) }}
- name: {{ $name }}
  value: {{ if kindIs "string" $value }}{{ $value | quote }}{{ else }}{{ toJson $value | quote }}{{ end }}
{{- end }}
{{- end }}
{{- range $name := keys .Values.secretEnv | sortAlpha }}
{{- $ref := index $root.Values.secretEnv $name }}
{{- if not (kindIs "invalid" $ref) }}
{{- $secret := default $root.Values.existingSecret $ref.name }}
{{- if not $secret }}
{{- fail (printf "secretEnv.%s: set existingSecret (or secretEnv.%s.name) to the Secret that holds it" $name $name) }}
{{- end }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret | quote }}
      key: {{ default $name $ref.key | quote }}
      optional: {{ default false $ref.optional }}
{{- end }}
{{- end }}
{{- if .Values.authTokensSecret.name }}
{{- if hasKey .Values.settings "AUTH_TOKENS_FILE" }}
{{- fail "authTokensSecret sets AUTH_TOKENS_FILE: remove it from settings" }}
{{- end }}
- name: AUTH_TOKENS_FILE
  value: /etc/cml-cloud-manager/tokens/{{ .Values.authTokensSecret.key }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Volumes and mounts every container gets: /tmp (the root filesystem is read-only), the tokens file. */}}
{{- define "cml.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
{{- if .Values.authTokensSecret.name }}
- name: auth-tokens
  secret:
    secretName: {{ .Values.authTokensSecret.name }}
    defaultMode: 0440
{{- end }}
{{- end }}

{{- define "cml.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if .Values.authTokensSecret.name }}
- name: auth-tokens
  mountPath: /etc/cml-cloud-manager/tokens
  readOnly: true
{{- end }}
{{- end }}

{{/* Environment the chart sets for the container it runs in; not settable through `settings`. */}}
{{- define "cml.fixedEnv" -}}
{{- if .mode }}
- name: WORKER_MODE
  value: {{ .mode | quote }}
{{- end }}
- name: APP_HOST
  value: "0.0.0.0"
- name: APP_PORT
  value: {{ .root.Values.api.port | quote }}
- name: WORKER_HEALTH_HOST
  value: "0.0.0.0"
- name: WORKER_HEALTH_PORT
  value: {{ .root.Values.worker.healthPort | quote }}
- name: AUTH_ADMIN_TOKEN_FILE
  value: /tmp/admin-token
- name: FORWARDED_ALLOW_IPS
  {{- if and .root.Values.ingress.enabled (not .root.Values.forwardedAllowIps) }}
  {{- fail "forwardedAllowIps: set it to the ingress controller's pod addresses or network (e.g. 10.42.0.0/16): the API believes X-Forwarded-For from those alone" }}
  {{- end }}
  value: {{ .root.Values.forwardedAllowIps | quote }}
{{- end }}

{{- define "cml.podSpecCommon" -}}
serviceAccountName: {{ include "cml.serviceAccountName" . }}
automountServiceAccountToken: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end }}
