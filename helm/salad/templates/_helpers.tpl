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
The ConfigMap of one service: each key of <component>.config becomes SALAD_<UPPER_SNAKE_CASE> (null values are
left out); the chart adds the port, the log level and the URLs of the other services. Its Deployment hashes
it (checksum/config), so a setting rolls only the pods that read it.
Usage: include "salad.configMap" (dict "ctx" $ "component" "worker")
*/}}
{{- define "salad.configMap" -}}
{{- $ := .ctx }}
{{- $component := .component }}
{{- $values := index $.Values $component -}}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "salad.componentName" (dict "ctx" $ "component" $component) }}
  namespace: {{ $.Release.Namespace }}
  labels:
    {{- include "salad.componentLabels" (dict "ctx" $ "component" $component) | nindent 4 }}
data:
  SALAD_LOG_LEVEL: {{ $.Values.logLevel | quote }}
  SALAD_PORT: {{ $values.port | quote }}
  {{- if eq $component "master" }}
  SALAD_SHARED_URL: {{ include "salad.sharedUrl" $ | quote }}
  {{- end }}
  {{- if ne $component "master" }}
  {{- /* Workers lease tasks from Master; Shared reads from it what it shows of tasks and workers. */}}
  SALAD_MASTER_URL: {{ include "salad.masterUrl" $ | quote }}
  {{- end }}
  {{- range $key, $value := $values.config }}
  {{- if not (kindIs "invalid" $value) }}
  {{- $text := $value | toString }}
  {{- /* YAML numbers arrive as floats: write whole ones as integers (1048576, not 1.048576e+06). */}}
  {{- if and (kindIs "float64" $value) (eq $value (float64 (int64 $value))) }}
  {{- $text = int64 $value | toString }}
  {{- end }}
  {{ printf "SALAD_%s" ($key | snakecase | upper) }}: {{ $text | quote }}
  {{- end }}
  {{- end }}
{{- end }}

{{/*
Where the database comes from: "bundled" (the release's StatefulSet), "cloudnative-pg" (the release's
CloudNativePG Cluster) or "external" (database.url or database.existingSecret).
*/}}
{{- define "salad.databaseMode" -}}
{{- if .Values.postgresql.enabled }}
{{- .Values.postgresql.mode }}
{{- else }}
{{- print "external" }}
{{- end }}
{{- end }}

{{/*
Name of the CloudNativePG Cluster; the operator names its Services <cluster>-rw, -ro, -r and its Secrets
<cluster>-app, <cluster>-superuser after it.
*/}}
{{- define "salad.cnpg.clusterName" -}}
{{- include "salad.componentName" (dict "ctx" . "component" "postgresql") }}
{{- end }}

{{/*
The Secret holding the database URL, and its key: database.existingSecret, else the CloudNativePG operator's
app Secret (its "uri", on the <cluster>-rw Service), else the chart's own Secret.
*/}}
{{- define "salad.databaseSecretName" -}}
{{- if .Values.database.existingSecret }}
{{- .Values.database.existingSecret }}
{{- else if eq (include "salad.databaseMode" .) "cloudnative-pg" }}
{{- printf "%s-app" (include "salad.cnpg.clusterName" .) }}
{{- else }}
{{- include "salad.fullname" . }}
{{- end }}
{{- end }}

