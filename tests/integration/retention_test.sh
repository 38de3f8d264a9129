#!/usr/bin/env bash
# Retention against the real node, PostgreSQL, a worker and Orthanc as the
# PACS, with a 3 s grace for source instances, 6 s for result files and a
# purge every second:
# - a study read and exported is purged after the grace: its files are gone,
#   its rows stay as tombstones, the spool's bytes and the metric moved, an
#   audit_log row and an ATNA DICOM Study Deleted message (over UDP to a
#   local socket) record it; its result files follow once old enough; a
#   re-sent instance is received again (row revived, new file) and purged
#   again later;
# - a study whose export is still pending (Orthanc stopped, the export
#   retried) keeps its source and result files however long it waits, and
#   is purged once Orthanc is back and the export is sent;
# - a late instance of a study sent around the time its purge runs (several
#   times, at different offsets) keeps its file and row, and is read and
#   exported;
# - under a study-level rule that rereads a grown study, the late image of a
#   purged study is read as generation 2, which lists the purged image as
#   left out.
source "$(dirname "$0")/lib/common.sh"
source "$(dirname "$0")/lib/orthanc.sh"
source "$(dirname "$0")/lib/results.sh"
it_setup "$@"
it_also_on_exit '[ -n "${UDP_PID:-}" ] && kill "$UDP_PID" 2>/dev/null; orthanc_stop "$WORK/orthanc"'

# The audit record repository: a UDP socket that appends each message as a line.
UDP_PORT=$(free_port)
$PY - "$UDP_PORT" "$WORK/atna.log" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", int(sys.argv[1])))
with open(sys.argv[2], "ab", buffering=0) as out:
    while True:
        data, _ = s.recvfrom(65535)
        out.write(data.replace(b"\n", b" ") + b"\n")
PY
UDP_PID=$!

# Radiographs (CR) are read one by one; a DX study as a whole, again when
# it grows.
cat >"$WORK/routing.yaml" <<'YAML'
routing:
  rules:
    - name: chest-radiographs
      match: {modalities: [CR], body_parts: [CHEST]}
      models: [{name: synthetic-nodule-demo}]
      completeness: {trigger: instance}
    - name: dx-studies
      match: {modalities: [DX]}
      models: [{name: synthetic-nodule-demo}]
      completeness: {trigger: association, silence_seconds: 30, expected_count: false, late_instances: reread}
YAML
results_up --routing "$WORK/routing.yaml" --audit-udp "127.0.0.1:$UDP_PORT" \
  --set retention.enabled=true --set retention.source_grace_seconds=3 --set retention.result_seconds=6 \
  --set retention.interval_seconds=1 \
  --set export.max_attempts=100 --set queue.backoff_base_ms=500 --set queue.backoff_max_ms=1000

# Generates study N of IMAGES chest radiographs into $WORK/sN and prints its
# Study Instance UID.
gen() {  # n images [modality]
  $PY "$IT_REPO/tools/gen_study.py" "$WORK/s$1" --studies 1 --images-per-study "$2" --lesion yes --modality "${3:-CR}" \
    --seed $((200 + $1)) >/dev/null
  $PY -c "import json,sys; print(json.load(open(sys.argv[1]))['studies'][0]['study_uid'])" "$WORK/s$1/manifest.json"
}
study_ref() { echo "(SELECT id FROM studies WHERE study_instance_uid = '$1')"; }
of_study() { echo "FROM instances i JOIN series se ON se.id = i.series_ref WHERE se.study_ref = $(study_ref "$1")"; }
results_of() { echo "FROM result_objects ro JOIN reads r ON r.id = ro.read_ref WHERE r.study_ref = $(study_ref "$1")"; }
exports_of() { echo "FROM exports e JOIN reads r ON r.id = e.read_ref WHERE r.study_ref = $(study_ref "$1")"; }
spool_files() { sql "SELECT i.spool_name $(of_study "$1")" | while read -r n; do spool_path "$n"; done; }
result_files() { sql "SELECT ro.file_name $(results_of "$1")" | while read -r n; do echo "$SECONDREAD_SPOOL/results/$n.dcm"; done; }
count_present() { local n=0 f; for f in "$@"; do [ -e "$f" ] && n=$((n + 1)); done; echo $n; }
objects_bytes() { du -sb --apparent-size "$SECONDREAD_SPOOL/objects" | cut -f1; }

