#!/usr/bin/env bash
# Mutual TLS between the node and the worker. dev-up --tls runs the real
# worker with tls.* and the real node with inference.tls.*, both from one
# throwaway CA. A chest radiograph and a CT volume are read over that link. The worker
# refuses, and logs with the reason, a client without a certificate, with a
# certificate from another CA, with an expired one, with one whose name is
# not on tls.allowed_clients, and plaintext; a client with the node's
# certificate passes (integration/tools/worker_probe.cc, speaking with
# gRPC's own SSL credentials, not the node's code); secondread-validate-model
# passes with a certificate and fails without. The node refuses a worker
# whose certificate does not carry the name it expects. Both sides'
# certificates are replaced on disk (new keys and serials, same CA) while
# studies keep arriving: every read is done, none fails, and the worker then
# presents its new certificate and sees the node's new one, without a
# restart. A worker listening beyond loopback without TLS, and a node with
# an endpoint beyond loopback without TLS, refuse to start.
source "$(dirname "$0")/lib/common.sh"
source "$(dirname "$0")/lib/results.sh"
source "$IT_REPO/scripts/lib/tls.sh"
it_setup "$@"
PROBE=${WORKER_PROBE:-$BUILD_DIR/tests/worker_probe}
WORKER_BIN="${SECONDREAD_WORKER_BIN:-$BUILD_DIR/cmd/secondread-worker/secondread-worker}"

# One-second reloads and two-second connections, so that a rotation shows
# within seconds; production keeps the defaults (60 s, one hour).
IT_WORKER=1 node_up --tls --set inference.tls.reload_interval_seconds=1 \
  --worker-set tls.reload_interval_seconds=1 --worker-set grpc.max_connection_age_seconds=2
T="$NODE/tls"
WLOG=$SECONDREAD_WORKER_LOG
serial() { openssl x509 -in "$1" -noout -serial | cut -d= -f2; }

grep '"worker_started"' "$WLOG" | grep >/dev/null '"tls":true' || fail "the worker did not start with TLS"
grep -q '"grpc_plaintext"' "$WLOG" && fail "the worker with TLS warns about plaintext"
grep -q '"inference_plaintext"' "$SECONDREAD_LOG" && fail "the node with inference.tls warns about plaintext"

