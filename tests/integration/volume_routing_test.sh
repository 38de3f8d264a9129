#!/usr/bin/env bash
# Routing rules that ask for a volume, against the real node and PostgreSQL.
# A volume rule for axial original CT of at least 10 slices, 2 to 3 mm,
# one object per slice, records a volume read of the axial series only: not
# of a coronal series, a 6-slice one or a derived one. A second volume rule
# for multi-frame objects takes an enhanced CT series, its plane and slice
# thickness read from the functional groups and its slices counted in
# frames. The registry keeps each instance's plane and thickness. A 2D rule
# still reads the CR images of the study that holds the axial series, the
# 2D dispatcher never takes a volume read (not even from a job that names
# one), and the worklist API lists both reads of that study.
source "$(dirname "$0")/lib/common.sh"
source "$(dirname "$0")/lib/results.sh"
it_setup "$@"

cat >"$WORK/routing.yaml" <<'YAML'
routing:
  rules:
    - name: ct-volume
      input: volume
      match: {modalities: [CT], series_description: "(?i)chest"}
      series:
        min_slices: 10
        max_slices: 400
        slice_thickness_mm: [2, 3]
        orientation: [axial]
        image_type: [ORIGINAL, PRIMARY, AXIAL]
        multiframe: false
      models: [{name: ct-volume-demo}]
      completeness: {trigger: association, silence_seconds: 60, expected_count: false}
    - name: ct-enhanced
      input: volume
      match: {modalities: [CT], series_description: "(?i)enhanced"}
      series: {min_slices: 10, multiframe: true, orientation: [axial, coronal], slice_thickness_mm: [2.5, 2.5]}
      models: [{name: ct-volume-demo}]
      completeness: {trigger: association, silence_seconds: 60, expected_count: false}
    - name: cr-2d
      match: {modalities: [CR]}
      models: [{name: synthetic-nodule-demo}]
      completeness: {trigger: association, silence_seconds: 60, expected_count: false}
YAML
# Volume rules that make no sense stop the node at start, before it touches
# the database.
refused() {  # rule-body expected-message
  printf 'database: {url: "postgresql://127.0.0.1:1/none"}\nrouting:\n  rules:\n    - name: v\n      models: [{name: m}]\n%s\n' \
    "$1" >"$WORK/bad.yaml"
  local out
  out=$(timeout 20 "$BUILD_DIR/cmd/secondread/secondread" serve --config "$WORK/bad.yaml" 2>&1) && fail "started with: $1"
  [[ "$out" == *"$2"* ]] || fail "refusal of [$1]: $out"
}
refused $'      input: volume\n      series: {min_slices: 10, slice_thickness_mm: [1, 2, 3]}' "slice_thickness_mm must be [low, high]"
refused $'      input: volume\n      series: {min_slices: 10, slice_thickness_mm: [3, 1]}' "empty range"
refused $'      input: volume\n      series: {min_slices: 10, max_slices: 9}' "max_slices is below"
refused $'      input: volume\n      series: {max_slices: 9}' "min_slices of 2 or more"
refused $'      input: volume\n      series: {min_slices: 10, slices: 3}' "unknown configuration key 'routing.rules.0.series.slices'"
refused $'      input: volume\n      series: {min_slices: 10, orientation: [transverse]}' "not axial, coronal or sagittal"
refused $'      input: volume\n      series: {min_slices: 10}\n      completeness: {trigger: instance}' "cannot be instance"
refused $'      series: {min_slices: 10}' "series criteria need input: volume"
refused $'      input: volumes' "input must be image or volume"
pass "volume rules that make no sense are refused at start with the reason"

# volume.enabled=false: the reads stay queued where this test looks at them
# (volume_e2e_test runs them).
IT_WORKER=1 node_up --routing "$WORK/routing.yaml" --set queue.maintenance_interval_ms=500 --set volume.enabled=false