# 1. A study read and exported is purged after the grace.
A=$(gen 1 2)
bytes_before=$(objects_bytes)
purged_metric_before=$(metric 'secondread_retention_purged_bytes_total{kind="instance"}')
send "$WORK"/s1/study-*/*.dcm >/dev/null 2>&1 || fail "storescu study A"
bytes_with=$(objects_bytes)
mapfile -t A_FILES < <(spool_files "$A")
[ "${#A_FILES[@]}" = 2 ] && [ "$(count_present "${A_FILES[@]}")" = 2 ] || fail "study A is not in the spool"
A_BYTES=$(sql "SELECT sum(i.size_bytes) $(of_study "$A")")
wait_sql "SELECT count(*) $(exports_of "$A") AND e.state = 'sent'" 2 120
mapfile -t A_RESULTS < <(result_files "$A")
wait_sql "SELECT count(*) $(of_study "$A") AND i.purged_at IS NOT NULL" 2 60
[ "$(count_present "${A_FILES[@]}")" = 0 ] || fail "study A's files are still in the spool"
[ "$(sql "SELECT count(*) $(of_study "$A")")" = 2 ] || fail "study A's instance rows are gone"
[ "$(sql "SELECT count(*) FROM reads WHERE study_ref = $(study_ref "$A") AND state = 'done'")" = 2 ] ||
  fail "study A's reads changed"
bytes_after=$(objects_bytes)

[ "$bytes_after" -le $((bytes_with - A_BYTES)) ] && [ "$bytes_after" -le "$bytes_before" ] ||
  fail "the spool's objects hold $bytes_after bytes after the purge, $bytes_with with the study, $bytes_before before"
purged_metric=$(metric 'secondread_retention_purged_bytes_total{kind="instance"}')
$PY -c "import sys; sys.exit(0 if float(sys.argv[2]) - float(sys.argv[1]) >= float(sys.argv[3]) else 1)" \
  "$purged_metric_before" "$purged_metric" "$A_BYTES" ||
  fail "purged bytes metric moved from $purged_metric_before to $purged_metric, the study held $A_BYTES"
[ "$(sql "SELECT detail->>'instances' FROM audit_log WHERE action = 'purge_study' AND study_ref = $(study_ref "$A")")" = 2 ] ||
  fail "no audit_log row for study A's purge"
deadline=$(( $(date +%s) + 30 ))
until grep -F '110105' "$WORK/atna.log" 2>/dev/null | grep >/dev/null -F "$A"; do
  [ "$(date +%s)" -lt "$deadline" ] || fail "no DICOM Study Deleted message for study A"
  sleep 0.3
done
grep -F '110105' "$WORK/atna.log" | grep -F "$A" | grep >/dev/null -F 'EventActionCode="D"' || fail "the ATNA message is not a deletion"
if grep -E '"event":"retention_[a-z_]*"' "$NODE/log/secondread.log" | grep >/dev/null -F -e "$A" -e "DOE" -e "$(sql "SELECT patient_id FROM patients p JOIN studies s ON s.patient_ref = p.id WHERE s.study_instance_uid = '$A'")"; then
  fail "a retention log line names the study or the patient"
fi
pass "study A read and exported: purged after the grace, $A_BYTES bytes freed (spool objects: $bytes_before before the study, $bytes_with with it, $bytes_after after), rows kept, metric $purged_metric_before -> $purged_metric, audit_log row and ATNA 110105"

[ "${#A_RESULTS[@]}" -ge 2 ] || fail "study A has ${#A_RESULTS[@]} result files"
wait_sql "SELECT count(*) $(results_of "$A") AND ro.purged_at IS NULL" 0 60
[ "$(count_present "${A_RESULTS[@]}")" = 0 ] || fail "study A's result files are still there"
[ "$(sql "SELECT count(*) FROM audit_log WHERE action = 'purge_results' AND study_ref = $(study_ref "$A")")" -ge 1 ] ||
  fail "no audit_log row for study A's result files"
curl -fsS -H "Authorization: Bearer $SECONDREAD_TOKEN" "${SECONDREAD_WORKLIST_URL%/}/api/v1/studies/$(sql "SELECT id FROM studies WHERE study_instance_uid = '$A'")" >"$WORK/a.json" ||
  fail "study detail of study A"
$PY - "$WORK/a.json" <<'PY' || fail "the worklist API still offers the purged previews"
import json, sys
d = json.load(open(sys.argv[1]))
results = [r for read in d["reads"] for r in read["results"]]
assert results and all("purged_at" in r and "image_url" not in r for r in results), results
PY
pass "study A's ${#A_RESULTS[@]} result files purged once delivered and old enough; the worklist says so"

# A re-sent instance after the purge is received again and purged again later.
send "$WORK"/s1/study-*/img-1.dcm >/dev/null 2>&1 || fail "storescu re-send"
[ "$(sql "SELECT count(*) $(of_study "$A") AND i.receive_count = 2 AND i.purged_at IS NULL")" = 1 ] ||
  [ "$(sql "SELECT count(*) FROM audit_log WHERE action = 'purge_study' AND study_ref = $(study_ref "$A")")" = 2 ] ||
  fail "the re-sent instance's row was not revived"
