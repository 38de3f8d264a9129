#!/usr/bin/env bash
# Faults on the results path, each ending with the results delivered to the
# PACS exactly once: the worker killed mid-job, the PACS down before export
# and back later, PostgreSQL restarted during dispatch, and the node killed
# with -9 during dispatch and during export.
source "$(dirname "$0")/lib/common.sh"
source "$(dirname "$0")/lib/orthanc.sh"
source "$(dirname "$0")/lib/results.sh"
it_setup "$@"
it_also_on_exit '[ -n "${WORKER_PID:-}" ] && kill -CONT "$WORKER_PID" 2>/dev/null; orthanc_stop "$WORK/orthanc"'

# Short leases, so work held by a killed process comes back within seconds.
results_up --set queue.lease_seconds=5 --set queue.maintenance_interval_ms=500 --set inference.call_timeout_ms=4000
WORKER_PID=$SECONDREAD_WORKER_PID

# Generates single-image study number N, sends it straight to the node, and
# prints its Study Instance UID.
new_study() {  # n
  local N=$1
  $PY "$IT_REPO/tools/gen_study.py" "$WORK/s$N" --studies 1 --lesion yes --modality CR --seed $((100 + N)) >/dev/null
  send "$WORK"/s$N/study-*/*.dcm >/dev/null 2>&1 || fail "storescu study $N"
  $PY -c "import json,sys; print(json.load(open(sys.argv[1]))['studies'][0]['study_uid'])" "$WORK/s$N/manifest.json"
}
orthanc_id() {  # study uid -> Orthanc id
  curl -fsS -X POST "$ORTHANC_URL/tools/lookup" -d "$1" |
    $PY -c 'import json,sys; r=[x for x in json.load(sys.stdin) if x["Type"]=="Study"]; print(r[0]["ID"] if r else "")'
}
read_state() { sql "SELECT r.state FROM reads r JOIN studies s ON s.id = r.study_ref WHERE s.study_instance_uid = '$1'"; }
wait_read_state() {  # uid state timeout
  wait_sql "SELECT r.state FROM reads r JOIN studies s ON s.id = r.study_ref WHERE s.study_instance_uid = '$1'" "$2" "$3"
}
# Delivered exactly once: the study in Orthanc holds one SR and one SC, and
# the export row says sent.
delivered_once() {  # uid label
  local id="" deadline=$(( $(date +%s) + 90 ))
  while [ -z "$id" ] && [ "$(date +%s)" -lt "$deadline" ]; do id=$(orthanc_id "$1"); [ -n "$id" ] || sleep 0.5; done
  [ -n "$id" ] || fail "$2: no results in Orthanc"
  wait_results_in_orthanc "$id" 1 1 90
  wait_sql "SELECT e.state FROM exports e JOIN reads r ON r.id = e.read_ref JOIN studies s ON s.id = r.study_ref WHERE s.study_instance_uid = '$1'" sent 60
  local list
  list=$(orthanc_instances "$id")
  [ "$(grep -c '^SR ' <<<"$list")" -eq 1 ] && [ "$(grep -c '^OT ' <<<"$list")" -eq 1 ] ||
    fail "$2: Orthanc holds $(grep -c '^SR ' <<<"$list") SR and $(grep -c '^OT ' <<<"$list") SC"
  [ "$(sql "SELECT count(*) FROM reads r JOIN studies s ON s.id = r.study_ref WHERE s.study_instance_uid = '$1'")" = 1 ] ||
    fail "$2: more than one read"
}
restart_worker() {
  "$IT_REPO/scripts/worker-up" "$NODE/worker" --set cpu.threads=1 --set "grpc.listen=$SECONDREAD_WORKER_ADDR" >/dev/null ||
    fail "worker restart"
  WORKER_PID=$(cat "$NODE/worker/worker.pid")
}

# 1. The worker is killed while a read waits on it.
kill -STOP "$WORKER_PID"
uid=$(new_study 1)
wait_read_state "$uid" running 20
kill -KILL "$WORKER_PID"
sleep 1
restart_worker
delivered_once "$uid" "worker killed"
[ "$(sql "SELECT attempt FROM jobs WHERE queue = 'dispatch' AND args->>'read_id' = (SELECT r.id::text FROM reads r JOIN studies s ON s.id = r.study_ref WHERE s.study_instance_uid = '$uid')")" -ge 2 ] ||
  fail "the read was not retried"
pass "worker killed mid-job: the read is retried on the new worker and delivered once"

# 2. The PACS is down when the results are ready, and comes back later.
orthanc_stop "$ORTHANC_DIR"
uid=$(new_study 2)
wait_read_state "$uid" done 60
wait_sql "SELECT (attempts >= 2)::text FROM exports e JOIN reads r ON r.id = e.read_ref JOIN studies s ON s.id = r.study_ref WHERE s.study_instance_uid = '$uid'" true 30
ORTHANC_HTTP_PORT=${ORTHANC_URL##*:} orthanc_start "$ORTHANC_DIR" secondread SECONDREAD 127.0.0.1 "$SECONDREAD_DICOM_PORT" ||
  fail "Orthanc restart"
delivered_once "$uid" "PACS down"
pass "PACS down before export: retried with backoff, delivered once after it returned"

# 3. PostgreSQL restarts while a read is in flight.
kill -STOP "$WORKER_PID"
uid=$(new_study 3)
wait_read_state "$uid" running 20
as_pg "$SECONDREAD_PG_BIN/pg_ctl" -D "$SECONDREAD_PGDATA" -m fast -w -t 30 restart >/dev/null 2>&1 || fail "pg restart"
kill -CONT "$WORKER_PID"
delivered_once "$uid" "PostgreSQL restart"
pass "PostgreSQL restarted during dispatch: delivered once"

# 4. The node is killed with -9 during dispatch.
kill -STOP "$WORKER_PID"
uid=$(new_study 4)
wait_read_state "$uid" running 20
kill -KILL "$(cat "$NODE/secondread.pid")"
kill -CONT "$WORKER_PID"
"$IT_REPO/scripts/dev-up" "$NODE" --node-only --set queue.lease_seconds=5 --set queue.maintenance_interval_ms=500 \
  --set inference.call_timeout_ms=4000 >/dev/null || fail "node restart"
source "$NODE/env"
delivered_once "$uid" "node killed during dispatch"
pass "node killed -9 during dispatch: the lease expired, the read ran again, delivered once"

# 5. The node is killed with -9 while the PACS is receiving.
kill -STOP "$(cat "$ORTHANC_DIR/orthanc.pid")"
uid=$(new_study 5)
wait_read_state "$uid" done 60
sleep 1
kill -KILL "$(cat "$NODE/secondread.pid")"
kill -CONT "$(cat "$ORTHANC_DIR/orthanc.pid")"
"$IT_REPO/scripts/dev-up" "$NODE" --node-only --set queue.lease_seconds=5 --set queue.maintenance_interval_ms=500 \
  --set inference.call_timeout_ms=4000 >/dev/null || fail "node restart"
source "$NODE/env"
delivered_once "$uid" "node killed during export"
pass "node killed -9 during export: re-sent after the lease, Orthanc holds each object once"
finish
