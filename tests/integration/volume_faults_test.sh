#!/usr/bin/env bash
# Faults on volume reads, with Orthanc as the PACS and a volume model whose
# right answer is known (every voxel above 500 HU).
# 1. The worker is killed with -9 while it holds a volume: a slow copy of the
#    model keeps the volume in compute, the recording proxy in front of the
#    worker shows the whole volume went through, and the worker is killed
#    before it answers. A new worker on the same port serves the model; the
#    read is retried and ends done, exactly one SEG, one SR and one key-slice
#    SC land in the database and in Orthanc, each sent once, and the node
#    kept running.
# 2. A series still arriving when completeness fires (a 2 s silence, then
#    the rest of the series, with late_instances: reread). The study's other
#    series is complete. The first read is of the partial series (its 12
#    slices); the grown series is read again as generation 2 of all 20
#    slices, whose SR names the partial read's SR in its Predecessor
#    Documents Sequence, not the report on the other series; the unchanged
#    series' second read makes nothing new and sends nothing. A series whose
#    first part has a gap is refused with the reason, and read once the gap
#    is filled. Orthanc holds each of the study's result objects once.
source "$(dirname "$0")/lib/common.sh"
source "$(dirname "$0")/lib/orthanc.sh"
source "$(dirname "$0")/lib/results.sh"
it_setup "$@"
it_also_on_exit '[ -n "${WORKER_PID:-}" ] && kill -CONT "$WORKER_PID" 2>/dev/null;
  [ -n "${REC_PID:-}" ] && kill "$REC_PID" 2>/dev/null; orthanc_stop "$WORK/orthanc"'