# Single-image chest studies, generated ahead of sending.
gen_study() {  # n
  $PY "$IT_REPO/tools/gen_study.py" "$WORK/s$1" --studies 1 --lesion no --modality CR --seed $((100 + $1)) >/dev/null
}
study_uid() { $PY -c "import json,sys; print(json.load(open(sys.argv[1]))['studies'][0]['study_uid'])" "$WORK/s$1/manifest.json"; }
send_study() { send "$WORK"/s$1/study-*/*.dcm >/dev/null 2>&1 || fail "storescu study $1"; }
read_state() { sql "SELECT r.state FROM reads r JOIN studies s ON s.id = r.study_ref WHERE s.study_instance_uid = '$(study_uid "$1")'"; }
wait_read_done() {  # n timeout
  wait_sql "SELECT r.state FROM reads r JOIN studies s ON s.id = r.study_ref WHERE s.study_instance_uid = '$(study_uid "$1")'" done "$2"
}

# 1. A read over mutual TLS.
gen_study 1
send_study 1
wait_read_done 1 90
NODE_SERIAL=$(serial "$SECONDREAD_GRPC_TLS_CERT")
grep '"grpc_client_verified"' "$WLOG" | grep >/dev/null "\"serial\":\"$NODE_SERIAL\"" ||
  fail "the worker did not log the node's certificate (serial $NODE_SERIAL) as verified"
# A CT series as a volume: InferVolume streams it both ways over the same link.
$PY "$IT_REPO/tools/gen_series.py" "$WORK/ct" --modality CT --slices 12 --rows 32 --columns 32 --seed 5 >/dev/null
send "$WORK"/ct/*.dcm >/dev/null 2>&1 || fail "storescu CT"
wait_sql "SELECT count(*) FROM reads WHERE input = 'volume' AND state IN ('done', 'failed')" 1 180
[ "$(sql "SELECT state FROM reads WHERE input = 'volume'")" = done ] ||
  fail "the volume read did not finish: $(sql "SELECT state, error FROM reads WHERE input = 'volume'")"
pass "a chest radiograph and a 12-slice CT volume were read over mutual TLS; the worker verified the node's certificate (serial $NODE_SERIAL)"

# 2. What the worker refuses, each with its reason in the worker's log.
mkdir -p "$WORK/certs"
make_ca "$WORK/certs" foreign-ca 2>/dev/null || fail "make_ca"
issue_cert "$WORK/certs/foreign-ca" "$WORK/certs/foreign" "/CN=secondread-node" --client --san DNS:secondread-node ||
  fail "issue foreign"
issue_cert "$T/ca" "$WORK/certs/expired" "/CN=secondread-node" --client --san DNS:secondread-node \
  --not-before 20200101000000Z --not-after 20200201000000Z || fail "issue expired"
issue_cert "$T/ca" "$WORK/certs/stranger" "/CN=stranger" --client --san DNS:stranger-node || fail "issue stranger"

probe() {  # cert-prefix-or-empty [ca]
  local cert=$1 ca=${2-$T/ca.pem}
  WORKER_PROBE_CA=$ca WORKER_PROBE_CERT=${cert:+$cert.pem} WORKER_PROBE_KEY=${cert:+$cert.key} \
    WORKER_PROBE_NAME=localhost timeout 30 "$PROBE" health "$SECONDREAD_WORKER_ADDR" >"$WORK/probe.out" 2>&1
}
refused() {  # label reason cert-prefix-or-empty
  local before
  before=$(wc -l <"$WLOG")
  probe "$3" && fail "$1: the worker answered"
  for _ in $(seq 1 50); do
    tail -n +"$((before + 1))" "$WLOG" | grep '"grpc_client_refused"' | grep >/dev/null "\"reason\":\"$2\"" && return 0
    sleep 0.1
  done
  fail "$1: no grpc_client_refused line with reason '$2'; $(tail -n +"$((before + 1))" "$WLOG" | grep grpc_client || true)"
}
probe "$T/node-grpc" || fail "the node's certificate was refused by the probe: $(cat "$WORK/probe.out")"
refused "no client certificate" "no client certificate" ""
refused "another CA" "unable to get local issuer certificate" "$WORK/certs/foreign"
refused "expired" "certificate has expired" "$WORK/certs/expired"
refused "name not allowed" "no subjectAltName on tls.allowed_clients" "$WORK/certs/stranger"
probe "" "" && fail "the worker answered plaintext gRPC"
pass "the worker refuses no client certificate, another CA, an expired certificate, a name not allowed, and plaintext, each logged with its reason; the node's certificate passes"

# secondread-validate-model reaches the same worker with the same kind of
# certificate, and not without one.
VALIDATE=${VALIDATE_BIN:-$BUILD_DIR/tools/validate/secondread-validate-model}
$PY "$IT_REPO/tools/models/make_heldout.py" --out "$WORK/heldout" --count 16 --seed 99 >/dev/null
"$VALIDATE" --worker "$SECONDREAD_WORKER_ADDR" --model synthetic-nodule-demo --heldout "$WORK/heldout" \
  --tls-certificate "$SECONDREAD_GRPC_TLS_CERT" --tls-private-key "$SECONDREAD_GRPC_TLS_KEY" --tls-ca "$T/ca.pem" \
  >"$WORK/validate.out" 2>&1 || fail "validate-model over mutual TLS: $(tail -n 5 "$WORK/validate.out")"
timeout 60 "$VALIDATE" --worker "$SECONDREAD_WORKER_ADDR" --model synthetic-nodule-demo --heldout "$WORK/heldout" \
  >"$WORK/validate-plain.out" 2>&1 && fail "validate-model reached the worker in plaintext"
pass "secondread-validate-model scores a held-out set over mutual TLS and fails without a certificate"

# 3. The node refuses a worker whose certificate does not name what it expects.
gen_study 2
node_restart --set inference.tls.server_name=worker.example.org
send_study 2
for _ in $(seq 1 100); do
  grep '"grpc_worker_refused"' "$SECONDREAD_LOG" | grep >/dev/null '"expected":"worker.example.org"' && break
  sleep 0.2
done
grep '"grpc_worker_refused"' "$SECONDREAD_LOG" | grep >/dev/null '"expected":"worker.example.org"' ||
  fail "the node did not log refusing the worker"
sleep 2
[ "$(read_state 2)" != done ] || fail "a read was done over a worker the node should have refused"
node_restart --set inference.tls.reload_interval_seconds=1
wait_read_done 2 90
pass "the node refused the worker's certificate for another name (read held back, then done with the right name)"

# 4. Rotation: both sides' files are replaced while studies arrive.
N_ROT=16
for i in $(seq 10 $((10 + N_ROT - 1))); do gen_study "$i"; done
mkdir -p "$WORK/rot"
issue_cert "$T/ca" "$WORK/rot/worker" "/O=secondread development/CN=secondread-worker" --server \
  --san "IP:127.0.0.1,DNS:localhost" || fail "issue rotated worker certificate"
issue_cert "$T/ca" "$WORK/rot/node-grpc" "/O=secondread development/CN=secondread-node" --client \
  --san "DNS:secondread-node" || fail "issue rotated node certificate"
OLD_WORKER_SERIAL=$(serial "$T/worker.pem")
NEW_WORKER_SERIAL=$(serial "$WORK/rot/worker.pem")
NEW_NODE_SERIAL=$(serial "$WORK/rot/node-grpc.pem")
replace() {  # from to: a rename, so that no reader sees half a file
  cp "$1" "$2.new" && mv -f "$2.new" "$2"
}
(
  for i in $(seq 10 $((10 + N_ROT - 1))); do
    send "$WORK"/s$i/study-*/*.dcm >/dev/null 2>&1 || echo "$i" >>"$WORK/rot/send_failed"
    sleep 0.5
  done
) &
SENDER=$!
sleep 3
replace "$WORK/rot/worker.key" "$T/worker.key"
replace "$WORK/rot/worker.pem" "$T/worker.pem"
replace "$WORK/rot/node-grpc.key" "$T/node-grpc.key"
replace "$WORK/rot/node-grpc.pem" "$T/node-grpc.pem"
wait "$SENDER"
[ ! -f "$WORK/rot/send_failed" ] || fail "storescu failed for studies $(tr '\n' ' ' <"$WORK/rot/send_failed")"
for i in $(seq 10 $((10 + N_ROT - 1))); do wait_read_done "$i" 120; done
FAILED=$(sql "SELECT count(*) FROM reads WHERE state <> 'done'")
[ "$FAILED" = 0 ] || fail "$FAILED reads not done: $(sql "SELECT state, error FROM reads WHERE state <> 'done'")"
for _ in $(seq 1 100); do
  grep '"grpc_client_verified"' "$WLOG" | grep >/dev/null "\"serial\":\"$NEW_NODE_SERIAL\"" && break
  sleep 0.2
