#!/usr/bin/env bash
# A series whose slices are unevenly spaced, end to end with Orthanc as the
# PACS. An oblique CT with non-square pixels, 2 mm between its first ten
# slices and 2.5 mm after them, holds a sphere of known centre in the unevenly
# spaced half; a worker serves a model that marks every voxel above 500 HU.
# Two volume rules take the same series: one with series.resample, one
# without. The first reads it on a uniform grid and sends back a SEG whose
# every frame lies at its source instance's position (within 0.01 mm) and
# references it, holding the labels of the grid slice nearest to it; an SR
# whose centroid lies inside the sphere and which says the series was
# resampled; and a key-slice capture of a source slice; all clean under
# dciodvfy. The second is refused with the uneven-spacing sentence, shown on
# the worklist API, and sends nothing. series.resample on an image rule stops
# the node at start.
source "$(dirname "$0")/lib/common.sh"
source "$(dirname "$0")/lib/orthanc.sh"
source "$(dirname "$0")/lib/results.sh"
it_setup "$@"
it_also_on_exit '[ -n "${ORTHANC_DIR:-}" ] && orthanc_stop "$ORTHANC_DIR"'

refused() {  # rule-body expected-message
  printf 'database: {url: "postgresql://127.0.0.1:1/none"}\nrouting:\n  rules:\n    - name: v\n      models: [{name: m}]\n%s\n' \
    "$1" >"$WORK/bad.yaml"
  local out
  out=$(timeout 20 "$BUILD_DIR/cmd/secondread/secondread" serve --config "$WORK/bad.yaml" 2>&1) && fail "started with: $1"
  [[ "$out" == *"$2"* ]] || fail "refusal of [$1]: $out"
}
refused $'      series: {resample: true}' "series.resample needs input: volume"
refused $'      input: volume\n      series: {min_slices: 10, resample: often}' "series.resample"
pass "series.resample is refused at start on an image rule and when it is not a boolean"

REPO="$WORK/models"
threshold_volume_model "$REPO"
worker_up --repo "$REPO" --set cpu.threads=1

cat >"$WORK/routing.yaml" <<'YAML'
routing:
  rules:
    - name: ct-resample
      input: volume
      match: {modalities: [CT]}
      series: {min_slices: 10, resample: true}
      models: [{name: threshold-volume-demo}]
      completeness: {trigger: association, silence_seconds: 60, expected_count: false}
    - name: ct-strict
      input: volume
      match: {modalities: [CT]}
      series: {min_slices: 10}
      models: [{name: threshold-volume-demo}]
      completeness: {trigger: association, silence_seconds: 60, expected_count: false}
YAML
results_up --routing "$WORK/routing.yaml" --set "inference.endpoints=[$SECONDREAD_WORKER_ADDR]"

# The sphere: 6 mm around voxel (i 17, j 22) at 31 mm along the normal, between
# the sources at 30 and 32.5 mm.
GEN=(--modality CT --orientation oblique --slices 20 --rows 44 --columns 36 --pixel-spacing 0.8,0.6 --spacing 2.0
     --defect nonuniform --seed 41 --shuffle)
