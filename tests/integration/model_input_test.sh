#!/usr/bin/env bash
# What a model is given follows what it asks for. A worker serves the
# reference chest model (scaling minmax: the node's VOI rendering, uint16) and
# a CT model with a Hounsfield window (scaling window: modality values). A
# recording proxy between node and worker notes the type, photometric and
# value range of every image sent: CT images must arrive as float32 holding
# exactly the Hounsfield units of the stored pixels, whatever window the
# objects carry; radiographs as uint16 renderings.
source "$(dirname "$0")/lib/common.sh"
source "$(dirname "$0")/lib/results.sh"
it_setup "$@"
it_also_on_exit '[ -n "${REC_PID:-}" ] && kill "$REC_PID" 2>/dev/null'

# A model repository: the reference model as it is, and the same weights under
# a CT manifest with a soft-tissue window. The weights only have to run; the
# test is about the values they are given.
REPO="$WORK/models"
mkdir -p "$REPO/ct-window-demo/1"
cp -r "$IT_REPO/tools/models/repository/synthetic-nodule-demo" "$REPO/"
cp "$IT_REPO/tools/models/repository/synthetic-nodule-demo/1/model.pt" "$REPO/ct-window-demo/1/model.pt"
cat >"$REPO/ct-window-demo/model.yaml" <<'YAML'
name: ct-window-demo
description: The reference weights behind a CT soft-tissue window, for testing what the node sends.
intended_use: Testing secondread only; not a medical device.
platform: torchscript
input:
  channels: 1
  height: 256
  width: 256
  scaling: window
  window: {center: 40, width: 400}
  mean: [0.5]
  std: [0.25]
output:
  scores_activation: sigmoid
  heatmap: true
  heatmap_activation: sigmoid
  labels:
    - name: nodule
      code: {scheme: SCT, value: "27925004", meaning: "Nodule"}
      threshold: 0.5
applicability:
  modalities: [CT]
max_batch_size: 8
instance_group: {kind: cpu, count: 1}
YAML

worker_up --repo "$REPO" --set cpu.threads=1
recorder_up

cat >"$WORK/routing.yaml" <<'YAML'
routing:
  rules:
    - name: ct
      match: {modalities: [CT]}
      models: [{name: ct-window-demo}]
      completeness: {trigger: association, silence_seconds: 60}
    - name: chest
      match: {modalities: [CR]}
      models: [{name: synthetic-nodule-demo}]
      completeness: {trigger: instance}
YAML
IT_WORKER=1 node_up --routing "$WORK/routing.yaml" --set "inference.endpoints=[$RECORDER_ADDR]"

$PY "$IT_REPO/tools/gen_instances.py" "$WORK/ct" --kind ct --count 3 >/dev/null
send "$WORK"/ct/*.dcm >/dev/null 2>&1 || fail "storescu CT"
$PY "$IT_REPO/tools/gen_study.py" "$WORK/cr" --studies 1 --images-per-study 2 --lesion random --modality CR \
  --seed 7 >/dev/null
send "$WORK"/cr/study-1/*.dcm >/dev/null 2>&1 || fail "storescu CR"
wait_sql "SELECT count(*) FROM reads WHERE state = 'done'" 3 120
[ "$(sql "SELECT count(*) FROM reads WHERE state <> 'done'")" = 0 ] || fail "a read did not finish: $(sql "SELECT state, error FROM reads")"
pass "a CT study read by the window model and two radiographs by the reference model"

[ "$(grep -c '^ct-window-demo ' "$WORK/images.txt")" = 3 ] || { cat "$WORK/images.txt"; fail "CT images sent"; }
[ "$(grep -c '^synthetic-nodule-demo ' "$WORK/images.txt")" = 2 ] || { cat "$WORK/images.txt"; fail "CR images sent"; }
$PY - "$WORK/images.txt" "$WORK"/ct/*.dcm <<'PY' || fail "the CT model was not given the Hounsfield units of the stored pixels"
import sys, pydicom
sent = [l.split() for l in open(sys.argv[1]) if l.startswith("ct-window-demo ")]
expected = []
for path in sys.argv[2:]:
    ds = pydicom.dcmread(path)
    # Only the Bits Stored bits are the value (PS3.5 8.1.1); the generator's
    # noise sets higher bits in some pixels, which a conformant decoder ignores.
    assert int(ds.PixelRepresentation) == 0
    stored = ds.pixel_array & ((1 << int(ds.BitsStored)) - 1)
    hu = stored.astype("float64") * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    expected.append((int(ds.Rows), int(ds.Columns), float(hu.min()), float(hu.max())))
    # A rendering would have lost the sign; a window would have clipped.
    assert hu.min() < 0 < hu.max(), "the generated CT should span negative and positive HU"
got = []
for model, dtype, photometric, rows, cols, lo, hi in sent:
    assert dtype == "DATA_TYPE_FLOAT32", dtype
    assert photometric == "PHOTOMETRIC_MONOCHROME2", photometric
    got.append((int(rows), int(cols), float(lo), float(hi)))
assert sorted(got) == sorted(expected), (sorted(got), sorted(expected))
PY
pass "CT images went as float32 Hounsfield units, equal to the stored pixels' modality values"

while read -r _ dtype photometric _ _ lo hi; do
  [ "$dtype" = DATA_TYPE_UINT16 ] || fail "a radiograph went as $dtype"
  [ "$photometric" = PHOTOMETRIC_MONOCHROME2 ] || fail "a radiograph went as $photometric"
  awk -v lo="$lo" -v hi="$hi" 'BEGIN { exit !(lo >= 0 && hi <= 65535 && hi > lo) }' || fail "rendering range $lo..$hi"
done < <(grep '^synthetic-nodule-demo ' "$WORK/images.txt")
pass "the radiographs went as their uint16 renderings"

# Per-instance reads share the SR and SC series; each result is numbered by its
# source's place in the study's arrival order, so the two images' results do
# not collide although both sources are instance 1 of their own series.
instance_numbers() {  # kind -> sorted Instance Numbers of the CR results
  while read -r name; do
    dcmdump -q +P 0020,0013 "$SECONDREAD_SPOOL/results/$name.dcm" | sed -n 's/.*\[\(.*\)\].*/\1/p'
  done < <(sql "SELECT ro.file_name FROM result_objects ro JOIN reads r ON r.id = ro.read_ref
                WHERE r.model_name = 'synthetic-nodule-demo' AND ro.kind = '$1'") | sort -n | tr '\n' ' '
}
[ "$(instance_numbers sr)" = "1 2 " ] || fail "SR Instance Numbers [$(instance_numbers sr)]"
[ "$(instance_numbers sc)" = "1 2 " ] || fail "SC Instance Numbers [$(instance_numbers sc)]"
pass "per-instance results numbered 1 and 2 in their series"

# The CT read ends like any other: one SR for the study and one Secondary
# Capture per image, each valid DICOM.
ct_read="SELECT id FROM reads WHERE model_name = 'ct-window-demo'"
[ "$(sql "SELECT count(*) FROM result_objects WHERE read_ref = ($ct_read) AND kind = 'sr'")" = 1 ] || fail "CT SR"
[ "$(sql "SELECT count(*) FROM result_objects WHERE read_ref = ($ct_read) AND kind = 'sc'")" = 3 ] || fail "CT SCs"
while read -r name; do
  check_dciodvfy "$SECONDREAD_SPOOL/results/$name.dcm" "a CT result object"
done < <(sql "SELECT file_name FROM result_objects WHERE read_ref = ($ct_read)")
pass "the CT read produced its SR and three Secondary Captures, valid for dciodvfy"
finish
