#!/usr/bin/env bash
# Two node replicas on one database, each with its own spool, and Orthanc as
# the PACS. Orthanc sends one CT series over two associations at once, one to
# each replica (alternate slices): exactly one volume read happens, on one
# replica, which fetches the other replica's instances over the authenticated
# internal endpoint (HTTPS, cluster token), and its SEG, SR and SC land in
# Orthanc. The internal endpoint refuses a missing or wrong token and serves
# only spool names. Then a replica is killed (-9) in the middle of a study:
# everything it acknowledged is still on its spool, the read of the study
# waits for it (the fetch is retried) and, once it is back, reads every
# instance.
source "$(dirname "$0")/lib/common.sh"
source "$(dirname "$0")/lib/orthanc.sh"
source "$(dirname "$0")/lib/results.sh"
source "$(dirname "$0")/lib/cluster.sh"
it_setup "$@"
it_also_on_exit '[ -n "${ORTHANC_DIR:-}" ] && orthanc_stop "$ORTHANC_DIR";
  [ -f "$WORK/nodeb/secondread.pid" ] && kill -TERM "$(cat "$WORK/nodeb/secondread.pid")" 2>/dev/null;
  [ -f "$NODE/secondread.pid" ] && kill -TERM "$(cat "$NODE/secondread.pid")" 2>/dev/null; true'

REPO="$WORK/models"
threshold_volume_model "$REPO"
threshold_volume_model "$REPO" mr-threshold-volume 600 0.01 MR
worker_up --repo "$REPO" --set cpu.threads=1

cluster_secrets "$WORK/cluster-tls"
CA=$CLUSTER_DIR

cluster_routing >"$WORK/routing.yaml"

ORTHANC_DIR="$WORK/orthanc"
ORTHANC_DICOM=1
ORTHANC_DICOM_PORT=$(free_port)
export ORTHANC_DICOM ORTHANC_DICOM_PORT
PORT_A=$(free_port)
# shellcheck disable=SC2046
node_up --no-worker --pacs "ORTHANC@127.0.0.1:$ORTHANC_DICOM_PORT" --routing "$WORK/routing.yaml" \
  --set "inference.endpoints=[$SECONDREAD_WORKER_ADDR]" $(cluster_sets node-a "$PORT_A")
DICOM_A=$SECONDREAD_DICOM_PORT

# Replica B: the same configuration, its own ports, spool and log.
replica_b_ports
start_replica_b
restart_a() {  # [--set key=value]...
  # shellcheck disable=SC2046
  "$IT_REPO/scripts/dev-up" "$NODE" --node-only --no-worker --set "dicom.port=$DICOM_A" \
    --set "inference.endpoints=[$SECONDREAD_WORKER_ADDR]" $(cluster_sets node-a "$PORT_A") "$@" >/dev/null
  source "$NODE/env"
}

cat >"$WORK/orthanc-extra.json" <<JSON
{"ConcurrentJobs": 2,
 "DicomModalities": {"secondread": ["SECONDREAD", "127.0.0.1", $DICOM_A],
                     "replica-b": ["SECONDREAD", "127.0.0.1", $DICOM_B]}}
JSON
ORTHANC_EXTRA_CONFIG="$WORK/orthanc-extra.json" orthanc_start "$ORTHANC_DIR" secondread SECONDREAD 127.0.0.1 \
  "$DICOM_A" || fail "Orthanc did not start"

[ "$(sql "SELECT string_agg(node_id || ' ' || internal_url, ',' ORDER BY node_id) FROM nodes")" = \
  "node-a https://127.0.0.1:$PORT_A,node-b https://127.0.0.1:$PORT_B" ] ||
  fail "the replicas did not register: $(sql "SELECT * FROM nodes")"
pass "both replicas registered with their internal endpoints"

# A CT or MR series with a sphere (centre at voxel i 60, j 70, k 48; 8 mm).
gen_ct() {  # dir seed modality slices size
  local lesion modality=$3 slices=$4 size=$5
  $PY "$IT_REPO/tools/gen_series.py" "$1" --modality "$modality" --slices "$slices" --rows "$size" --columns "$size" \
    --pixel-spacing 0.7,0.7 --spacing 1.5 --seed "$2" >/dev/null
  lesion=$($PY - "$1/manifest.json" "$([ "$modality" = CT ] && echo 1500 || echo 1000)" <<'PY'
import json, sys
g = json.load(open(sys.argv[1]))
sz, sy, sx = g["spacing"]
c = [g["origin"][a] + 60 * sx * g["row"][a] + 70 * sy * g["column"][a] + 48 * sz * g["normal"][a] for a in range(3)]
print("%.4f,%.4f,%.4f,8,%s" % (*c, 1500 if len(sys.argv) < 3 else sys.argv[2]))
PY
)
  rm -rf "$1"
  $PY "$IT_REPO/tools/gen_series.py" "$1" --modality "$modality" --slices "$slices" --rows "$size" --columns "$size" \
    --pixel-spacing 0.7,0.7 --spacing 1.5 --seed "$2" --lesion="$lesion" >/dev/null
}