$PY "$IT_REPO/tools/gen_series.py" "$WORK/ct" "${GEN[@]}" >/dev/null
LESION=$($PY - "$WORK/ct/manifest.json" <<'PY'
import json, sys
g = json.load(open(sys.argv[1]))
sz, sy, sx = g["spacing"]
c = [g["origin"][a] + 17 * sx * g["row"][a] + 22 * sy * g["column"][a] + 31.0 * g["normal"][a] for a in range(3)]
print("%.4f,%.4f,%.4f,6,1500" % tuple(c))
PY
)
rm -rf "$WORK/ct"
$PY "$IT_REPO/tools/gen_series.py" "$WORK/ct" "${GEN[@]}" --lesion="$LESION" >/dev/null
send "$WORK"/ct/*.dcm >/dev/null 2>&1 || fail "storescu CT"

wait_sql "SELECT count(*) FROM reads WHERE input = 'volume' AND state IN ('done', 'failed')" 2 180
read_ok=$(sql "SELECT id FROM reads WHERE rule_name = 'ct-resample'")
read_refused=$(sql "SELECT id FROM reads WHERE rule_name = 'ct-strict'")
[ "$(sql "SELECT state, resample FROM reads WHERE id = $read_ok")" = "done|t" ] ||
  fail "the read with resample did not finish: $(sql "SELECT state, error FROM reads WHERE id = $read_ok")"
[ "$(sql "SELECT string_agg(kind, ' ' ORDER BY kind) FROM result_objects WHERE read_ref = $read_ok")" = "sc seg sr" ] ||
  fail "result objects: $(sql "SELECT string_agg(kind, ' ' ORDER BY kind) FROM result_objects")"
[ "$(sql "SELECT flagged FROM reads WHERE id = $read_ok")" = t ] || fail "the read with a lesion is not flagged"
grep -q '"resampled":true' "$NODE/log/secondread.log" || fail "no read_finished line saying the volume was resampled"
wait_sql "SELECT count(*) FROM exports WHERE state = 'sent'" 1 120
pass "under a rule with series.resample the unevenly spaced CT was read: SEG, SR and SC written, flagged, exported"

# The same series under the rule without it: refused with the sentence.
[ "$(sql "SELECT state, resample FROM reads WHERE id = $read_refused")" = "failed|f" ] ||
  fail "the read without resample was not refused: $(sql "SELECT state, error FROM reads WHERE id = $read_refused")"
[ "$(sql "SELECT count(*) FROM result_objects WHERE read_ref = $read_refused")" = 0 ] || fail "results without resample"
[ "$(sql "SELECT count(*) FROM exports")" = 1 ] || fail "an export for the refused read"
study=$(sql "SELECT study_ref FROM reads WHERE id = $read_refused")
curl -fsS -H "Authorization: Bearer $SECONDREAD_TOKEN" "${SECONDREAD_WORKLIST_URL%/}/api/v1/studies/$study" \
  >"$WORK/study.json" || fail "study detail"
$PY - "$WORK/study.json" "$read_refused" "$read_ok" <<'PY' || fail "the worklist API does not say why the series was refused"
import json, sys
reads = {r["read_id"]: r for r in json.load(open(sys.argv[1]))["reads"]}
refused, done = reads[int(sys.argv[2])], reads[int(sys.argv[3])]
assert refused["state"] == "failed", refused
assert refused["error"].startswith("the slice spacing is not uniform: 2.5 mm between slices 11 and 12 of 20 where 2.0 mm is expected"), refused["error"]
assert done["state"] == "done" and not done["error"], done
print(refused["error"])
PY
grep -q '"refusal":"non_uniform_spacing"' "$NODE/log/secondread.log" || fail "no log line with the refusal code"
pass "under a rule without series.resample the same series is refused with the uneven-spacing sentence on the API"

# What Orthanc holds, fetched back from it.
fetch_results_from_orthanc "$WORK/pacs" "SELECT kind || ' ' || sop_instance_uid FROM result_objects WHERE read_ref = $read_ok"
pass "Orthanc holds the SEG, the SR and the SC, and dciodvfy reports nothing on them"

$PY - "$WORK/pacs" "$WORK/ct" "$LESION" <<'PY' || fail "the results are not on the source slices or not at the lesion"
import glob, os, sys
import numpy as np
import pydicom
pacs, src_dir, lesion = sys.argv[1], sys.argv[2], [float(v) for v in sys.argv[3].split(",")]
centre, radius = np.array(lesion[:3]), lesion[3]
sources = {}
for f in glob.glob(os.path.join(src_dir, "*.dcm")):
    ds = pydicom.dcmread(f)
    sources[ds.SOPInstanceUID] = ds
first = next(iter(sources.values()))
orient = [float(v) for v in first.ImageOrientationPatient]
row, col = np.array(orient[:3]), np.array(orient[3:])
normal = np.cross(row, col)
pos = {uid: np.array([float(v) for v in ds.ImagePositionPatient]) for uid, ds in sources.items()}
order = sorted(sources, key=lambda u: float(np.dot(pos[u], normal)))
origin = pos[order[0]]
offsets = np.array([float(np.dot(pos[u] - origin, normal)) for u in order])
assert len(set(np.round(np.diff(offsets), 3))) == 2, "the series is not unevenly spaced"

# The uniform grid, worked out here: the median gap, a whole number of steps
# from the first slice to the last; each grid slice interpolated linearly
# between its neighbouring source slices; the model marks HU above 500.
median = float(np.median(np.diff(offsets)))
steps = max(1, round(offsets[-1] / median))
spacing = offsets[-1] / steps
hu = np.stack([sources[u].pixel_array * float(sources[u].RescaleSlope) + float(sources[u].RescaleIntercept)
               for u in order]).astype(np.float64)
def grid_slice(k):
    z = k * spacing
    hi = int(np.searchsorted(offsets, z, side="left"))
    hi = min(max(hi, 1), len(offsets) - 1)
    lo = hi - 1
    w = np.clip((z - offsets[lo]) / (offsets[hi] - offsets[lo]), 0, 1)
    return (1 - w) * hu[lo] + w * hu[hi]

seg = pydicom.dcmread(os.path.join(pacs, "seg.dcm"))
assert seg.FrameOfReferenceUID == first.FrameOfReferenceUID
pixels = seg.pixel_array.reshape(int(seg.NumberOfFrames), int(seg.Rows), int(seg.Columns))
framed = set()
for n, frame in enumerate(seg.PerFrameFunctionalGroupsSequence):
    ref = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
    assert ref in sources, "frame %d names an instance that is not in the series" % n
    p = np.array([float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient])
    assert np.abs(p - pos[ref]).max() <= 0.01, (n, p, pos[ref])
    s = order.index(ref)
    value = grid_slice(int(round(offsets[s] / spacing)))
    want = value > 500
    # A voxel within a hair of 500 HU may fall either way in float32.
    wrong = (pixels[n].astype(bool) != want) & (np.abs(value - 500) > 0.01)
    assert not wrong.any(), "frame %d (source slice %d): %d pixels differ" % (n, s, int(wrong.sum()))
    framed.add(ref)
for s, uid in enumerate(order):
    if (grid_slice(int(round(offsets[s] / spacing))) > 500.01).any():
        assert uid in framed, "source slice %d has lesion labels but no SEG frame" % s
assert len(framed) >= 4, framed

sr = pydicom.dcmread(os.path.join(pacs, "sr.dcm"))
points, texts = [], []
def walk(items):
    for it in items:
        if getattr(it, "ValueType", "") == "SCOORD3D":
            assert it.ReferencedFrameOfReferenceUID == first.FrameOfReferenceUID
            points.append([float(v) for v in it.GraphicData])
        if getattr(it, "ValueType", "") == "TEXT":
            texts.append(it.TextValue)
        if "ContentSequence" in it:
            walk(it.ContentSequence)
walk(sr.ContentSequence)
assert len(points) == 1, points
d = np.linalg.norm(np.array(points[0]) - centre)
assert d <= radius / 2, "centroid %.2f mm from the centre" % d
assert any("resampled to uniform %.4g mm slices" % spacing in t for t in texts), texts

sc = pydicom.dcmread(os.path.join(pacs, "sc.dcm"))
key = sc.SourceImageSequence[0].ReferencedSOPInstanceUID
assert key in sources, "the capture names an instance that is not in the series"
assert abs(np.dot(pos[key] - centre, normal)) <= 2.5 / 2 + spacing / 2 + 1e-6, "the key slice is far from the centre"
print("SEG frames %d on %d source slices, grid %.4f mm, centroid %.2f mm from the centre"
      % (len(seg.PerFrameFunctionalGroupsSequence), len(framed), spacing, d))
PY
pass "every SEG frame lies on its source slice and holds its nearest grid slice's labels; the SR centroid is at the lesion and the SR says the series was resampled"
finish
