{{/*
Expand the name of the chart.
*/}}
{{- define "salad.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create a default fully qualified app name, cut to 63 characters (some Kubernetes name fields are limited to
this by the DNS naming spec). If the release name contains the chart name it is used as the full name.
*/}}
{{- define "salad.fullname" -}}
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
Name of one component's objects: <fullname>-<component>, cut to 63 characters.
Usage: include "salad.componentName" (dict "ctx" $ "component" "worker")
*/}}
{{- define "salad.componentName" -}}
{{- printf "%s-%s" (include "salad.fullname" .ctx | trunc (int (sub 62 (len .component)))) .component | trimSuffix "-" }}
{{- end }}

{{/*
Chart name and version as used by the helm.sh/chart label.
*/}}
{{- define "salad.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels of every object.
*/}}
{{- define "salad.labels" -}}
helm.sh/chart: {{ include "salad.chart" . }}
{{ include "salad.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: salad
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Selector labels shared by every component of the release.
*/}}
{{- define "salad.selectorLabels" -}}
app.kubernetes.io/name: {{ include "salad.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels and selector labels of one component.
Usage: include "salad.componentLabels" (dict "ctx" $ "component" "shared")
*/}}
{{- define "salad.componentLabels" -}}
{{ include "salad.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "salad.componentSelectorLabels" -}}
{{ include "salad.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
Name of the ServiceAccount of the services.
*/}}
{{- define "salad.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "salad.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Image reference of a service: [registry/]repository:tag, the tag falling back to image.tag, then to the
chart's appVersion. Usage: include "salad.image" (dict "ctx" $ "image" .Values.worker.image)
*/}}
{{- define "salad.image" -}}
{{- $registry := .ctx.Values.image.registry }}
{{- $tag := .image.tag | default .ctx.Values.image.tag | default .ctx.Chart.AppVersion | toString }}
{{- if $registry }}
{{- printf "%s/%s:%s" (trimSuffix "/" $registry) .image.repository $tag }}
{{- else }}
{{- printf "%s:%s" .image.repository $tag }}
{{- end }}
{{- end }}

{{/*
Base URLs of Shared and Master inside the namespace (SALAD_SHARED_URL, SALAD_MASTER_URL).
*/}}
{{- define "salad.sharedUrl" -}}
{{- $host := include "salad.componentName" (dict "ctx" . "component" "shared") }}
{{- printf "http://%s:%d" $host (int .Values.shared.service.port) }}
{{- end }}

{{- define "salad.masterUrl" -}}
{{- $host := include "salad.componentName" (dict "ctx" . "component" "master") }}
{{- printf "http://%s:%d" $host (int .Values.master.service.port) }}
{{- end }}

{{/*
The Secret holding the database URL, and its key: database.existingSecret, or the chart's own Secret.
*/}}
{{- define "salad.databaseSecretName" -}}
{{- default (include "salad.fullname" .) .Values.database.existingSecret }}
{{- end }}

{{/*
Fail early on values that cannot work, rather than rendering a release that never becomes ready.
*/}}
{{- define "salad.validateValues" -}}
{{- $db := .Values.database }}
{{- if not (or .Values.postgresql.enabled $db.url $db.existingSecret) }}
{{- fail "salad: no database. Set postgresql.enabled=true, database.url or database.existingSecret." }}
{{- end }}
{{- $w := .Values.worker }}
{{- if and $w.autoscaling.enabled $w.keda.enabled }}
{{- fail "salad: worker.autoscaling and worker.keda both scale the workers; enable one (KEDA makes an HPA)." }}
{{- end }}
{{- $grace := float64 $w.config.graceSeconds }}
{{- $longestTask := mulf (float64 .Values.master.config.executionTimeMax) (float64 $w.config.timeScale) }}
{{- if lt $grace $longestTask }}
{{- $message := "salad: worker.config.graceSeconds (%v) must cover the longest task, %v s (%s)." }}
{{- fail (printf $message $grace $longestTask "master.config.executionTimeMax x worker.config.timeScale") }}
{{- end }}
{{- $drain := addf $grace (float64 $w.preStopSleepSeconds) }}
{{- if le (float64 $w.terminationGracePeriodSeconds) $drain }}
{{- $message := "salad: worker.terminationGracePeriodSeconds (%v) must exceed %v s (%s), or busy workers get killed." }}
{{- fail (printf $message $w.terminationGracePeriodSeconds $drain "graceSeconds + preStopSleepSeconds") }}
{{- end }}
{{- end }}

{{/*
A generated secret value: the one given in values, else the one stored under key in the release's Secret
(kept across upgrades), else a new random one. Each call may draw anew: call it once per render and key.
Usage: include "salad.secretValue" (dict "ctx" $ "value" .Values.auth.clientToken "key" "client-token")
*/}}
{{- define "salad.secretValue" -}}
{{- if .value }}
{{- .value }}
{{- else }}
{{- $existing := lookup "v1" "Secret" .ctx.Release.Namespace (include "salad.fullname" .ctx) | default dict }}
{{- $stored := dig "data" .key "" $existing }}
{{- if $stored }}
{{- $stored | b64dec }}
{{- else }}
{{- randAlphaNum 40 }}
{{- end }}
{{- end }}
{{- end }}

{{/*
URL of the bundled PostgreSQL for a given password (psycopg 3 reads postgresql:// URLs).
Usage: include "salad.postgresql.url" (dict "ctx" $ "password" $password)
*/}}
{{- define "salad.postgresql.url" -}}
{{- $auth := .ctx.Values.postgresql.auth }}
{{- $host := include "salad.componentName" (dict "ctx" .ctx "component" "postgresql") }}
{{- $password := urlquery .password | replace "+" "%20" }}
{{- printf "postgresql://%s:%s@%s:5432/%s" (urlquery $auth.username) $password $host $auth.database }}
{{- end }}

{{/*
Scheduling keys of a component's pods: its own value when set, else the chart-wide one.
Usage: include "salad.scheduling" (dict "ctx" $ "values" $values)
*/}}
{{- define "salad.scheduling" -}}
{{- with .values.nodeSelector | default .ctx.Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations | default .ctx.Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity | default .ctx.Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- end }}

{{/*
Pod-level settings shared by every salad pod: service account, pull secrets, security context.
*/}}
{{- define "salad.podCommon" -}}
serviceAccountName: {{ include "salad.serviceAccountName" . }}
automountServiceAccountToken: false
# No SALAD_*-like variables injected for the namespace's Services: settings come from the ConfigMap only.
enableServiceLinks: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end }}