{{- define "salad.databaseSecretKey" -}}
{{- if and (not .Values.database.existingSecret) (eq (include "salad.databaseMode" .) "cloudnative-pg") }}
{{- print "uri" }}
{{- else }}
{{- .Values.database.secretKey }}
{{- end }}
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
{{- if and .Values.ingress.enabled (not .Values.ingress.hosts) }}
{{- fail "salad: ingress.enabled is true but ingress.hosts is empty: list at least one host (ingress.hosts[0].host and its paths), or set ingress.enabled=false." }}
{{- end }}
{{- /* Resource quantities: the schema's pattern error would be unreadable, so they are checked here. */}}
{{- $resources := dict "shared" .Values.shared.resources "master" .Values.master.resources "worker" $w.resources
      "migrations" .Values.migrations.resources "postgresql" .Values.postgresql.resources "tests" .Values.tests.resources
      "postgresql.cnpg" .Values.postgresql.cnpg.resources }}
{{- range $owner, $block := $resources }}
{{- range $section := list "requests" "limits" }}
{{- range $name, $quantity := index ($block | default dict) $section | default dict }}
{{- include "salad.validateQuantity" (dict "path" (printf "%s.resources.%s.%s" $owner $section $name) "value" $quantity) }}
{{- end }}
{{- end }}
{{- end }}
{{- with $w.autoscaling }}
{{- if and .enabled (gt (int .minReplicas) (int .maxReplicas)) }}
{{- fail (printf "salad: worker.autoscaling.minReplicas (%v) is above maxReplicas (%v): raise maxReplicas or lower minReplicas." .minReplicas .maxReplicas) }}
{{- end }}
{{- end }}
{{- with $w.keda }}
{{- if and .enabled (gt (int .minReplicaCount) (int .maxReplicaCount)) }}
{{- fail (printf "salad: worker.keda.minReplicaCount (%v) is above maxReplicaCount (%v): raise maxReplicaCount or lower minReplicaCount." .minReplicaCount .maxReplicaCount) }}
{{- end }}
{{- end }}
{{- $halfLease := divf (float64 .Values.master.config.leaseSeconds) 2 }}
{{- if ge (float64 $w.config.heartbeatInterval) $halfLease }}
{{- $message := "salad: worker.config.heartbeatInterval (%v) must be below half of master.config.leaseSeconds (%v s), or a lease may expire between two heartbeats: lower heartbeatInterval or raise leaseSeconds." }}
{{- fail (printf $message $w.config.heartbeatInterval $halfLease) }}
{{- end }}
{{- if ge (float64 .Values.master.config.reaperInterval) $halfLease }}
{{- $message := "salad: master.config.reaperInterval (%v) must be below half of master.config.leaseSeconds (%v s), or every reaper pass extends the leases instead of reaping them: lower reaperInterval or raise leaseSeconds." }}
{{- fail (printf $message .Values.master.config.reaperInterval $halfLease) }}
{{- end }}
{{- if eq (include "salad.databaseMode" .) "cloudnative-pg" }}
{{- $cluster := include "salad.cnpg.clusterName" . }}
{{- if or (gt (len $cluster) 50) (not (regexMatch "^[a-z]([-a-z0-9]*[a-z0-9])?$" $cluster)) }}
{{- fail (printf "salad: the CloudNativePG Cluster name %q must be a DNS label of at most 50 characters starting with a letter (the operator refuses others): shorten the release name or set fullnameOverride." $cluster) }}
{{- end }}
{{- end }}
{{- with $db.url }}
{{- if not (regexMatch "^(postgresql|postgres|postgresql\\+psycopg)://" .) }}
{{- /* Never print the URL: it holds the password. */}}
{{- $scheme := regexFind "^[A-Za-z][A-Za-z0-9+.-]*://" . }}
{{- $found := ternary (printf "it starts with %q" $scheme) "it has no scheme" (ne $scheme "") }}
{{- $message := "salad: database.url must be a PostgreSQL URL starting with postgresql://, postgres:// or postgresql+psycopg:// (e.g. postgresql://salad:secret@db.example.com:5432/salad); %s." }}
{{- fail (printf $message $found) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Fail unless value is a Kubernetes resource quantity (a non-negative number with an optional suffix).
Usage: include "salad.validateQuantity" (dict "path" "shared.resources.limits.cpu" "value" "500m")
*/}}
{{- define "salad.validateQuantity" -}}
{{- $text := toString .value }}
{{- if not (regexMatch "^([0-9]+(\\.[0-9]*)?|\\.[0-9]+)([eE][-+]?[0-9]+|[numkMGTPE]|[KMGTPE]i)?$" $text) }}
{{- $message := "salad: %s is %q, not a Kubernetes quantity: write e.g. 500m or 2 for CPU, 256Mi or 1Gi for memory (no space, no \"B\")." }}
{{- fail (printf $message .path $text) }}
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
The data of the release's Secret, unencoded, as a JSON object: the database URL (unless database.existingSecret
or CloudNativePG's Secret holds it), the bundled PostgreSQL's password, and the bearer tokens (unless
auth.existingSecret holds them).
Generated values are drawn once per rendering and kept on the root context, so that the Secret and the
checksums of the pods reading it see the same values. The URL and the password come from one draw, so the
URL always carries PostgreSQL's password.
Usage: include "salad.secretData" $ | fromJson
*/}}
{{- define "salad.secretData" -}}
{{- if not (hasKey . "saladSecretData") }}
{{- $data := dict }}
{{- $mode := include "salad.databaseMode" . }}
{{- $password := "" }}
{{- if eq $mode "bundled" }}
{{- $given := .Values.postgresql.auth.password }}
{{- $password = include "salad.secretValue" (dict "ctx" . "value" $given "key" "postgres-password") }}
{{- $_ := set $data "postgres-password" $password }}
{{- end }}
{{- if not .Values.database.existingSecret }}
{{- if eq $mode "bundled" }}
{{- $_ := set $data .Values.database.secretKey (include "salad.postgresql.url" (dict "ctx" . "password" $password)) }}
{{- else if eq $mode "external" }}
{{- $_ := set $data .Values.database.secretKey .Values.database.url }}
{{- end }}
{{- end }}
{{- if not .Values.auth.existingSecret }}
{{- range $role := list "client" "master" "worker" }}
{{- $key := printf "%s-token" $role }}
{{- $given := index $.Values.auth (printf "%sToken" $role) }}
{{- $_ := set $data $key (include "salad.secretValue" (dict "ctx" $ "value" $given "key" $key)) }}
{{- end }}
{{- end }}
{{- $_ := set . "saladSecretData" $data }}
{{- end }}
{{- toJson .saladSecretData }}
{{- end }}

