# Two node replicas on one machine for tests and benchmarks: a throwaway CA,
# a certificate for 127.0.0.1 and a cluster token in CLUSTER_DIR, the
# `--set cluster.*` arguments of one replica, and a second replica ("node-b")
# started from the first one's configuration with ports, spool and log of
# its own. Sourced after common.sh.

cluster_secrets() {  # dir
  CLUSTER_DIR=$1
  mkdir -p "$CLUSTER_DIR"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=cluster-test-ca \
    -keyout "$CLUSTER_DIR/ca.key" -out "$CLUSTER_DIR/ca.pem" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
    -keyout "$CLUSTER_DIR/node.key" -out "$CLUSTER_DIR/node.csr" 2>/dev/null
  openssl x509 -req -in "$CLUSTER_DIR/node.csr" -CA "$CLUSTER_DIR/ca.pem" -CAkey "$CLUSTER_DIR/ca.key" \
    -CAcreateserial -days 2 -extfile <(printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n') \
    -out "$CLUSTER_DIR/node.pem" 2>/dev/null
  (umask 077; $PY -c 'import secrets; print(secrets.token_urlsafe(32))' >"$CLUSTER_DIR/token")
}

# The routing the replica tests and benchmarks share: a CT study sent over
# several associations is due when the last is released; an MR study after
# 8 s of silence, whichever replica received what. With "ct-only" MR is not
# read (the ingest benchmark sends MR so that only the receivers work).
cluster_routing() {  # [ct-only]
  cat <<'YAML'
routing:
  rules:
    - name: ct-volume
      input: volume
      match: {modalities: [CT]}
      series: {min_slices: 10}
      models: [{name: threshold-volume-demo}]
      completeness: {trigger: association, silence_seconds: 60, expected_count: false, late_instances: reread}
YAML
  [ "${1:-}" = ct-only ] && return 0
  cat <<'YAML'
    - name: mr-volume
      input: volume
      match: {modalities: [MR]}
      series: {min_slices: 10}
      models: [{name: mr-threshold-volume}]
      completeness: {trigger: silence, silence_seconds: 8, expected_count: false, late_instances: reread}
YAML
}

# The --set arguments of one replica, its internal endpoint on 127.0.0.1:PORT
# over HTTPS.
cluster_sets() {  # node-id port
  echo --set cluster.enabled=true --set "cluster.node_id=$1" --set "cluster.port=$2" --set cluster.bind=127.0.0.1 \
    --set "cluster.advertise_url=https://127.0.0.1:$2" --set "cluster.token_file=$CLUSTER_DIR/token" \
    --set "cluster.tls.cert_file=$CLUSTER_DIR/node.pem" --set "cluster.tls.key_file=$CLUSTER_DIR/node.key" \
    --set "cluster.tls.ca_file=$CLUSTER_DIR/ca.pem" --set cluster.heartbeat_seconds=1
}

# Picks replica B's ports (PORT_B, DICOM_B, HTTP_B, API_B) in NODEB=$WORK/nodeb.
replica_b_ports() {
  NODEB="$WORK/nodeb"
  mkdir -p "$NODEB/log"
  PORT_B=$(free_port) DICOM_B=$(free_port) HTTP_B=$(free_port) API_B=$(free_port)
}

# Starts replica B from replica A's configuration ($SECONDREAD_CONFIG) with
# the same worker; extra arguments are more --set overrides. Waits for C-ECHO.
start_replica_b() {  # [--set key=value]...
  # shellcheck disable=SC2046
  "$SECONDREAD_BIN" serve --config "$SECONDREAD_CONFIG" --set "dicom.port=$DICOM_B" --set "http.port=$HTTP_B" \
    --set "api.port=$API_B" --set "inference.endpoints=[$SECONDREAD_WORKER_ADDR]" \
    --set "storage.spool_dir=$NODEB/spool" --set "log.file=$NODEB/log/secondread.log" \
    $(cluster_sets node-b "$PORT_B") "$@" >>"$NODEB/log/stdout" 2>&1 </dev/null &
  echo $! >"$NODEB/secondread.pid"
  for _ in $(seq 1 300); do
    echoscu -to 5 -aet STORESCU -aec SECONDREAD 127.0.0.1 "$DICOM_B" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  tail -n 20 "$NODEB/log/stdout" "$NODEB/log/secondread.log" >&2
  fail "replica B did not start"
}

# Instances a replica fetched from the other, from its metrics.
fetched_at() {  # metrics-url
  curl -fsS "$1" | awk -v m='secondread_cluster_fetches_total{kind="instance",outcome="fetched"}' \
    '$1 == m { print int($2); f = 1 } END { if (!f) print 0 }'
}
