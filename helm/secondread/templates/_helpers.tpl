{{/* Names, labels and the two configuration files shared by several objects. */}}

{{- define "secondread.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "secondread.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "secondread.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "secondread.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: secondread
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component: node, worker or migrate. */}}
{{- define "secondread.selectorLabels" -}}
app.kubernetes.io/name: {{ include "secondread.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "secondread.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "secondread.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* repository:tag, or repository@digest when a digest is given; the tag defaults to appVersion. */}}
{{- define "secondread.image" -}}
{{- $img := index .root.Values.image .which -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository (default .root.Chart.AppVersion $img.tag) -}}
{{- end -}}
{{- end -}}

{{/* The Secret and key holding the database URL the node and the migration job read. */}}
{{- define "secondread.databaseSecretName" -}}
{{- if .Values.database.existingSecret -}}
{{- .Values.database.existingSecret -}}
{{- else if .Values.cnpg.enabled -}}
{{- printf "%s-app" (include "secondread.cnpgClusterName" .) -}}
{{- end -}}
{{- end -}}

{{- define "secondread.databaseSecretKey" -}}
{{- if .Values.database.existingSecret -}}
{{- .Values.database.existingSecretKey -}}
{{- else -}}
uri
{{- end -}}
{{- end -}}

{{- define "secondread.cnpgClusterName" -}}
{{- printf "%s-db" (include "secondread.fullname" .) | trunc 50 | trimSuffix "-" -}}
{{- end -}}

{{- define "secondread.workerAddress" -}}
{{- printf "%s-worker.%s.svc:%d" (include "secondread.fullname" .) .Release.Namespace (int .Values.worker.ports.grpc) -}}
{{- end -}}

{{/* "true" when the node replicas form a cluster: above one replica, or asked for. */}}
{{- define "secondread.clusterOn" -}}
{{- if or (gt (int .Values.node.replicas) 1) .Values.node.cluster.enabled -}}true{{- end -}}
{{- end -}}

{{/* "true" when the replicas serve and fetch files over the internal endpoint (no shared spool). */}}
{{- define "secondread.clusterFetches" -}}
{{- if and (include "secondread.clusterOn" .) (not .Values.node.cluster.sharedSpool.enabled) -}}true{{- end -}}
{{- end -}}

{{/*
The internal endpoint of the pod named $(POD_NAME), which Kubernetes expands
in the container's command: its stable name under the headless Service.
*/}}
{{- define "secondread.advertiseUrl" -}}
{{- printf "https://$(POD_NAME).%s-node-headless.%s.svc:%d" (include "secondread.fullname" .) .Release.Namespace (int .Values.node.cluster.port) -}}
{{- end -}}

{{/*
The node's configuration: the user's node.config with the keys the chart must
own (ports that its Services name, paths of its mounts, bind addresses)
written over it, so that the Services and the process cannot disagree.
*/}}
{{- define "secondread.nodeConfig" -}}
{{- $managed := dict
  "dicom" (dict "port" (int .Values.node.ports.dicom))
  "storage" (dict "spool_dir" "/var/lib/secondread/spool")
  "database" (dict "url_file" "/etc/secondread/database/url")
  "http" (dict "bind" "0.0.0.0" "port" (int .Values.node.ports.http))
  "api" (dict "bind" "0.0.0.0" "port" (int .Values.node.ports.api))
  "inference" (dict "endpoints" (list (include "secondread.workerAddress" .)) "tls" (dict
    "certificate" "/etc/secondread/grpc-tls/tls.crt"
    "private_key" "/etc/secondread/grpc-tls/tls.key"
    "ca" "/etc/secondread/grpc-tls/ca.crt"
    "reload_interval_seconds" (int .Values.grpcTls.reloadIntervalSeconds)))
-}}
{{- $_ := required "grpcTls.nodeSecret is required: the node reaches the workers over mutual TLS only" .Values.grpcTls.nodeSecret -}}
{{- if .Values.node.dicomTls.enabled -}}
{{- $_ := set $managed.dicom "tls" (dict
  "port" (int .Values.node.ports.dicomTls)
  "certificate" "/etc/secondread/dicom-tls/tls.crt"
  "private_key" "/etc/secondread/dicom-tls/tls.key"
  "ca" "/etc/secondread/dicom-tls/ca.crt") -}}
{{- end -}}
{{- if .Values.node.apiTls.existingSecret -}}
{{- $_ := set $managed.api "tls" (dict
  "cert_file" "/etc/secondread/api-tls/tls.crt"
  "key_file" "/etc/secondread/api-tls/tls.key") -}}
{{- end -}}
{{- if include "secondread.clusterOn" . -}}
{{- /* cluster.node_id and cluster.advertise_url differ per pod: the
StatefulSet's command line sets them. */ -}}
{{- $cluster := dict "enabled" true "bind" "0.0.0.0" "port" (int .Values.node.cluster.port) -}}
{{- if .Values.node.cluster.sharedSpool.enabled -}}
{{- $_ := set $cluster "shared_spool_root" "/var/lib/secondread/shared" -}}
{{- end -}}
{{- if .Values.node.cluster.tokenSecret.name -}}
{{- $_ := set $cluster "token_file" "/etc/secondread/cluster-token/token" -}}
{{- end -}}
{{- if .Values.node.cluster.tls.existingSecret -}}
{{- $_ := set $cluster "tls" (dict
  "cert_file" "/etc/secondread/cluster-tls/tls.crt"
  "key_file" "/etc/secondread/cluster-tls/tls.key"
  "ca_file" "/etc/secondread/cluster-tls/ca.crt") -}}
{{- end -}}
{{- $_ := set $managed "cluster" $cluster -}}
{{- else -}}
{{- $_ := set $managed "cluster" (dict "enabled" false) -}}
{{- end -}}
{{- $config := mustMergeOverwrite (deepCopy .Values.node.config) $managed -}}
# secondread node configuration (docs/configuration.md), rendered by the chart.
{{ toYaml $config }}
{{- end -}}

{{- define "secondread.workerConfig" -}}
{{- $managed := dict
  "grpc" (dict "listen" (printf "0.0.0.0:%d" (int .Values.worker.ports.grpc)))
  "tls" (dict
    "certificate" "/etc/secondread/grpc-tls/tls.crt"
    "private_key" "/etc/secondread/grpc-tls/tls.key"
    "ca" "/etc/secondread/grpc-tls/ca.crt"
    "allowed_clients" .Values.grpcTls.allowedClients
    "reload_interval_seconds" (int .Values.grpcTls.reloadIntervalSeconds))
  "http" (dict "bind" "0.0.0.0" "port" (int .Values.worker.ports.http))
  "models" (dict "repository" .Values.worker.models.repository)
-}}
{{- $_ := required "grpcTls.workerSecret is required: the workers listen beyond loopback, which needs mutual TLS" .Values.grpcTls.workerSecret -}}
{{- if not .Values.grpcTls.allowedClients -}}
{{- fail "grpcTls.allowedClients must name the node's certificate" -}}
{{- end -}}
{{- $config := mustMergeOverwrite (deepCopy .Values.worker.config) $managed -}}
# secondread-worker configuration (docs/configuration.md, "The inference worker"), rendered by the chart.
{{ toYaml $config }}
{{- end -}}

{{/* The container securityContext every container of the chart runs with. */}}
{{- define "secondread.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "secondread.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.podSecurityContext.runAsUser }}
runAsGroup: {{ .Values.podSecurityContext.runAsGroup }}
fsGroup: {{ .Values.podSecurityContext.fsGroup }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Refusals of values the node cannot serve yet. */}}
{{- define "secondread.validate" -}}
{{- if include "secondread.clusterFetches" . -}}
{{- if or (not .Values.node.cluster.tokenSecret.name) (not .Values.node.cluster.tls.existingSecret) -}}
{{- fail (printf "node.replicas %d (a cluster of node replicas) needs node.cluster.tokenSecret.name (a Secret holding the cluster token, 32 characters or more) and node.cluster.tls.existingSecret (tls.crt, tls.key, ca.crt; the certificate naming *.%s-node-headless.%s.svc): replicas fetch a study's instances from each other over HTTPS with that token. Or use node.cluster.sharedSpool with a ReadWriteMany claim (see the chart README, \"Several node replicas\")." (int .Values.node.replicas) (include "secondread.fullname" .) .Release.Namespace) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.node.cluster.sharedSpool.enabled (not .Values.node.cluster.sharedSpool.existingClaim) -}}
{{- fail "node.cluster.sharedSpool.enabled needs node.cluster.sharedSpool.existingClaim (a ReadWriteMany PersistentVolumeClaim)" -}}
{{- end -}}
{{- if and .Values.node.cluster.sharedSpool.enabled (not (include "secondread.clusterOn" .)) -}}
{{- fail "node.cluster.sharedSpool.enabled needs a cluster: node.replicas above 1 or node.cluster.enabled" -}}
{{- end -}}
{{- if and .Values.database.existingSecret .Values.cnpg.enabled -}}
{{- fail "database.existingSecret and cnpg.enabled are exclusive: choose an external database or the CloudNativePG cluster" -}}
{{- end -}}
{{- if not (include "secondread.databaseSecretName" .) -}}
{{- fail "no database: set database.existingSecret (a Secret holding the PostgreSQL URL) or cnpg.enabled=true" -}}
{{- end -}}
{{- if and (hasKey (default (dict) .Values.node.config.dicom) "tls") (not .Values.node.dicomTls.enabled) -}}
{{- fail "node.config.dicom.tls is set but node.dicomTls.enabled is false: enable node.dicomTls (the chart supplies the port and certificate files)" -}}
{{- end -}}
{{- if and .Values.node.dicomTls.enabled (not .Values.node.dicomTls.existingSecret) -}}
{{- fail "node.dicomTls.enabled needs node.dicomTls.existingSecret (keys tls.crt, tls.key, ca.crt)" -}}
{{- end -}}
{{- end -}}