{{/*
Checksum of exactly the secret values a component's container reads: its tokens and, for Shared and Master,
the database URL. A value kept in an existingSecret or in CloudNativePG's Secret is unknown to the chart: its
reference is hashed instead, so rotating it there needs a `kubectl rollout restart` (or a reloader).
Usage: include "salad.secretChecksum" (dict "ctx" $ "component" "worker")
*/}}
{{- define "salad.secretChecksum" -}}
{{- $values := .ctx.Values }}
{{- $data := include "salad.secretData" .ctx | fromJson }}
{{- $read := dict }}
{{- range $role := splitList " " (include "salad.tokenRoles" .component) }}
{{- $key := printf "%s-token" $role }}
{{- if $values.auth.existingSecret }}
{{- $_ := set $read $key (printf "secret %s" $values.auth.existingSecret) }}
{{- else }}
{{- $_ := set $read $key (index $data $key) }}
{{- end }}
{{- end }}
{{- if ne .component "worker" }}
{{- $name := include "salad.databaseSecretName" .ctx }}
{{- $key := include "salad.databaseSecretKey" .ctx }}
{{- if eq $name (include "salad.fullname" .ctx) }}
{{- $_ := set $read "database-url" (index $data $key) }}
{{- else }}
{{- $_ := set $read "database-url" (printf "secret %s/%s" $name $key) }}
{{- end }}
{{- end }}
{{- toJson $read | sha256sum }}
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
      key: {{ include "salad.databaseSecretKey" . }}
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
The callers whose bearer tokens a component's container gets, space-separated: Shared accepts clients and
Master, and presents the master token to Master's read API; Master accepts clients, workers and Shared (the
master token) and presents its own token to Shared; workers present theirs; the helm test is a client.
Usage: splitList " " (include "salad.tokenRoles" "shared")
*/}}
{{- define "salad.tokenRoles" -}}
{{- index (dict "shared" "client master" "master" "client master worker" "worker" "worker" "test" "client") . }}
{{- end }}

{{/*
The bearer tokens a component's container gets, from the tokens' Secret (see salad.tokenRoles).
Usage: include "salad.tokenEnv" (dict "ctx" $ "component" "shared")
*/}}
{{- define "salad.tokenEnv" -}}
{{- $secret := default (include "salad.fullname" .ctx) .ctx.Values.auth.existingSecret }}
{{- range splitList " " (include "salad.tokenRoles" .component) }}
- name: SALAD_{{ upper . }}_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ . }}-token
{{- end }}
{{- end }}
