{{/* Names and labels. */}}
{{- define "triage.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "triage.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "ingest"). */}}
{{- define "triage.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "triage.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "triage.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* An image reference: (dict "root" $ "image" .image). */}}
{{- define "triage.image" -}}
{{- $tag := .image.tag | default .root.Values.image.tag | default .root.Chart.AppVersion -}}
{{- if .root.Values.image.registry -}}
{{- printf "%s/%s:%s" (trimSuffix "/" .root.Values.image.registry) .image.repository $tag -}}
{{- else -}}
{{- printf "%s:%s" .image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* The services that read or write documents' bytes (the router does not). */}}
{{- define "triage.blobServices" -}}
{{- list "ingest" "classifier" "review-ui" | toJson -}}
{{- end -}}

{{/* Values the chart cannot work without, and combinations the services would refuse at
start: said at install time, one line each. */}}
{{- define "triage.validate" -}}
{{- $k := .Values.kafka -}}
{{- if not $k.bootstrap -}}
{{- fail "kafka.bootstrap is required (the brokers, host:port,host:port)" -}}
{{- end -}}
{{- if not .Values.database.existingSecret -}}
{{- fail "database.existingSecret is required: a Secret whose key database.urlKey holds TRIAGE_DATABASE_URL" -}}
{{- end -}}
{{- if not .Values.blobStore.url -}}
{{- fail "blobStore.url is required (s3://bucket/prefix): the replicas share one document store" -}}
{{- end -}}
{{- if hasPrefix "SASL_" $k.securityProtocol -}}
{{- if not (and $k.sasl.mechanism $k.sasl.username $k.sasl.existingSecret) -}}
{{- fail (printf "kafka.securityProtocol %s needs kafka.sasl.mechanism, kafka.sasl.username and kafka.sasl.existingSecret" $k.securityProtocol) -}}
{{- end -}}
{{- else if $k.sasl.existingSecret -}}
{{- fail (printf "kafka.sasl is set but kafka.securityProtocol %s does not use SASL" $k.securityProtocol) -}}
{{- end -}}
{{- if and $k.tls.existingSecret (not (hasSuffix "SSL" $k.securityProtocol)) -}}
{{- fail (printf "kafka.tls.existingSecret is set but kafka.securityProtocol %s does not use TLS" $k.securityProtocol) -}}
{{- end -}}
{{- if and $k.tls.clientCertificate (not $k.tls.existingSecret) -}}
{{- fail "kafka.tls.clientCertificate needs kafka.tls.existingSecret (the Secret with the certificate and key)" -}}
{{- end -}}
{{- end -}}

{{/* The environment every container of the release has: Kafka, PostgreSQL, topics, the
metrics token, the release-wide env. Secrets come by reference only. */}}
{{- define "triage.commonEnv" -}}
{{- $k := .Values.kafka -}}
- name: TRIAGE_KAFKA_BOOTSTRAP
  value: {{ $k.bootstrap | quote }}
- name: TRIAGE_KAFKA_SECURITY_PROTOCOL
  value: {{ $k.securityProtocol | quote }}
{{- if hasPrefix "SASL_" $k.securityProtocol }}
- name: TRIAGE_KAFKA_SASL_MECHANISM
  value: {{ $k.sasl.mechanism | quote }}
- name: TRIAGE_KAFKA_SASL_USERNAME
  value: {{ $k.sasl.username | quote }}
- name: TRIAGE_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ $k.sasl.existingSecret | quote }}, key: {{ $k.sasl.passwordKey | quote }}}
{{- end }}
{{- if hasSuffix "SSL" $k.securityProtocol }}
- name: TRIAGE_KAFKA_SSL_CHECK_HOSTNAME
  value: {{ $k.tls.checkHostname | quote }}
{{- if $k.tls.existingSecret }}
- name: TRIAGE_KAFKA_SSL_CA_FILE
  value: /etc/triage/kafka-tls/{{ $k.tls.caKey }}
{{- if $k.tls.clientCertificate }}
- name: TRIAGE_KAFKA_SSL_CERT_FILE
  value: /etc/triage/kafka-tls/{{ $k.tls.certKey }}
- name: TRIAGE_KAFKA_SSL_KEY_FILE
  value: /etc/triage/kafka-tls/{{ $k.tls.keyKey }}
{{- if $k.tls.keyPasswordKey }}
- name: TRIAGE_KAFKA_SSL_KEY_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ $k.tls.existingSecret | quote }}, key: {{ $k.tls.keyPasswordKey | quote }}}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- if $k.topicPrefix }}
- name: TRIAGE_TOPIC_PREFIX
  value: {{ $k.topicPrefix | quote }}
{{- end }}
- name: TRIAGE_DATABASE_URL
  valueFrom:
    secretKeyRef: {name: {{ .Values.database.existingSecret | quote }}, key: {{ .Values.database.urlKey | quote }}}
{{- if .Values.metrics.existingSecret }}
- name: TRIAGE_METRICS_TOKEN
  valueFrom:
    secretKeyRef: {name: {{ .Values.metrics.existingSecret | quote }}, key: {{ .Values.metrics.tokenKey | quote }}}
{{- end }}
{{- range $name, $value := .Values.env }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end -}}

{{/* The S3 store's settings, for the services that read or write documents or models. */}}
{{- define "triage.s3Env" -}}
- name: TRIAGE_BLOB_URL
  value: {{ .Values.blobStore.url | quote }}
- name: TRIAGE_BLOB_DIR
  value: /data/blobs
{{- with .Values.s3.endpointUrl }}
- name: TRIAGE_S3_ENDPOINT_URL
  value: {{ . | quote }}
{{- end }}
{{- with .Values.s3.region }}
- name: TRIAGE_S3_REGION
  value: {{ . | quote }}
{{- end }}
{{- if .Values.s3.existingSecret }}
- name: TRIAGE_S3_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef: {name: {{ .Values.s3.existingSecret | quote }}, key: {{ .Values.s3.accessKeyIdKey | quote }}}
- name: TRIAGE_S3_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef: {name: {{ .Values.s3.existingSecret | quote }}, key: {{ .Values.s3.secretAccessKeyKey | quote }}}
{{- end }}
{{- end -}}

{{/* The Kafka TLS Secret as a read-only volume, when there is one. */}}
{{- define "triage.kafkaTlsVolume" -}}
{{- if and (hasSuffix "SSL" .Values.kafka.securityProtocol) .Values.kafka.tls.existingSecret }}
- name: kafka-tls
  secret:
    secretName: {{ .Values.kafka.tls.existingSecret | quote }}
    defaultMode: 0440
{{- end }}
{{- end -}}

{{- define "triage.kafkaTlsMount" -}}
{{- if and (hasSuffix "SSL" .Values.kafka.securityProtocol) .Values.kafka.tls.existingSecret }}
- name: kafka-tls
  mountPath: /etc/triage/kafka-tls
  readOnly: true
{{- end }}
{{- end -}}

{{/* One NetworkPolicy egress rule from {ports, to}: to any address when `to` is empty. */}}
{{- define "triage.egressRule" -}}
- ports: {{- toYaml .ports | nindent 4 }}
{{- with .to }}
  to: {{- toYaml . | nindent 4 }}
{{- end }}
{{- end -}}

{{/* KEDA's names for the Kafka SASL mechanisms. */}}
{{- define "triage.kedaSasl" -}}
{{- $m := dict "PLAIN" "plaintext" "SCRAM-SHA-256" "scram_sha256" "SCRAM-SHA-512" "scram_sha512" -}}
{{- get $m . -}}
{{- end -}}