wait_sql "SELECT count(*) FROM audit_log WHERE action = 'purge_study' AND study_ref = $(study_ref "$A")" 2 60
[ "$(count_present "${A_FILES[@]}")" = 0 ] || fail "the re-sent file was not purged again"
[ "$(sql "SELECT count(*) FROM reads WHERE study_ref = $(study_ref "$A")")" = 2 ] || fail "a re-sent instance made a read"
pass "an instance re-sent after the purge is received again (row revived, new file) and purged again after the grace"

# 2. The PACS is down: the export is retried, nothing of the study is purged.
orthanc_stop "$ORTHANC_DIR"
B=$(gen 2 2)
send "$WORK"/s2/study-*/*.dcm >/dev/null 2>&1 || fail "storescu study B"
mapfile -t B_FILES < <(spool_files "$B")
wait_sql "SELECT count(*) FROM reads WHERE study_ref = $(study_ref "$B") AND state = 'done'" 2 120
wait_sql "SELECT bool_and(e.attempts >= 2)::text $(exports_of "$B")" true 60
mapfile -t B_RESULTS < <(result_files "$B")
sleep 12   # four source graces, twice the result age, twelve purge runs
[ "$(sql "SELECT count(*) $(exports_of "$B") AND e.state = 'pending'")" = 2 ] || fail "study B's exports are not pending"
[ "$(sql "SELECT count(*) $(of_study "$B") AND i.purged_at IS NOT NULL")" = 0 ] || fail "study B was purged with its export pending"
[ "$(sql "SELECT count(*) $(results_of "$B") AND ro.purged_at IS NOT NULL")" = 0 ] || fail "study B's results were purged before delivery"
[ "$(count_present "${B_FILES[@]}" "${B_RESULTS[@]}")" = $(( ${#B_FILES[@]} + ${#B_RESULTS[@]} )) ] ||
  fail "files of study B are gone"
pass "study B with its exports pending (attempts $(sql "SELECT string_agg(e.attempts::text, ',') $(exports_of "$B")")): nothing purged after 12 s"
ORTHANC_HTTP_PORT=${ORTHANC_URL##*:} orthanc_start "$ORTHANC_DIR" secondread SECONDREAD 127.0.0.1 "$SECONDREAD_DICOM_PORT" ||
  fail "Orthanc restart"
wait_sql "SELECT count(*) $(exports_of "$B") AND e.state = 'sent'" 2 120
wait_sql "SELECT count(*) $(of_study "$B") AND i.purged_at IS NOT NULL" 2 60
wait_sql "SELECT count(*) $(results_of "$B") AND ro.purged_at IS NULL" 0 60
[ "$(count_present "${B_FILES[@]}" "${B_RESULTS[@]}")" = 0 ] || fail "files of study B are still there"
pass "Orthanc back: study B's exports sent, then its source and result files purged"

# 3. A late instance racing the purge of its study.
before=0 after=0
for i in 1 2 3 4 5 6; do
  n=$((10 + i))
  U=$(gen $n 2)
  send "$WORK"/s$n/study-*/img-1.dcm >/dev/null 2>&1 || fail "storescu race $i"
  wait_sql "SELECT count(*) $(exports_of "$U") AND e.state = 'sent'" 1 120
  # The purge is due 3 s after the first instance; send around then.
  sleep "$(awk -v i="$i" 'BEGIN { printf "%.1f", 1.4 + i * 0.35 }')"
  send "$WORK"/s$n/study-*/img-2.dcm >/dev/null 2>&1 || fail "storescu late instance $i"
  late=$(sql "SELECT i.id $(of_study "$U") AND i.sop_instance_uid = '$(dicom_uid "$WORK"/s$n/study-*/img-2.dcm)'")
  [ -n "$late" ] || fail "race $i: the late instance has no row"
  wait_sql "SELECT r.state FROM reads r JOIN read_instances ri ON ri.read_ref = r.id WHERE ri.instance_ref = $late" done 120
  [ "$(sql "SELECT r.images_read FROM reads r JOIN read_instances ri ON ri.read_ref = r.id WHERE ri.instance_ref = $late")" = 1 ] ||
    fail "race $i: the late instance was not read"
  wait_sql "SELECT e.state FROM exports e JOIN read_instances ri ON ri.read_ref = e.read_ref WHERE ri.instance_ref = $late" sent 120
  [ "$(sql "SELECT count(*) $(of_study "$U")")" = 2 ] || fail "race $i: rows lost"
  first_purge=$(sql "SELECT min(at) < (SELECT received_at FROM instances WHERE id = $late) FROM audit_log WHERE action = 'purge_study' AND study_ref = $(study_ref "$U")")
  if [ "$first_purge" = t ]; then before=$((before + 1)); else after=$((after + 1)); fi
