#!/usr/bin/env bash
# Result objects are named by the read that made them (study, rule, model,
# version, scope and, for the SR, the images read), so reads of one study
# that produce different content never share a SOP Instance UID: two rules
# with one model, a per-instance and a study-level read of one image, and a
# re-read of a study that gained an image (whose SR names the one it
# replaces). Orthanc is the PACS and counts what it holds.
source "$(dirname "$0")/lib/common.sh"
source "$(dirname "$0")/lib/orthanc.sh"
source "$(dirname "$0")/lib/results.sh"
it_setup "$@"
it_also_on_exit 'orthanc_stop "$WORK/orthanc"'

cat >"$WORK/routing.yaml" <<'YAML'
routing:
  rules:
    - name: two-a
      match: {calling_aes: [TWO]}
      models: [{name: synthetic-nodule-demo}]
      completeness: {trigger: association, silence_seconds: 60}
    - name: two-b
      match: {calling_aes: [TWO]}
      models: [{name: synthetic-nodule-demo}]
      completeness: {trigger: association, silence_seconds: 60}
    - name: each
      match: {calling_aes: [BOTH]}
      models: [{name: synthetic-nodule-demo}]
      completeness: {trigger: instance}
    - name: whole
      match: {calling_aes: [BOTH]}
      models: [{name: synthetic-nodule-demo}]
      completeness: {trigger: association, silence_seconds: 60}
    - name: late
      match: {calling_aes: [LATE]}
      models: [{name: synthetic-nodule-demo}]
      completeness: {trigger: association, silence_seconds: 60, late_instances: reread}
YAML
results_up --routing "$WORK/routing.yaml" --set 'dicom.allowed_callers=[STORESCU,ORTHANC,TWO,BOTH,LATE]' \
  --set queue.maintenance_interval_ms=500

gen() {  # name images
  $PY "$IT_REPO/tools/gen_study.py" "$WORK/$1" --studies 1 --images-per-study "$2" --lesion yes --modality CR \
    --size 256 --seed "$RANDOM" >/dev/null
  echo "$WORK/$1/study-1"
}
uid_of() { $PY -c "import json,sys; print(json.load(open(sys.argv[1]))['studies'][0]['study_uid'])" "$WORK/$1/manifest.json"; }
orthanc_id() {  # study uid -> Orthanc id, waiting for the first result
  local id="" deadline=$(( $(date +%s) + 90 ))
  while [ -z "$id" ] && [ "$(date +%s)" -lt "$deadline" ]; do
    id=$(curl -fsS -X POST "$ORTHANC_URL/tools/lookup" -d "$1" |
      $PY -c 'import json,sys; r=[x for x in json.load(sys.stdin) if x["Type"]=="Study"]; print(r[0]["ID"] if r else "")')
    [ -n "$id" ] || sleep 0.5
  done
  [ -n "$id" ] || fail "no results in Orthanc for $1"
  echo "$id"
}
study_reads() { echo "SELECT r.id FROM reads r JOIN studies s ON s.id = r.study_ref WHERE s.study_instance_uid = '$1'"; }
# Every read of the study done, every export sent, and each read still owns
# its own SR and SCs (none taken over by another read).
all_sent() {  # uid reads
  wait_sql "SELECT count(*) FILTER (WHERE state = 'done') FROM reads WHERE id IN ($(study_reads "$1"))" "$2" 90
  wait_sql "SELECT count(*) FILTER (WHERE state = 'sent') FROM exports WHERE read_ref IN ($(study_reads "$1"))" "$2" 90
}
# Exactly n SR and m SC in Orthanc, after a pause long enough for a late
# duplicate to arrive.
orthanc_holds() {  # uid n_sr n_sc label
  local id list
  id=$(orthanc_id "$1")
  wait_results_in_orthanc "$id" "$2" "$3" 90
  sleep 1
  list=$(orthanc_instances "$id")
  [ "$(grep -c '^SR ' <<<"$list")" -eq "$2" ] && [ "$(grep -c '^OT ' <<<"$list")" -eq "$3" ] ||
    fail "$4: Orthanc holds $(grep -c '^SR ' <<<"$list") SR and $(grep -c '^OT ' <<<"$list") SC, want $2 and $3"
}
objects_per_read() {  # uid -> "kind count" per read, e.g. "sc1 sr1"
  sql "SELECT string_agg(k, ',' ORDER BY r) FROM (
         SELECT r.id AS r, string_agg(ro.kind || count_k, ' ' ORDER BY ro.kind) AS k
         FROM reads r JOIN (SELECT read_ref, kind, count(*) AS count_k FROM result_objects GROUP BY read_ref, kind) ro
           ON ro.read_ref = r.id
         WHERE r.id IN ($(study_reads "$1")) GROUP BY r.id) x"
}