done
grep '"grpc_client_verified"' "$WLOG" | grep >/dev/null "\"serial\":\"$NEW_NODE_SERIAL\"" ||
  fail "the worker never saw the node's new certificate (serial $NEW_NODE_SERIAL)"
PRESENTED=$(openssl s_client -connect "$SECONDREAD_WORKER_ADDR" -alpn h2 -CAfile "$T/ca.pem" \
  -cert "$T/node-grpc.pem" -key "$T/node-grpc.key" </dev/null 2>/dev/null | openssl x509 -noout -serial | cut -d= -f2)
[ "$PRESENTED" = "$NEW_WORKER_SERIAL" ] ||
  fail "the worker presents serial $PRESENTED, not its new certificate's $NEW_WORKER_SERIAL (old $OLD_WORKER_SERIAL)"
# The node reached the worker on a new connection after the swap, so it
# accepted the worker's new certificate too.
pass "certificates rotated on both sides mid-run: $N_ROT studies sent, all $(sql "SELECT count(*) FROM reads") reads done, none failed; the worker presents serial $NEW_WORKER_SERIAL and verified the node's $NEW_NODE_SERIAL, without a restart"

# 5. Start-up refusals of plaintext beyond loopback.
out=$(timeout 60 "$WORKER_BIN" --config "$NODE/worker/worker.yaml" --set "grpc.listen=0.0.0.0:$(free_port)" 2>&1) &&
  fail "a worker listening on 0.0.0.0 without TLS started"
grep -q "is not a loopback address" <<<"$out" || fail "the worker's refusal does not say why: $out"
$PY - "$SECONDREAD_CONFIG" "$WORK/plain.yaml" <<'PY' || fail "cannot write the plaintext configuration"
import re, sys
text = open(sys.argv[1]).read()
text, n = re.subn(r"  tls:\n    certificate: [^\n]*node-grpc\.pem\n    private_key: [^\n]*\n    ca: [^\n]*\n", "", text)
assert n == 1, "the inference.tls block was not found"
open(sys.argv[2], "w").write(text)
PY
out=$(timeout 60 "$SECONDREAD_BIN" serve --config "$WORK/plain.yaml" --set "inference.endpoints=[192.0.2.10:50051]" 2>&1) &&
  fail "a node with an endpoint beyond loopback and no TLS started"
grep -q "is not on loopback and inference.tls is not configured" <<<"$out" ||
  fail "the node's refusal does not say why: $out"
mkdir -p "$WORK/plain-worker"
timeout 60 "$WORKER_BIN" --config "$NODE/worker/worker.yaml" --set "grpc.listen=127.0.0.1:$(free_port)" \
  --set http.port=0 --set "log.file=$WORK/plain-worker/worker.log" --set models.warm_up=false \
  --set "models.load=[synthetic-nodule-demo]" >"$WORK/plain-worker/out" 2>&1 &
PLAIN=$!
for _ in $(seq 1 300); do grep -q '"worker_started"' "$WORK/plain-worker/worker.log" 2>/dev/null && break; sleep 0.2; done
kill -TERM "$PLAIN" 2>/dev/null || true
wait "$PLAIN" 2>/dev/null || true
grep '"grpc_plaintext"' "$WORK/plain-worker/worker.log" | grep >/dev/null '"level":"warn"' ||
  fail "a plaintext worker on loopback did not warn"
pass "a worker on 0.0.0.0 and a node with an endpoint off loopback refuse to start without TLS; a plaintext worker on loopback warns"
finish