done
[ "$(sql "SELECT count(*) FROM reads WHERE state = 'failed'")" = 0 ] || fail "a read failed: $(sql "SELECT error FROM reads WHERE state = 'failed'")"
pass "late instances sent around their study's purge (purged first in $before of 6, not yet in $after): each kept its file and row and was read and exported"

# 4. A study-level rule that rereads a grown study: the late image of a
# purged study is read in a new generation, which records the purged image
# as left out rather than fail on its missing file.
D=$(gen 30 2 DX)
send "$WORK"/s30/study-*/img-1.dcm >/dev/null 2>&1 || fail "storescu DX study"
wait_sql "SELECT count(*) $(exports_of "$D") AND e.state = 'sent'" 1 120
wait_sql "SELECT count(*) $(of_study "$D") AND i.purged_at IS NOT NULL" 1 60
send "$WORK"/s30/study-*/img-2.dcm >/dev/null 2>&1 || fail "storescu DX late image"
wait_sql "SELECT state FROM reads WHERE study_ref = $(study_ref "$D") AND generation = 2" done 120
[ "$(sql "SELECT images_read FROM reads WHERE study_ref = $(study_ref "$D") AND generation = 2")" = 1 ] ||
  fail "the second generation did not read the late image alone"
[ "$(sql "SELECT string_agg(reason, ',') FROM read_skipped_instances s JOIN reads r ON r.id = s.read_ref WHERE r.study_ref = $(study_ref "$D") AND r.generation = 2")" = purged ] ||
  fail "the second generation does not record the purged image"
wait_sql "SELECT count(*) $(exports_of "$D") AND e.state = 'sent'" 2 120
pass "a late image of a purged DX study is reread as generation 2 of the study: the late image read, the purged one recorded as left out, the result exported"
finish