# Two repositories serve one model, threshold-volume-demo version 1: the slow
# one spends seconds on every window (work the answer does not depend on),
# so a volume stays in compute long enough to kill the worker holding it.
REPO="$WORK/models"
threshold_volume_model "$REPO"
SLOW_REPO="$WORK/slow-models"
threshold_volume_model "$SLOW_REPO"
$PY - "$SLOW_REPO/threshold-volume-demo/1/model.pt" <<'PY'
import sys, torch
class SlowThreshold(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = torch.ones(512, 512) + x.mean() * 0.0
        for _ in range(12):
            m = torch.tanh(m @ m / 512.0)
        return torch.cat([torch.zeros_like(x), (x - 500.0) / 100.0 + m.mean() * 0.0], dim=1)
torch.jit.trace(SlowThreshold(), torch.zeros(1, 1, 8, 16, 16)).save(sys.argv[1])
PY

worker_up --repo "$SLOW_REPO" --set cpu.threads=1
WORKER_ADDR=$SECONDREAD_WORKER_ADDR
WORKER_PID=$SECONDREAD_WORKER_PID
recorder_up

cat >"$WORK/routing.yaml" <<'YAML'
routing:
  rules:
    - name: ct-volume
      input: volume
      match: {modalities: [CT]}
      series: {min_slices: 10}
      models: [{name: threshold-volume-demo}]
      completeness: {trigger: silence, silence_seconds: 2, expected_count: false, late_instances: reread}
YAML
results_up --routing "$WORK/routing.yaml" --set "inference.endpoints=[$RECORDER_ADDR]"
NODE_PID=$(cat "$NODE/secondread.pid")

# A CT series (axial unless told) with a 5 mm sphere at voxel (i, j, k).
ct_series() {  # dir seed slices rows columns i j k [gen_series args...]
  local dir=$1 seed=$2 slices=$3 rows=$4 cols=$5 i=$6 j=$7 k=$8 lesion
  shift 8
  $PY "$IT_REPO/tools/gen_series.py" "$dir" --modality CT --slices "$slices" --rows "$rows" --columns "$cols" \
    --seed "$seed" "$@" >/dev/null
  lesion=$($PY - "$dir/manifest.json" "$i" "$j" "$k" <<'PY'
import json, sys
g = json.load(open(sys.argv[1]))
i, j, k = (int(v) for v in sys.argv[2:5])
sz, sy, sx = g["spacing"]
c = [g["origin"][a] + i * sx * g["row"][a] + j * sy * g["column"][a] + k * sz * g["normal"][a] for a in range(3)]
print("%.4f,%.4f,%.4f,5,1500" % tuple(c))
PY
)
  rm -rf "$dir"
  $PY "$IT_REPO/tools/gen_series.py" "$dir" --modality CT --slices "$slices" --rows "$rows" --columns "$cols" \
    --seed "$seed" --lesion="$lesion" "$@" >/dev/null
}
series_uid_of() { $PY -c 'import glob,sys,pydicom; print(pydicom.dcmread(sorted(glob.glob(sys.argv[1] + "/*.dcm"))[0]).SeriesInstanceUID)' "$1"; }
study_uid_of() { $PY -c 'import glob,sys,pydicom; print(pydicom.dcmread(sorted(glob.glob(sys.argv[1] + "/*.dcm"))[0]).StudyInstanceUID)' "$1"; }
orthanc_study() {  # study uid -> Orthanc id, waiting for it
  local id="" deadline=$(( $(date +%s) + 90 ))
  while [ -z "$id" ] && [ "$(date +%s)" -lt "$deadline" ]; do
    id=$(curl -fsS -X POST "$ORTHANC_URL/tools/lookup" -d "$1" |
      $PY -c 'import json,sys; r=[x for x in json.load(sys.stdin) if x["Type"]=="Study"]; print(r[0]["ID"] if r else "")')
    [ -n "$id" ] || sleep 0.5
  done
  [ -n "$id" ] || fail "Orthanc holds no results for study $1"
  echo "$id"
}
# Fetches result objects (by SOP Instance UID) from Orthanc into DIR/UID.dcm.
fetch_from_orthanc() {  # dir uids...
  local dir=$1 uid id
  shift
  mkdir -p "$dir"
  for uid in "$@"; do
    id=$(curl -fsS -X POST "$ORTHANC_URL/tools/lookup" -d "$uid" |
      $PY -c 'import json,sys; r=[x for x in json.load(sys.stdin) if x["Type"]=="Instance"]; print(r[0]["ID"] if r else "")')
    [ -n "$id" ] || fail "Orthanc does not hold $uid"
    curl -fsS "$ORTHANC_URL/instances/$id/file" -o "$dir/$uid.dcm" || fail "fetch $uid from Orthanc"
  done
}
volume_read() {  # series uid generation -> read id
  sql "SELECT r.id FROM reads r JOIN series se ON se.id = r.series_ref
       WHERE se.series_instance_uid = '$1' AND r.input = 'volume' AND r.generation = $2"
}
export_sent_lines() { grep -c "\"export_sent\".*\"read_id\":${1}[,}]" "$NODE/log/secondread.log" || true; }

# 1. The worker is killed while it holds the volume.
ct_series "$WORK/kill" 51 20 48 48 24 24 10
KILL_SERIES=$(series_uid_of "$WORK/kill")
KILL_STUDY=$(study_uid_of "$WORK/kill")
send "$WORK"/kill/*.dcm >/dev/null 2>&1 || fail "storescu kill series"
# The volume (20 x 48 x 48 float32, 184 KB, one chunk) has passed the proxy
# to the worker.
deadline=$(( $(date +%s) + 90 ))
while [ "$(stat -c %s "$WORK/requests.bin" 2>/dev/null || echo 0)" -lt 184320 ]; do
  [ "$(date +%s)" -lt "$deadline" ] || fail "the volume never reached the worker"
  sleep 0.2
done
# The worker is computing on it: busy for at least a third of half a second
# (an idle worker uses next to nothing).
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
busy=0
while [ "$busy" = 0 ] && [ "$(date +%s)" -lt "$deadline" ]; do
  t0=$(cpu_ticks "$WORKER_PID")
  sleep 0.5
  [ $(( $(cpu_ticks "$WORKER_PID") - t0 )) -ge $(( $(getconf CLK_TCK) / 6 )) ] && busy=1
done
[ "$busy" = 1 ] || fail "the worker never computed on the volume"
kill -STOP "$WORKER_PID"
[ "$(sql "SELECT r.state FROM reads r JOIN series se ON se.id = r.series_ref WHERE se.series_instance_uid = '$KILL_SERIES'")" = running ] ||
  fail "the read is not running while the worker holds its volume"
[ "$(sql "SELECT count(*) FROM result_objects")" = 0 ] || fail "results before the worker answered"
kill -KILL "$WORKER_PID"
wait "$WORKER_PID" 2>/dev/null || true
"$IT_REPO/scripts/worker-up" "$WORK/worker" --repo "$REPO" --set cpu.threads=1 --set "grpc.listen=$WORKER_ADDR" \
  >/dev/null || fail "worker restart"
WORKER_PID=$(cat "$WORK/worker/worker.pid")
wait_sql "SELECT r.state FROM reads r JOIN series se ON se.id = r.series_ref WHERE se.series_instance_uid = '$KILL_SERIES'" done 120
kill_read=$(volume_read "$KILL_SERIES" 1)
[ "$(sql "SELECT attempt >= 2 FROM jobs WHERE queue = 'volume' AND args->>'read_id' = '$kill_read'")" = t ] ||
  fail "the volume read was not retried: $(sql "SELECT state || ' attempt ' || attempt FROM jobs WHERE queue = 'volume' AND args->>'read_id' = '$kill_read'")"
[ "$(sql "SELECT string_agg(kind, ' ' ORDER BY kind) FROM result_objects WHERE read_ref = $kill_read")" = "sc seg sr" ] ||
  fail "result objects: $(sql "SELECT string_agg(kind, ' ' ORDER BY kind) FROM result_objects WHERE read_ref = $kill_read")"
[ "$(sql "SELECT count(*) FROM reads")" = 1 ] || fail "more than one read"
wait_sql "SELECT state || ' ' || attempts FROM exports WHERE read_ref = $kill_read" "sent 1" 90
files=("$SECONDREAD_SPOOL"/results/*.dcm)
[ "${#files[@]}" = 3 ] || fail "${#files[@]} result files in the spool, want 3"
[ "$(export_sent_lines "$kill_read")" = 1 ] || fail "$(export_sent_lines "$kill_read") export_sent records"
list=$(orthanc_instances "$(orthanc_study "$KILL_STUDY")")
[ "$(grep -c '^SEG ' <<<"$list")/$(grep -c '^SR ' <<<"$list")/$(grep -c '^OT ' <<<"$list")" = 1/1/1 ] ||
  fail "Orthanc holds $(grep -c '^SEG ' <<<"$list") SEG, $(grep -c '^SR ' <<<"$list") SR, $(grep -c '^OT ' <<<"$list") SC"
[ "$(cat "$NODE/secondread.pid")" = "$NODE_PID" ] && kill -0 "$NODE_PID" || fail "the node did not keep running"
pass "worker killed -9 holding the volume: retried on a new worker, done, one SEG, SR and SC stored and sent once; the node kept running"

# 2. A series still arriving when completeness fires. One study: series 1
# (12 slices) complete, series 2 (20 slices) only its lowest 12 at first.
ct_series "$WORK/s1" 61 12 24 24 12 12 6
ct_series "$WORK/s2" 62 20 24 24 12 12 5
$PY - "$WORK/s1" "$WORK/s2" "$WORK/first.txt" "$WORK/late.txt" <<'PY'
import glob, os, sys
import numpy as np
import pydicom
s1, s2, first, late = sys.argv[1:]
study = pydicom.dcmread(sorted(glob.glob(s1 + "/*.dcm"))[0])
for number, d in ((1, s1), (2, s2)):
    for f in glob.glob(d + "/*.dcm"):
        ds = pydicom.dcmread(f)
        ds.StudyInstanceUID, ds.PatientID, ds.StudyID = study.StudyInstanceUID, study.PatientID, study.StudyID
        ds.AccessionNumber, ds.SeriesNumber = study.AccessionNumber, number
        ds.save_as(f)
def along_normal(f):
    ds = pydicom.dcmread(f)
    o = np.array([float(v) for v in ds.ImageOrientationPatient])
    return float(np.dot(np.cross(o[:3], o[3:]), [float(v) for v in ds.ImagePositionPatient]))
files = sorted(glob.glob(s2 + "/*.dcm"), key=along_normal)
open(first, "w").write("\n".join(files[:12]) + "\n")
open(late, "w").write("\n".join(files[12:]) + "\n")
PY
S1=$(series_uid_of "$WORK/s1")
S2=$(series_uid_of "$WORK/s2")
STUDY=$(study_uid_of "$WORK/s1")
mapfile -t first <"$WORK/first.txt"
mapfile -t late <"$WORK/late.txt"
send "$WORK"/s1/*.dcm "${first[@]}" >/dev/null 2>&1 || fail "storescu series 1 and the first part of series 2"
wait_sql "SELECT count(*) FROM reads r JOIN studies st ON st.id = r.study_ref
          WHERE st.study_instance_uid = '$STUDY' AND r.state = 'done'" 2 120
s2_g1=$(volume_read "$S2" 1)
s1_g1=$(volume_read "$S1" 1)
[ "$(sql "SELECT count(*) FROM read_instances WHERE read_ref = $s2_g1")" = 12 ] ||
  fail "the first read of series 2 holds $(sql "SELECT count(*) FROM read_instances WHERE read_ref = $s2_g1") images, want 12"
pass "completeness fired on the partial series: series 2 read as its 12 slices received"

send "${late[@]}" >/dev/null 2>&1 || fail "storescu the rest of series 2"
wait_sql "SELECT count(*) FROM reads r JOIN studies st ON st.id = r.study_ref
          WHERE st.study_instance_uid = '$STUDY' AND r.generation = 2 AND r.state IN ('done', 'failed')" 2 120
s2_g2=$(volume_read "$S2" 2)
s1_g2=$(volume_read "$S1" 2)
[ -n "$s2_g2" ] && [ -n "$s1_g2" ] || fail "no second generation of the study's volume reads"
[ "$(sql "SELECT state FROM reads WHERE id = $s2_g2")/$(sql "SELECT count(*) FROM read_instances WHERE read_ref = $s2_g2")" = done/20 ] ||
  fail "the re-read of series 2: $(sql "SELECT state || ' ' || COALESCE(error, '') FROM reads WHERE id = $s2_g2"), $(sql "SELECT count(*) FROM read_instances WHERE read_ref = $s2_g2") images"
[ "$(sql "SELECT string_agg(kind, ' ' ORDER BY kind) FROM result_objects WHERE read_ref = $s2_g2")" = "seg sr" ] ||
  fail "re-read objects: $(sql "SELECT string_agg(kind, ' ' ORDER BY kind) FROM result_objects WHERE read_ref = $s2_g2")"
[ "$(sql "SELECT state FROM reads WHERE id = $s1_g2")/$(sql "SELECT count(*) FROM result_objects WHERE read_ref = $s1_g2")/$(sql "SELECT count(*) FROM exports WHERE read_ref = $s1_g2")" = done/0/0 ] ||
  fail "the unchanged series 1 was re-read into new objects or exports"
wait_sql "SELECT count(*) FROM exports e JOIN reads r ON r.id = e.read_ref JOIN studies st ON st.id = r.study_ref
          WHERE st.study_instance_uid = '$STUDY' AND e.state = 'sent'" 3 90
mapfile -t uids < <(sql "SELECT ro.sop_instance_uid FROM result_objects ro JOIN reads r ON r.id = ro.read_ref
                         JOIN studies st ON st.id = r.study_ref WHERE st.study_instance_uid = '$STUDY' ORDER BY ro.id")
fetch_from_orthanc "$WORK/pacs" "${uids[@]}"
list=$(orthanc_instances "$(orthanc_study "$STUDY")")
[ "$(wc -l <<<"$list")" = "${#uids[@]}" ] || fail "Orthanc holds $(wc -l <<<"$list") objects of the study, the node made ${#uids[@]}"
for r in $s1_g1 $s2_g1 $s2_g2; do
  [ "$(export_sent_lines "$r")" = 1 ] || fail "read $r: $(export_sent_lines "$r") export_sent records"
done
$PY - "$WORK/pacs" "$(sql "SELECT sop_instance_uid FROM result_objects WHERE read_ref = $s2_g2 AND kind = 'sr'")" \
  "$(sql "SELECT sop_instance_uid FROM result_objects WHERE read_ref = $s2_g1 AND kind = 'sr'")" \
  "$(sql "SELECT sop_instance_uid FROM result_objects WHERE read_ref = $s2_g2 AND kind = 'seg'")" \
  "$WORK/s2" <<'PY' || fail "the re-read's report does not replace the partial read's"
import glob, os, sys
import pydicom
pacs, sr_uid, predecessor, seg_uid, s2 = sys.argv[1:]
sr = pydicom.dcmread(os.path.join(pacs, sr_uid + ".dcm"))
named = [sop.ReferencedSOPInstanceUID for st in sr.PredecessorDocumentsSequence
         for se in st.ReferencedSeriesSequence for sop in se.ReferencedSOPSequence]
assert named == [predecessor], "Predecessor Documents name %s, want %s" % (named, predecessor)
evidence = {sop.ReferencedSOPInstanceUID for st in sr.CurrentRequestedProcedureEvidenceSequence
            for se in st.ReferencedSeriesSequence for sop in se.ReferencedSOPSequence}
slices = {pydicom.dcmread(f).SOPInstanceUID for f in glob.glob(s2 + "/*.dcm")}
assert slices <= evidence, "the report's evidence lacks %d of the 20 slices" % len(slices - evidence)
referenced = set()
def walk(ds):
    for el in ds:
        if el.VR == "SQ":
            for item in el.value:
                walk(item)
        elif el.tag == 0x00081155:
            referenced.add(el.value)
walk(sr)
assert seg_uid in referenced, "the report does not reference its own SEG"
seg = pydicom.dcmread(os.path.join(pacs, seg_uid + ".dcm"))
refs = {frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        for frame in seg.PerFrameFunctionalGroupsSequence}
assert refs <= slices, "the SEG has frames on images outside series 2"
PY
for f in "$WORK"/pacs/*.dcm; do check_dciodvfy "$f" "$(basename "$f")"; done
pass "late arrival, reread: series 2 read again as generation 2 of 20 slices, its SR names the partial read's SR; series 1 unchanged sent nothing; Orthanc holds each object once"

# 3. The first part of a series has a gap: refused with its reason; once the
# gap is filled the grown series is read.
ct_series "$WORK/gap" 71 14 16 16 8 8 3
$PY - "$WORK/gap" "$WORK/gap-first.txt" "$WORK/gap-late.txt" <<'PY'
import glob, sys
import numpy as np
import pydicom
d, first, late = sys.argv[1:]
def along_normal(f):
    ds = pydicom.dcmread(f)
    o = np.array([float(v) for v in ds.ImageOrientationPatient])
    return float(np.dot(np.cross(o[:3], o[3:]), [float(v) for v in ds.ImagePositionPatient]))
files = sorted(glob.glob(d + "/*.dcm"), key=along_normal)
open(first, "w").write("\n".join(files[:6] + files[8:]) + "\n")
open(late, "w").write("\n".join(files[6:8]) + "\n")
PY
GAP=$(series_uid_of "$WORK/gap")
mapfile -t first <"$WORK/gap-first.txt"
mapfile -t late <"$WORK/gap-late.txt"
send "${first[@]}" >/dev/null 2>&1 || fail "storescu the gap series"
wait_sql "SELECT r.state FROM reads r JOIN series se ON se.id = r.series_ref WHERE se.series_instance_uid = '$GAP'" failed 120
gap_g1=$(volume_read "$GAP" 1)
sql "SELECT error FROM reads WHERE id = $gap_g1" | grep -qi "missing" || fail "the refusal does not say why: $(sql "SELECT error FROM reads WHERE id = $gap_g1")"
[ "$(sql "SELECT count(*) FROM result_objects WHERE read_ref = $gap_g1")/$(sql "SELECT count(*) FROM exports WHERE read_ref = $gap_g1")" = 0/0 ] ||
  fail "results or exports for the refused partial series"
send "${late[@]}" >/dev/null 2>&1 || fail "storescu the missing slices"
wait_sql "SELECT r.state FROM reads r JOIN series se ON se.id = r.series_ref WHERE se.series_instance_uid = '$GAP' AND r.generation = 2" done 120
gap_g2=$(volume_read "$GAP" 2)
[ "$(sql "SELECT count(*) FROM read_instances WHERE read_ref = $gap_g2")" = 14 ] || fail "the re-read does not hold all 14 slices"
[ "$(sql "SELECT string_agg(kind, ' ' ORDER BY kind) FROM result_objects WHERE read_ref = $gap_g2")" = "sc seg sr" ] ||
  fail "the filled series' objects: $(sql "SELECT string_agg(kind, ' ' ORDER BY kind) FROM result_objects WHERE read_ref = $gap_g2")"
wait_sql "SELECT state FROM exports WHERE read_ref = $gap_g2" sent 90
pass "a partial series with a gap is refused with its reason and sends nothing; once filled it is read as generation 2"
finish