# ---- One study over two associations, one to each replica.
gen_ct "$WORK/ct1" 41 CT 180 256
mapfile -t IDS < <(upload_ids "$WORK"/ct1/*.dcm)
[ "${#IDS[@]}" -eq 180 ] || fail "Orthanc did not take the 180 slices"
# Every 12th slice to A, the rest to B: A's association ends while B's is
# still storing, so a read triggered by the first release would miss most of
# the study (and a second read would follow).
TO_A=() TO_B=()
for i in "${!IDS[@]}"; do if [ $((i % 12)) -eq 0 ]; then TO_A+=("${IDS[$i]}"); else TO_B+=("${IDS[$i]}"); fi; done
JB=$(store_job replica-b "${TO_B[@]}")
JA=$(store_job secondread "${TO_A[@]}")
[ "$(wait_job "$JA")" = Success ] || fail "Orthanc could not send to replica A"
[ "$(wait_job "$JB")" = Success ] || fail "Orthanc could not send to replica B"
[ "$(sql "SELECT bool_and(a.ended_at + interval '0.5 s' < b.ended_at AND b.started_at < a.ended_at)
          FROM associations a, associations b WHERE a.holder = 'node-a' AND b.holder = 'node-b'")" = t ] ||
  fail "setup: A's association did not end well before B's: $(sql "SELECT holder, started_at, ended_at FROM associations")"
[ "$(sql "SELECT string_agg(holder || ':' || n, ' ' ORDER BY holder) FROM
          (SELECT holder, count(*) n FROM instances GROUP BY holder) x")" = "node-a:15 node-b:165" ] ||
  fail "holders: $(sql "SELECT holder, count(*) FROM instances GROUP BY holder")"
pass "Orthanc sent the study over two associations at once, 15 instances to replica A (released first), 165 to B"

wait_sql "SELECT count(*) FROM reads WHERE input = 'volume' AND state IN ('done', 'failed')" 1 240
sleep 3  # a second (late) read would be created by now
[ "$(sql "SELECT count(*) || ' ' || max(generation) || ' ' || string_agg(state, ',') FROM reads")" = "1 1 done" ] ||
  fail "expected exactly one read, done: $(sql "SELECT id, generation, state, error FROM reads")"
[ "$(sql "SELECT count(*) FROM read_instances")" = 180 ] || fail "the read does not hold the 180 instances"
wait_sql "SELECT count(*) FROM exports WHERE state = 'sent'" 1 120
FETCHED=$(( $(fetched_at "http://127.0.0.1:$HTTP_B/metrics") + $(fetched_at "$SECONDREAD_METRICS_URL") ))
[ "$FETCHED" -eq 15 ] || [ "$FETCHED" -eq 165 ] ||
  fail "the reading replica should have fetched the other's instances (15 or 165), fetched $FETCHED"
pass "exactly one read of the study, on one replica, which fetched the other replica's $FETCHED instances"
fetch_results_from_orthanc "$WORK/pacs1" "SELECT kind || ' ' || sop_instance_uid FROM result_objects"
$PY - "$WORK/pacs1/seg.dcm" <<'PY' || fail "the SEG does not cover both replicas' slices"
import sys, pydicom
seg = pydicom.dcmread(sys.argv[1])
refs = {f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID for f in seg.PerFrameFunctionalGroupsSequence}
# The sphere (8 mm at 1.5 mm spacing) spans about 11 slices, alternately received by each replica.
assert len(refs) >= 9, len(refs)
PY
pass "Orthanc holds the SEG, SR and SC of the read (dciodvfy clean), the SEG spanning slices from both replicas"

# ---- The internal endpoint: token and names.
NAME=$(sql "SELECT spool_name FROM instances WHERE holder = 'node-a' LIMIT 1")
code() { curl -s -o "$WORK/got" -w '%{http_code}' --cacert "$CA/ca.pem" "$@"; }
[ "$(code "https://127.0.0.1:$PORT_A/internal/v1/instances/$NAME")" = 401 ] || fail "no token was not refused"
[ "$(code -H "Authorization: Bearer wrong-token-wrong-token-wrong-token" \
  "https://127.0.0.1:$PORT_A/internal/v1/instances/$NAME")" = 401 ] || fail "a wrong token was not refused"
[ "$(code -H "Authorization: Bearer $(cat "$CA/token")" \
  "https://127.0.0.1:$PORT_A/internal/v1/instances/$NAME")" = 200 ] || fail "the right token was refused"
cmp -s "$WORK/got" "$(spool_path "$NAME")" || fail "the served instance differs from the spool's file"
[ "$(code -H "Authorization: Bearer $(cat "$CA/token")" \
  "https://127.0.0.1:$PORT_A/internal/v1/instances/..%2F..%2Fdatabase.url")" = 404 ] || fail "a non-name was served"
curl -s -o /dev/null --max-time 5 "http://127.0.0.1:$PORT_A/internal/v1/instances/$NAME" &&
  fail "the internal endpoint answered plain HTTP"
pass "the internal endpoint serves a spool file byte for byte with the token, refuses none or a wrong one (401), serves only spool names, only over TLS"

# ---- A replica killed in the middle of a study loses nothing it acknowledged.
gen_ct "$WORK/ct2" 42 MR 96 128
mapfile -t IDS < <(upload_ids "$WORK"/ct2/*.dcm)
FIRST=("${IDS[@]:0:48}") REST=("${IDS[@]:48}")
STUDY2=$(dcmdump +P StudyInstanceUID "$WORK/ct2/$(ls "$WORK/ct2" | grep dcm | head -1)" | sed 's/.*\[\(.*\)\].*/\1/')
J=$(store_job secondread "${FIRST[@]}")
[ "$(wait_job "$J")" = Success ] || fail "Orthanc could not send the first half to replica A"
kill -9 "$(cat "$NODE/secondread.pid")"
HELD_A=$(sql "SELECT count(*) FROM instances i JOIN series se ON se.id = i.series_ref JOIN studies st ON st.id = se.study_ref
              WHERE st.study_instance_uid = '$STUDY2' AND i.holder = 'node-a'")
[ "$HELD_A" = 48 ] || fail "replica A acknowledged $HELD_A of 48"
J=$(store_job replica-b "${REST[@]}")
[ "$(wait_job "$J")" = Success ] || fail "Orthanc could not send the second half to replica B"
# The read of the study is due on B's release; its instances on A cannot be
# fetched while A is down, so the read is retried, not finished.
wait_sql "SELECT count(*) FROM reads WHERE input = 'volume'" 2 120
sleep 6
[ "$(sql "SELECT state FROM reads ORDER BY id DESC LIMIT 1")" != done ] || fail "the read finished without replica A's instances"
grep -q 'cannot fetch instance from node replica node-a' "$NODEB/log/secondread.log" ||
  fail "replica B did not report the unreachable holder: $(sql "SELECT id, queue, state, attempt, args FROM jobs ORDER BY id") $(sql "SELECT id, state, error FROM reads")"
pass "with replica A down the read of the study waits (cannot fetch instance from node replica node-a) and is retried"
restart_a
wait_sql "SELECT count(*) FROM reads WHERE input = 'volume' AND state = 'done'" 2 240
[ "$(sql "SELECT count(*) FROM read_instances WHERE read_ref = (SELECT max(id) FROM reads)")" = 96 ] ||
  fail "the read after the restart does not hold the 96 instances"
while read -r name; do
  [ -s "$(spool_path "$name")" ] || fail "an instance replica A acknowledged is missing from its spool"
done < <(sql "SELECT spool_name FROM instances WHERE holder = 'node-a'")
wait_sql "SELECT count(*) FROM exports WHERE state = 'sent'" 2 120
pass "replica A killed mid-study: all 48 instances it acknowledged are on its spool, and once it is back the study is read with all 96 and exported"

# ---- Retention on two replicas: each purges the files it holds, and only those.
stop_pid() { kill -TERM "$1" 2>/dev/null; for _ in $(seq 1 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done; }
stop_pid "$(cat "$NODE/secondread.pid")"; stop_pid "$(cat "$NODEB/secondread.pid")"
RETAIN=(--set retention.enabled=true --set retention.source_grace_seconds=2 --set retention.result_seconds=3
        --set retention.interval_seconds=1)
restart_a "${RETAIN[@]}"
start_replica_b "${RETAIN[@]}"
wait_sql "SELECT coalesce(string_agg(holder || ':' || n, ' '), '') FROM (SELECT holder, count(*) n FROM instances
          WHERE purged_at IS NULL GROUP BY holder) x" "" 60
wait_sql "SELECT coalesce(string_agg(holder || ':' || n, ' '), '') FROM (SELECT holder, count(*) n FROM result_objects
          WHERE purged_at IS NULL GROUP BY holder) x" "" 60
while read -r holder name; do
  own="$SECONDREAD_SPOOL" other="$NODEB/spool"
  [ "$holder" = node-b ] && { own="$NODEB/spool"; other="$SECONDREAD_SPOOL"; }
  [ ! -e "$own/objects/${name:0:2}/$name.dcm" ] || fail "$holder still has a purged instance on its spool"
  [ ! -e "$other/objects/${name:0:2}/$name.dcm" ] || fail "an instance of $holder is on the other replica's spool"
done < <(sql "SELECT holder || ' ' || spool_name FROM instances")
# Each replica audited its own purges of both studies.
[ "$(sql "SELECT string_agg(actor || ':' || n, ' ' ORDER BY actor) FROM (SELECT actor, count(DISTINCT study_ref) n
          FROM audit_log WHERE action = 'purge_study' GROUP BY actor) x")" = "secondread:node-a:2 secondread:node-b:2" ] ||
  fail "purge audit rows: $(sql "SELECT actor, study_ref, detail FROM audit_log WHERE action = 'purge_study'")"
[ "$(sql "SELECT count(*) FROM audit_log WHERE action = 'purge_study' AND detail->>'holder' <> substr(actor, 12)")" = 0 ] ||
  fail "a replica audited a purge of another's files"
pass "retention on both replicas: every instance and result file purged by the replica holding it (each audited its own), none left on either spool"
finish
