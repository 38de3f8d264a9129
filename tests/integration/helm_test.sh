#!/usr/bin/env bash
# The Helm chart (helm/secondread) with a real Helm: lint --strict, template
# with each helm/secondread/ci/*-values.yaml, and the values that must be
# refused (tests/helm/refused/); the rendered manifests are validated against
# the Kubernetes, KEDA, CloudNativePG and Prometheus Operator models, their
# keys against the models' declared fields, and the chart's promises (hardened
# containers, probes, NetworkPolicies, the migration hook) are asserted by
# tests/helm/validate.mjs. The node and the worker binaries must accept the
# configuration files rendered into the ConfigMaps. Finally a deliberately
# broken copy of the chart must fail the same checks.
# Needs node, npm and unzip (scripts/bootstrap); npm ci installs the pinned
# tools (tests/helm/package-lock.json) under the build tree the first time.
source "$(dirname "$0")/lib/common.sh"
source "$(dirname "$0")/lib/helm_tools.sh"
it_setup "$@"

CHART="$IT_REPO/helm/secondread"
TOOLS_SRC="$IT_REPO/tests/helm"
helm_tools_up
pass "helm $("$HELM" version --short), node $(node --version), tools in $TOOLS"

# ---- lint and template every CI values file ---------------------------------------
render() {  # CHART_DIR OUT_DIR -> renders each ci values file into OUT_DIR
  local chart=$1 out=$2 f name extra
  mkdir -p "$out"
  for f in "$chart"/ci/*-values.yaml; do
    name=$(basename "$f")
    extra=()
    # KEDA's API is what a cluster with KEDA offers; the others render without it.
    case $name in keda-*) extra=(--api-versions keda.sh/v1alpha1) ;; esac
    "$HELM" lint --strict "$chart" -f "$f" >"$out/$name.lint" 2>&1 || { cat "$out/$name.lint" >&2; return 1; }
    "$HELM" template secondread "$chart" --namespace radiology -f "$f" "${extra[@]}" >"$out/$name" 2>"$out/$name.err" ||
      { cat "$out/$name.err" >&2; return 1; }
  done
}
VALUES_FILES=("$CHART"/ci/*-values.yaml)
[ ${#VALUES_FILES[@]} -ge 7 ] || fail "expected at least 7 ci values files, found ${#VALUES_FILES[@]}"
render "$CHART" "$WORK/rendered" || fail "helm lint --strict / helm template failed"
pass "helm lint --strict and helm template pass with ${#VALUES_FILES[@]} values files"

# ---- values that must be refused --------------------------------------------------
refused() {  # VALUES_FILE PATTERN
  local f=$1 pattern=$2 out
  if out=$("$HELM" template secondread "$CHART" -f "$f" 2>&1); then
    fail "$(basename "$f") was rendered; it must be refused"
  fi
  grep -q -- "$pattern" <<<"$out" || fail "$(basename "$f") was refused for another reason: $out"
}
refused "$TOOLS_SRC/refused/replicas-values.yaml" "node.replicas 2 (a cluster of node replicas) needs node.cluster.tokenSecret.name"
refused "$TOOLS_SRC/refused/no-replicas-values.yaml" "node.replicas: Must be greater than or equal to 1"
refused "$TOOLS_SRC/refused/shared-spool-without-claim-values.yaml" "node.cluster.sharedSpool.enabled needs node.cluster.sharedSpool.existingClaim"
refused "$TOOLS_SRC/refused/misspelled-values.yaml" "Additional property persistance is not allowed"
refused "$TOOLS_SRC/refused/no-database-values.yaml" "no database: set database.existingSecret"
refused "$TOOLS_SRC/refused/tls-without-port-values.yaml" "node.config.dicom.tls is set but node.dicomTls.enabled is false"
refused "$TOOLS_SRC/refused/no-grpc-tls-values.yaml" "grpcTls.workerSecret is required"
# Half the cluster's Secrets is not enough either.
out=$("$HELM" template secondread "$CHART" -f "$TOOLS_SRC/refused/replicas-values.yaml" \
      --set node.cluster.tokenSecret.name=secondread-cluster 2>&1) && fail "node.replicas=2 was rendered without node.cluster.tls"
grep -q "node.cluster.tls.existingSecret" <<<"$out" || fail "no clear refusal of node.replicas=2 without TLS: $out"
pass "refused: two node replicas without the cluster token and TLS Secrets, zero replicas, a shared spool without its claim, a misspelled key, no database, DICOM TLS settings without the TLS port, workers without gRPC TLS"

# ---- the rendered manifests against the models and the chart's promises --------
(cd "$TOOLS" && node validate.mjs "$WORK"/rendered/*-values.yaml) >"$WORK/validate.log" 2>&1 ||
  { cat "$WORK/validate.log" >&2; fail "the rendered manifests failed validation"; }
sed 's/^/  /' "$WORK/validate.log"
pass "every object valid against its model, no unknown field, the chart's checks hold"

# ---- the binaries accept the configuration the chart renders -------------------------
# The node and the worker refuse unknown keys and bad values at start, so each
# rendered file must get past parsing: the node's migrate then stops only at
# the database (an unreachable one here), and the worker starts and loads the
# models it names from the reference repository. Only the paths and
# addresses that exist in a cluster alone are replaced, and the gRPC TLS
# files with certificates made here.
WORKER_BIN="${SECONDREAD_WORKER_BIN:-$BUILD_DIR/cmd/secondread-worker/secondread-worker}"
worker_pid=""
# shellcheck disable=SC2016 # expanded at exit, when a worker may still run
it_also_on_exit '[ -n "$worker_pid" ] && kill -TERM "$worker_pid" 2>/dev/null'
[ -x "$SECONDREAD_BIN" ] || fail "the node is not built at $SECONDREAD_BIN"
[ -x "$WORKER_BIN" ] || fail "the worker is not built at $WORKER_BIN"
echo "postgresql://secondread@127.0.0.1:1/secondread" >"$WORK/unreachable.url"
# The certificates the chart's Secrets would hold, at the paths it mounts them.
source "$IT_REPO/scripts/lib/tls.sh"
make_ca "$WORK/grpc-tls" ca 2>/dev/null || fail "make_ca"
issue_cert "$WORK/grpc-tls/ca" "$WORK/grpc-tls/worker" "/CN=worker" --server --san "DNS:localhost" || fail "issue_cert"
GRPC_TLS=(--set "tls.certificate=$WORK/grpc-tls/worker.pem" --set "tls.private_key=$WORK/grpc-tls/worker.key"
          --set "tls.ca=$WORK/grpc-tls/ca.pem")
for rendered in "$WORK"/rendered/*-values.yaml; do
  name=$(basename "$rendered" -values.yaml)
  cfg="$WORK/config/$name"
  (cd "$TOOLS" && node extract-config.mjs "$rendered" "$cfg") || fail "no configuration in $name"
  # The arguments the StatefulSet adds (with several replicas: cluster.node_id
  # and cluster.advertise_url from POD_NAME) are part of what must be accepted.
  mapfile -t node_args <"$cfg/node-args"
  out=$("$SECONDREAD_BIN" migrate --config "$cfg/secondread.yaml" "${node_args[@]}" \
        --set "database.url_file=$WORK/unreachable.url" --set database.connect_timeout_seconds=2 2>&1) &&
    fail "$name: migrate succeeded against no database"
  grep -q "database unreachable" <<<"$out" || fail "$name: the node refused the chart's configuration: $out"
  if [ "$name" = replicas ]; then
    [ "${node_args[*]}" = "--set cluster.node_id=secondread-node-0 --set cluster.advertise_url=https://secondread-node-0.secondread-node-headless.radiology.svc:8443" ] ||
      fail "replicas: the node's arguments are ${node_args[*]}"
    # Without them the same file is refused: the arguments are what names the replica.
    out=$("$SECONDREAD_BIN" migrate --config "$cfg/secondread.yaml" --set "database.url_file=$WORK/unreachable.url" \
          --set database.connect_timeout_seconds=2 2>&1) && fail "replicas: migrate accepted a cluster without node_id"
    grep -q "cluster.node_id must be" <<<"$out" || fail "replicas: a cluster without node_id was refused for another reason: $out"
  fi
  "$WORKER_BIN" --config "$cfg/worker.yaml" --set "models.repository=$IT_REPO/tools/models/repository" \
    --set grpc.listen=127.0.0.1:0 --set http.bind=127.0.0.1 --set http.port=0 --set cpu.threads=1 \
    --set models.warm_up=false "${GRPC_TLS[@]}" \
    >"$cfg/worker.log" 2>&1 &
  worker_pid=$!
  for _ in $(seq 1 240); do
    grep -q '"event":"worker_started"' "$cfg/worker.log" && break
    kill -0 "$worker_pid" 2>/dev/null || break
    sleep 0.5
  done
  kill -TERM "$worker_pid" 2>/dev/null || true
  wait "$worker_pid" 2>/dev/null || true
  grep -q '"event":"worker_started"' "$cfg/worker.log" ||
    { tail -n 5 "$cfg/worker.log" >&2; fail "$name: the worker did not start with the chart's configuration"; }
  grep '"event":"worker_started"' "$cfg/worker.log" | grep >/dev/null '"tls":true' || fail "$name: the worker runs without TLS"
  if grep -q '"event":"model_load_failed"' "$cfg/worker.log"; then
    grep '"event":"model_load_failed"' "$cfg/worker.log" >&2; fail "$name: a model the chart's configuration names did not load"
  fi
done
pass "the node and the worker accept the configuration rendered from each values file (with the replicas' --set cluster.node_id and advertise_url)"

# ---- the checks can fail: a broken copy of the chart --------------------------------
BROKEN="$WORK/broken/secondread"
mkdir -p "$(dirname "$BROKEN")"
cp -r "$CHART" "$BROKEN"
# A misspelled field the API server would drop, a capability left in, the
# workers opened to every pod, and replicas that advertise the wrong Service.
sed -i 's/readOnlyRootFilesystem: true/readOnlyRootFilesytem: true/' "$BROKEN/templates/_helpers.tpl"
sed -i 's/  drop: \[ALL\]/  drop: [NET_RAW]/' "$BROKEN/templates/_helpers.tpl"
sed -i '0,/        - podSelector:/s//        - podSelector: {}\n        - podSelector:/' "$BROKEN/templates/networkpolicy.yaml"
sed -i 's/%s-node-headless\.%s\.svc:%d/%s-node.%s.svc:%d/' "$BROKEN/templates/_helpers.tpl"
render "$BROKEN" "$WORK/broken-rendered" || fail "the broken chart did not render"
if (cd "$TOOLS" && node validate.mjs "$WORK"/broken-rendered/*-values.yaml) >"$WORK/broken.log" 2>&1; then
  cat "$WORK/broken.log" >&2
  fail "the broken chart passed validation"
fi
for want in "securityContext.readOnlyRootFilesytem: unknown field" "capabilities do not drop ALL" \
            "the workers' gRPC port admits more than the node" "not the StatefulSet's Service"; do
  grep -q -- "$want" "$WORK/broken.log" || { cat "$WORK/broken.log" >&2; fail "the broken chart was not caught for: $want"; }
done
pass "a broken copy of the chart fails: $(tail -n 1 "$WORK/broken.log")"
finish