{{/*
SALAD_DATABASE_URL from the database Secret.
*/}}
{{- define "salad.databaseUrlEnv" -}}
- name: SALAD_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "salad.databaseSecretName" . }}
      key: {{ .Values.database.secretKey }}
{{- end }}

{{/*
The init container of Shared and Master pods: `salad migrate` brings the schema to the image's revision
before the service starts. It waits for a database still starting (the bundled PostgreSQL on install);
pods starting together take turns under a PostgreSQL advisory lock. So install (with or without --wait),
upgrade, kustomize and skaffold all migrate first, and no hook has to wait for readiness that needs it.
Usage: include "salad.migrateInitContainer" (dict "ctx" $ "image" $values.image)
*/}}
{{- define "salad.migrateInitContainer" -}}
- name: migrate
  image: {{ include "salad.image" (dict "ctx" .ctx "image" .image) | quote }}
  imagePullPolicy: {{ .ctx.Values.image.pullPolicy }}
  args: ["migrate", "--wait", {{ .ctx.Values.migrations.waitSeconds | quote }}]
  env:
    - name: SALAD_LOG_LEVEL
      value: {{ .ctx.Values.logLevel | quote }}
    {{- include "salad.databaseUrlEnv" .ctx | nindent 4 }}
  resources:
    {{- toYaml .ctx.Values.migrations.resources | nindent 4 }}
  securityContext:
    {{- toYaml .ctx.Values.securityContext | nindent 4 }}
  volumeMounts:
    - name: tmp
      mountPath: /tmp
{{- end }}

{{/*
The bearer tokens a component's container gets, from the tokens' Secret: Shared accepts clients and
Master; Master accepts clients and workers and presents its own token to Shared; workers present theirs;
the helm test is a client.
Usage: include "salad.tokenEnv" (dict "ctx" $ "component" "shared")
*/}}
{{- define "salad.tokenEnv" -}}
{{- $roles := dict "shared" "client master" "master" "client master worker" "worker" "worker" "test" "client" }}
{{- $secret := default (include "salad.fullname" .ctx) .ctx.Values.auth.existingSecret }}
{{- range splitList " " (index $roles .component) }}
- name: SALAD_{{ upper . }}_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ . }}-token
{{- end }}
{{- end }}