$PY "$IT_REPO/tools/gen_study.py" "$WORK/cr" --studies 1 --images-per-study 2 --modality CR --size 256 --seed 7 >/dev/null

# CT series with known geometry; each seed is its own patient and study,
# except that a series given a study joins the CR study (a study with a 2D
# and a volume read, on the worklist once its 2D read is done).
series() {  # name seed description image-type join-cr-study(0|1) gen_series-args...
  local name=$1 seed=$2 description=$3 image_type=$4 join=$5
  shift 5
  $PY "$IT_REPO/tools/gen_series.py" "$WORK/$name" --modality CT --spacing 2.5 --seed "$seed" "$@" >/dev/null
  $PY - "$WORK/$name" "$description" "$image_type" "$join" "$WORK/cr/study-1" <<'PY'
import glob, os, sys
import pydicom
out, description, image_type, join, cr = sys.argv[1:]
study = pydicom.dcmread(sorted(glob.glob(os.path.join(cr, "*.dcm")))[0]) if join == "1" else None
for path in glob.glob(os.path.join(out, "*.dcm")):
    ds = pydicom.dcmread(path)
    ds.SeriesDescription = description
    ds.ImageType = image_type.split("\\")
    if study is not None:
        for keyword in ("StudyInstanceUID", "PatientID", "PatientName", "PatientBirthDate", "PatientSex",
                        "StudyDate", "StudyTime", "AccessionNumber", "StudyID"):
            if keyword in study:
                setattr(ds, keyword, study.data_element(keyword).value)
    ds.save_as(path)
PY
}
series axial 11 "Chest 2.5" 'ORIGINAL\PRIMARY\AXIAL' 1 --orientation axial --slices 12
series coronal 12 "Chest 2.5 cor" 'ORIGINAL\PRIMARY\AXIAL' 0 --orientation coronal --slices 12
series short 13 "Chest 2.5" 'ORIGINAL\PRIMARY\AXIAL' 0 --orientation axial --slices 6
series derived 14 "Chest 2.5 MIP" 'DERIVED\SECONDARY\AXIAL' 0 --orientation axial --slices 12
series enhanced 15 "Enhanced chest" 'ORIGINAL\PRIMARY\VOLUME' 0 --orientation axial --slices 12 --layout enhanced
for d in axial coronal short derived enhanced; do
  send "$WORK/$d"/*.dcm >/dev/null 2>&1 || fail "storescu $d"
done
send "$WORK/cr/study-1"/*.dcm >/dev/null 2>&1 || fail "storescu cr"

series_uid() { $PY -c "import pydicom,glob,sys; print(pydicom.dcmread(sorted(glob.glob(sys.argv[1]+'/*.dcm'))[0]).SeriesInstanceUID)" "$WORK/$1"; }
facts() {  # series dir -> "orientation thickness frames" of its instances, distinct
  sql "SELECT DISTINCT COALESCE(i.orientation, 'unknown') || ' ' || COALESCE(i.slice_thickness_mm::text, 'unknown') || ' '
              || COALESCE(i.number_of_frames::text, '-')
       FROM instances i JOIN series se ON se.id = i.series_ref WHERE se.series_instance_uid = '$(series_uid "$1")'"
}

# The 2D read runs to the end; by then every study has been routed.
wait_sql "SELECT count(*) FROM reads WHERE rule_name = 'cr-2d' AND state IN ('done', 'failed')" 1 60
wait_sql "SELECT count(*) FROM study_routing" 5 20
[ "$(sql "SELECT state FROM reads WHERE rule_name = 'cr-2d'")" = done ] ||
  fail "the 2D read: $(sql "SELECT state, error FROM reads WHERE rule_name = 'cr-2d'")"
pass "a 2D rule still reads its study alongside volume rules"

[ "$(facts axial)" = "axial 2.5 -" ] || fail "axial facts: $(facts axial)"
[ "$(facts coronal)" = "coronal 2.5 -" ] || fail "coronal facts: $(facts coronal)"
[ "$(facts enhanced)" = "axial 2.5 12" ] || fail "enhanced facts (functional groups): $(facts enhanced)"
pass "the registry keeps each instance's plane and slice thickness, from the functional groups for enhanced CT"

volume_reads() {  # -> "rule series-uid state images" per volume read
  sql "SELECT r.rule_name || ' ' || se.series_instance_uid || ' ' || r.state || ' '
              || (SELECT count(*) FROM read_instances ri WHERE ri.read_ref = r.id)
       FROM reads r JOIN series se ON se.id = r.series_ref WHERE r.input = 'volume' ORDER BY r.rule_name"
}
expected=$(printf '%s\n' "ct-enhanced $(series_uid enhanced) queued 1" "ct-volume $(series_uid axial) queued 12")
[ "$(volume_reads)" = "$expected" ] || fail "volume reads: [$(volume_reads)], expected [$expected]"
[ "$(sql "SELECT count(*) FROM reads WHERE input = 'image' AND rule_name LIKE 'ct-%'")" = 0 ] ||
  fail "a volume rule made a 2D read"
for d in coronal short derived; do
  reason=$(sql "SELECT sr.status || ': ' || sr.reason FROM study_routing sr JOIN series se ON se.study_ref = sr.study_ref
                WHERE se.series_instance_uid = '$(series_uid $d)'")
  [ "$reason" = "unmatched: rule ct-volume: no series meets its series criteria" ] || fail "$d routing: $reason"
done
pass "volume reads are recorded for the axial and the enhanced series only; coronal, short and derived are unmatched"

# Nothing queues a volume read for the 2D dispatcher; each has one job on
# the volume queue ...
[ "$(sql "SELECT count(*) FROM jobs j JOIN reads r ON r.id = (j.args->>'read_id')::bigint WHERE r.input = 'volume' AND j.queue <> 'volume'")" = 0 ] ||
  fail "a dispatch job names a volume read"
[ "$(sql "SELECT count(DISTINCT r.id) FROM jobs j JOIN reads r ON r.id = (j.args->>'read_id')::bigint WHERE r.input = 'volume' AND j.queue = 'volume'")" = 2 ] ||
  fail "volume reads without their volume job"
# ... and a dispatch job that names one anyway leaves it untouched.
vid=$(sql "SELECT id FROM reads WHERE rule_name = 'ct-volume'")
sql "INSERT INTO jobs (queue, priority, args, max_attempts) VALUES ('dispatch', 1, '{\"read_id\": $vid}', 1)"
wait_sql "SELECT count(*) FROM jobs WHERE args->>'read_id' = '$vid' AND state IN ('completed', 'discarded')" 1 20
[ "$(sql "SELECT state || ' ' || COALESCE(error, '-') || ' ' || (started_at IS NULL) FROM reads WHERE id = $vid")" = "queued - true" ] ||
  fail "the 2D dispatcher touched the volume read: $(sql "SELECT state, error FROM reads WHERE id = $vid")"
[ "$(sql "SELECT count(*) FROM findings WHERE read_ref = $vid")" = 0 ] || fail "findings for a volume read"
pass "the 2D dispatcher does not take a volume read, even from a job that names it"

study_id=$(sql "SELECT study_ref FROM reads WHERE id = $vid")
curl -fsS -H "Authorization: Bearer $SECONDREAD_TOKEN" "${SECONDREAD_WORKLIST_URL%/}/api/v1/studies/$study_id" >"$WORK/study.json" ||
  fail "study detail"
$PY - "$WORK/study.json" "$(series_uid axial)" <<'PY' || fail "the study detail does not show the volume read"
import json, sys
reads = json.load(open(sys.argv[1]))["reads"]
got = sorted((r["input"], r["series_instance_uid"], r["state"]) for r in reads)
assert got == [("image", None, "done"), ("volume", sys.argv[2], "queued")], reads
PY
pass "the worklist API lists the study's 2D read and its volume read with the series"
finish
