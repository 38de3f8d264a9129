#!/usr/bin/env bash
# A read, an export and a volume read that take longer than the job lease (the
# worker, then the PACS, then the worker again, stopped with SIGSTOP for twice
# a 6 s lease) keep their claim by
# heartbeating: the reaper never hands the job to a second holder, so one
# attempt writes one set of results, sends each object once, and the read and
# the export end done and sent.
source "$(dirname "$0")/lib/common.sh"
source "$(dirname "$0")/lib/orthanc.sh"
source "$(dirname "$0")/lib/results.sh"
it_setup "$@"
it_also_on_exit '[ -n "${WORKER_PID:-}" ] && kill -CONT "$WORKER_PID" 2>/dev/null;
  [ -f "$WORK/orthanc/orthanc.pid" ] && kill -CONT "$(cat "$WORK/orthanc/orthanc.pid")" 2>/dev/null;
  orthanc_stop "$WORK/orthanc"'

LEASE=6
# Timeouts far above the stops below, so only the lease can end the work.
results_up --set queue.lease_seconds=$LEASE --set queue.maintenance_interval_ms=300 \
  --set inference.call_timeout_ms=60000
# The destination again, with an association timeout that outlasts the stop.
node_restart --set queue.lease_seconds=$LEASE --set queue.maintenance_interval_ms=300 \
  --set inference.call_timeout_ms=60000 \
  --set "export.destinations=[{name: pacs, address: \"ORTHANC@127.0.0.1:$ORTHANC_DICOM_PORT\", connect_timeout_seconds: 60, dimse_timeout_seconds: 60}]"
WORKER_PID=$SECONDREAD_WORKER_PID
ORTHANC_PID=$(cat "$ORTHANC_DIR/orthanc.pid")