# 1. Two rules with the same model on one study.
d=$(gen two 1)
SEND_AET=TWO send "$d"/img-1.dcm >/dev/null 2>&1 || fail "storescu TWO"
all_sent "$(uid_of two)" 2
orthanc_holds "$(uid_of two)" 2 2 "two rules, one model"
[ "$(objects_per_read "$(uid_of two)")" = "sc1 sr1,sc1 sr1" ] ||
  fail "two rules: result objects per read: $(objects_per_read "$(uid_of two)")"
pass "two rules with one model on one study: two SRs and two SCs, each read keeps its own"

# 2. A per-instance read and a study-level read of the same image.
d=$(gen both 1)
SEND_AET=BOTH send "$d"/img-1.dcm >/dev/null 2>&1 || fail "storescu BOTH"
all_sent "$(uid_of both)" 2
orthanc_holds "$(uid_of both)" 2 2 "per-instance and study read"
[ "$(objects_per_read "$(uid_of both)")" = "sc1 sr1,sc1 sr1" ] ||
  fail "per-instance and study read: result objects per read: $(objects_per_read "$(uid_of both)")"
pass "a per-instance and a study-level read of one image: two SRs and two SCs"

# 3. late_instances: reread. The second generation reads both images: a new
# SR naming the first as its predecessor, the first image's SC kept (same
# content, same UID), a new SC for the new image.
d=$(gen late 2)
uid=$(uid_of late)
SEND_AET=LATE send "$d"/img-1.dcm >/dev/null 2>&1 || fail "storescu LATE 1"
all_sent "$uid" 1
orthanc_holds "$uid" 1 1 "late, first generation"
first_sr=$(sql "SELECT ro.sop_instance_uid FROM result_objects ro WHERE ro.kind = 'sr' AND ro.read_ref IN ($(study_reads "$uid"))")
first_sc=$(sql "SELECT ro.sop_instance_uid FROM result_objects ro WHERE ro.kind = 'sc' AND ro.read_ref IN ($(study_reads "$uid"))")
SEND_AET=LATE send "$d"/img-2.dcm >/dev/null 2>&1 || fail "storescu LATE 2"
wait_sql "SELECT count(*) FROM reads WHERE id IN ($(study_reads "$uid"))" 2 30
all_sent "$uid" 2
orthanc_holds "$uid" 2 2 "late, second generation"
[ "$(sql "SELECT ro.sop_instance_uid FROM result_objects ro JOIN reads r ON r.id = ro.read_ref
          WHERE r.generation = 1 AND ro.read_ref IN ($(study_reads "$uid")) ORDER BY ro.kind DESC, ro.id" | tr '\n' ' ')" = "$first_sr $first_sc " ] ||
  fail "the second generation took over the first generation's result objects"
second=$(sql "SELECT ro.file_name || ' ' || ro.sop_instance_uid FROM result_objects ro JOIN reads r ON r.id = ro.read_ref
              WHERE r.generation = 2 AND ro.kind = 'sr' AND ro.read_ref IN ($(study_reads "$uid"))")
[ -n "$second" ] || fail "the second generation wrote no SR"
[ "${second#* }" != "$first_sr" ] || fail "the second generation's SR kept the first one's UID"
sr_file="$SECONDREAD_SPOOL/results/${second%% *}.dcm"
dump=$(dcmdump -q "$sr_file" 2>&1) || fail "dcmdump of the second SR"
predecessors=$(awk '/\(0040,a360\)/ { inside = 1 } inside && /\(0008,1155\)/ { print; exit }' <<<"$dump")
[ -n "$predecessors" ] || fail "the second SR has no Predecessor Documents Sequence"
grep -qF "$first_sr" <<<"$predecessors" || fail "the second SR's predecessor is not the first SR ($first_sr): $predecessors"
check_dciodvfy "$sr_file" "the successor SR"
[ "$(sql "SELECT count(*) FROM result_objects ro JOIN reads r ON r.id = ro.read_ref
          WHERE r.generation = 2 AND ro.kind = 'sc' AND ro.read_ref IN ($(study_reads "$uid"))")" = 1 ] ||
  fail "the second generation should add exactly one SC, for the new image"
pass "late_instances reread: a new SR naming its predecessor, the first SC kept, one new SC; nothing taken over"
finish