new_study() {  # n -> Study Instance UID
  $PY "$IT_REPO/tools/gen_study.py" "$WORK/s$1" --studies 1 --lesion yes --modality CR --seed $((300 + $1)) >/dev/null
  send "$WORK"/s"$1"/study-*/*.dcm >/dev/null 2>&1 || fail "storescu study $1"
  $PY -c "import json,sys; print(json.load(open(sys.argv[1]))['studies'][0]['study_uid'])" "$WORK/s$1/manifest.json"
}
read_of() { sql "SELECT r.id FROM reads r JOIN studies s ON s.id = r.study_ref WHERE s.study_instance_uid = '$1'"; }
orthanc_id() {  # study uid -> Orthanc id
  curl -fsS -X POST "$ORTHANC_URL/tools/lookup" -d "$1" |
    $PY -c 'import json,sys; r=[x for x in json.load(sys.stdin) if x["Type"]=="Study"]; print(r[0]["ID"] if r else "")'
}
# One read, done; one attempt of its dispatch job and of its export job, no
# lease expiry; one SR and one SC in the database, sent once to Orthanc.
exactly_once() {  # uid label
  local read id="" list deadline=$(( $(date +%s) + 90 ))
  wait_sql "SELECT r.state FROM reads r JOIN studies s ON s.id = r.study_ref WHERE s.study_instance_uid = '$1'" "done" 60
  read=$(read_of "$1")
  wait_sql "SELECT state || ' ' || attempts FROM exports WHERE read_ref = $read" "sent 1" 90
  [ "$(sql "SELECT string_agg(state::text || ' ' || attempt || ' ' || jsonb_array_length(errors), ',' ORDER BY queue)
            FROM jobs WHERE (queue = 'dispatch' AND args->>'read_id' = '$read')
               OR (queue = 'export' AND args->>'export_id' IN (SELECT id::text FROM exports WHERE read_ref = $read))")" = \
    "completed 1 0,completed 1 0" ] ||
    fail "$2: jobs $(sql "SELECT string_agg(queue || ' ' || state::text || ' attempt ' || attempt || ' ' || errors::text, '; ')
                         FROM jobs WHERE (queue = 'dispatch' AND args->>'read_id' = '$read')
                            OR (queue = 'export' AND args->>'export_id' IN (SELECT id::text FROM exports WHERE read_ref = $read))")"
  [ "$(sql "SELECT string_agg(kind, ',' ORDER BY kind) FROM result_objects WHERE read_ref = $read")" = "sc,sr" ] ||
    fail "$2: result objects $(sql "SELECT string_agg(kind, ',') FROM result_objects WHERE read_ref = $read")"
  # Files of a second holder would lie beside the committed ones.
  local files=("$SECONDREAD_SPOOL"/results/*.dcm)
  [ "${#files[@]}" = "$3" ] || fail "$2: ${#files[@]} result files, want $3"
  while [ -z "$id" ] && [ "$(date +%s)" -lt "$deadline" ]; do id=$(orthanc_id "$1"); [ -n "$id" ] || sleep 0.5; done
  [ -n "$id" ] || fail "$2: no results in Orthanc"
  wait_results_in_orthanc "$id" 1 1 60
  list=$(orthanc_instances "$id")
  [ "$(grep -c '^SR ' <<<"$list")" -eq 1 ] && [ "$(grep -c '^OT ' <<<"$list")" -eq 1 ] ||
    fail "$2: Orthanc holds $(grep -c '^SR ' <<<"$list") SR and $(grep -c '^OT ' <<<"$list") SC"
  [ "$(grep -c "\"export_sent\".*\"read_id\":${read}[,}]" "$NODE/log/secondread.log")" = 1 ] ||
    fail "$2: $(grep -c "\"export_sent\".*\"read_id\":${read}[,}]" "$NODE/log/secondread.log") export_sent records"
}

# 1. The worker stops while the read waits on it, for twice the lease.
kill -STOP "$WORKER_PID"
uid=$(new_study 1)
wait_sql "SELECT r.state FROM reads r JOIN studies s ON s.id = r.study_ref WHERE s.study_instance_uid = '$uid'" running 20
sleep $((2 * LEASE))
kill -CONT "$WORKER_PID"
exactly_once "$uid" "read slower than the lease" 2
pass "read slower than its lease: one attempt, one set of results, sent once"

# 2. The PACS stops while the export waits on it, for twice the lease.
kill -STOP "$ORTHANC_PID"
uid=$(new_study 2)
read=""
for _ in $(seq 1 200); do read=$(read_of "$uid"); [ -n "$read" ] && break; sleep 0.3; done
[ -n "$read" ] || fail "no read for study 2"
wait_sql "SELECT j.state::text FROM jobs j JOIN exports e ON j.args->>'export_id' = e.id::text WHERE e.read_ref = $read" running 60
sleep $((2 * LEASE))
kill -CONT "$ORTHANC_PID"
exactly_once "$uid" "export slower than the lease" 4
pass "export slower than its lease: one attempt, each object sent once, export sent"

# 3. A volume read (the default CT rule) waits on the stopped worker for twice
# the lease, as a large series on a busy worker does.
kill -STOP "$WORKER_PID"
$PY "$IT_REPO/tools/gen_series.py" "$WORK/ct" --modality CT --phantom ct --phantom-lesions 1 --orientation axial \
  --slices 12 --rows 96 --columns 96 --pixel-spacing 1.6,1.6 --spacing 3 --seed 3 >/dev/null
send "$WORK"/ct/*.dcm >/dev/null 2>&1 || fail "storescu CT"
wait_sql "SELECT state FROM reads WHERE input = 'volume'" running 60
sleep $((2 * LEASE))
kill -CONT "$WORKER_PID"
wait_sql "SELECT state FROM reads WHERE input = 'volume'" done 120
read=$(sql "SELECT id FROM reads WHERE input = 'volume'")
wait_sql "SELECT state || ' ' || attempts FROM exports WHERE read_ref = $read" "sent 1" 90
jobs=$(sql "SELECT string_agg(queue || ' ' || state::text || ' ' || attempt || ' ' || jsonb_array_length(errors), ',' ORDER BY queue)
            FROM jobs WHERE (queue = 'volume' AND args->>'read_id' = '$read')
               OR (queue = 'export' AND args->>'export_id' IN (SELECT id::text FROM exports WHERE read_ref = $read))")
[ "$jobs" = "export completed 1 0,volume completed 1 0" ] || fail "volume read slower than the lease: jobs $jobs"
# One SEG, one SR and a key-slice capture per lesion found.
kinds=$(sql "SELECT string_agg(DISTINCT kind, ',') || ' ' || count(*) FILTER (WHERE kind = 'seg') || count(*) FILTER (WHERE kind = 'sr')
             FROM result_objects WHERE read_ref = $read")
[ "$kinds" = "sc,seg,sr 11" ] || fail "volume read slower than the lease: result objects $kinds"
objects=$(sql "SELECT count(*) FROM result_objects WHERE read_ref = $read")
files=("$SECONDREAD_SPOOL"/results/*.dcm)
[ "${#files[@]}" = $((4 + objects)) ] || fail "volume read slower than the lease: ${#files[@]} result files, want $((4 + objects))"
[ "$(grep -c "\"export_sent\".*\"read_id\":${read}[,}]" "$NODE/log/secondread.log")" = 1 ] ||
  fail "volume read slower than the lease: not exactly one export_sent record"
pass "volume read slower than its lease: one attempt, one SEG, one SR and the key-slice captures, sent once"
finish
