#!/usr/bin/env bash
# Volume reads end to end, with Orthanc as the PACS. An oblique CT series with
# non-square pixels holds a sphere of known centre and radius; a worker serves
# a volume model that marks every voxel above 500 HU (so the right answer is
# known to the voxel). The node assembles the series, streams it to the
# worker, and sends back a DICOM Segmentation, a TID 1500 report and a
# key-slice Secondary Capture. Orthanc must hold all three; dciodvfy reports
# nothing on them; every SEG frame lies at the position of the source
# instance it names and holds exactly the sphere's pixels there; the SR's
# centroid lies inside the sphere. A series with a missing slice is refused
# with its reason on the worklist API, and nothing of it reaches the PACS; so
# is a series of two acquisitions at the same positions (4D).
source "$(dirname "$0")/lib/common.sh"
source "$(dirname "$0")/lib/orthanc.sh"
source "$(dirname "$0")/lib/results.sh"
it_setup "$@"
it_also_on_exit '[ -n "${ORTHANC_DIR:-}" ] && orthanc_stop "$ORTHANC_DIR"'

REPO="$WORK/models"
threshold_volume_model "$REPO"
worker_up --repo "$REPO" --set cpu.threads=1

cat >"$WORK/routing.yaml" <<'YAML'
routing:
  rules:
    - name: ct-volume
      input: volume
      match: {modalities: [CT]}
      series: {min_slices: 10}
      models: [{name: threshold-volume-demo}]
      completeness: {trigger: association, silence_seconds: 60, expected_count: false}
YAML
results_up --routing "$WORK/routing.yaml" --set "inference.endpoints=[$SECONDREAD_WORKER_ADDR]"

# The sphere: centre at voxel (i 17, j 22, k 9) of the oblique grid, 6 mm.
$PY "$IT_REPO/tools/gen_series.py" "$WORK/ct" --modality CT --orientation oblique --slices 20 --rows 44 \
  --columns 36 --pixel-spacing 0.8,0.6 --spacing 2.0 --seed 31 --shuffle >/dev/null
LESION=$($PY - "$WORK/ct/manifest.json" <<'PY'
import json, sys
g = json.load(open(sys.argv[1]))
sz, sy, sx = g["spacing"]
c = [g["origin"][a] + 17 * sx * g["row"][a] + 22 * sy * g["column"][a] + 9 * sz * g["normal"][a] for a in range(3)]
print("%.4f,%.4f,%.4f,6,1500" % tuple(c))
PY
)
rm -rf "$WORK/ct"
$PY "$IT_REPO/tools/gen_series.py" "$WORK/ct" --modality CT --orientation oblique --slices 20 --rows 44 \
  --columns 36 --pixel-spacing 0.8,0.6 --spacing 2.0 --seed 31 --shuffle --lesion="$LESION" >/dev/null
send "$WORK"/ct/*.dcm >/dev/null 2>&1 || fail "storescu CT"

wait_sql "SELECT count(*) FROM reads WHERE input = 'volume' AND state IN ('done', 'failed')" 1 180
[ "$(sql "SELECT state FROM reads WHERE input = 'volume'")" = done ] ||
  fail "the volume read did not finish: $(sql "SELECT state, error FROM reads WHERE input = 'volume'")"
[ "$(sql "SELECT string_agg(kind, ' ' ORDER BY kind) FROM result_objects")" = "sc seg sr" ] ||
  fail "result objects: $(sql "SELECT string_agg(kind, ' ' ORDER BY kind) FROM result_objects")"
[ "$(sql "SELECT flagged FROM reads WHERE input = 'volume'")" = t ] || fail "the read with a lesion is not flagged"
wait_sql "SELECT count(*) FROM exports WHERE state = 'sent'" 1 120
pass "the CT volume was read: SEG, SR and one key-slice SC written, flagged, exported"

# What Orthanc holds, fetched back from it.
fetch_results_from_orthanc "$WORK/pacs" "SELECT kind || ' ' || sop_instance_uid FROM result_objects"
pass "Orthanc holds the SEG, the SR and the SC, and dciodvfy reports nothing on them"

$PY - "$WORK/pacs" "$WORK/ct" "$LESION" <<'PY' || fail "the results are not where the lesion is"
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

seg = pydicom.dcmread(os.path.join(pacs, "seg.dcm"))
assert seg.StudyInstanceUID == first.StudyInstanceUID
assert seg.FrameOfReferenceUID == first.FrameOfReferenceUID
assert seg.SegmentationType == "BINARY"
assert seg.SegmentSequence[0].SegmentAlgorithmType == "AUTOMATIC"
shared = seg.SharedFunctionalGroupsSequence[0]
orient = [float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient]
spacing = [float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing]
assert np.allclose(orient, [float(v) for v in first.ImageOrientationPatient], atol=1e-5), orient
assert np.allclose(spacing, [float(v) for v in first.PixelSpacing], atol=1e-6), spacing
row, col = np.array(orient[:3]), np.array(orient[3:])
pixels = seg.pixel_array.reshape(int(seg.NumberOfFrames), int(seg.Rows), int(seg.Columns))
jj, ii = np.mgrid[0:int(seg.Rows), 0:int(seg.Columns)]
segmented_slices = set()
for n, frame in enumerate(seg.PerFrameFunctionalGroupsSequence):
    ref = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
    assert ref in sources, "frame %d names an instance that is not in the series" % n
    pos = np.array([float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient])
    src_pos = np.array([float(v) for v in sources[ref].ImagePositionPatient])
    assert np.allclose(pos, src_pos, atol=1e-3), (n, pos, src_pos)
    # Pixel (j, i) centre: position + i * column spacing * row + j * row spacing * col.
    pts = pos[None, None, :] + ii[..., None] * spacing[1] * row + jj[..., None] * spacing[0] * col
    dist = np.linalg.norm(pts - centre, axis=-1)
    got = pixels[n] > 0
    # Positions travel as decimal strings, so a pixel centre within 0.05 mm
    # of the sphere's surface may fall either way; every other pixel must
    # be exactly what the sphere says.
    wrong = (got & (dist > radius + 0.05)) | (~got & (dist < radius - 0.05))
    assert not wrong.any(), "frame %d: %d pixels differ from the sphere" % (n, int(wrong.sum()))
    segmented_slices.add(ref)
# Every source slice the sphere crosses has its frame (empty frames are omitted).
for uid, ds in sources.items():
    pos = np.array([float(v) for v in ds.ImagePositionPatient])
    pts = pos[None, None, :] + ii[..., None] * spacing[1] * row + jj[..., None] * spacing[0] * col
    if (np.linalg.norm(pts - centre, axis=-1) <= radius).any():
        assert uid in segmented_slices, "a slice the lesion crosses has no SEG frame"

sr = pydicom.dcmread(os.path.join(pacs, "sr.dcm"))
points = []
def walk(items):
    for it in items:
        if getattr(it, "ValueType", "") == "SCOORD3D":
            assert it.ReferencedFrameOfReferenceUID == first.FrameOfReferenceUID
            points.append([float(v) for v in it.GraphicData])
        if "ContentSequence" in it:
            walk(it.ContentSequence)
walk(sr.ContentSequence)
assert len(points) == 1, points
d = np.linalg.norm(np.array(points[0]) - centre)
assert d <= radius / 2, "centroid %.2f mm from the centre" % d
assert sr.VerificationFlag == "UNVERIFIED"

sc = pydicom.dcmread(os.path.join(pacs, "sc.dcm"))
key = sc.SourceImageSequence[0].ReferencedSOPInstanceUID
kpos = np.array([float(v) for v in sources[key].ImagePositionPatient])
normal = np.cross(row, col)
assert abs(np.dot(kpos - centre, normal)) <= 2.0 / 2 + 1e-6, "the key slice does not pass through the centre"
print("SEG frames %d, centroid %.2f mm from the centre" % (len(seg.PerFrameFunctionalGroupsSequence), d))
PY
pass "every SEG frame lies on its source slice and holds exactly the sphere there; the SR centroid and the key slice are at the lesion"

# A series with a missing slice: refused with its reason, nothing sent.
$PY "$IT_REPO/tools/gen_series.py" "$WORK/gap" --modality CT --slices 14 --rows 16 --columns 16 --defect gap \
  --seed 32 >/dev/null
send "$WORK"/gap/*.dcm >/dev/null 2>&1 || fail "storescu gap series"
wait_sql "SELECT count(*) FROM reads WHERE input = 'volume' AND state IN ('done', 'failed')" 2 180
gap_read=$(sql "SELECT r.id FROM reads r JOIN series se ON se.id = r.series_ref
                WHERE se.series_instance_uid = '$($PY -c 'import glob,sys,pydicom; print(pydicom.dcmread(sorted(glob.glob(sys.argv[1] + "/*.dcm"))[0]).SeriesInstanceUID)' "$WORK/gap")'")
[ -n "$gap_read" ] || fail "no volume read for the gap series"
[ "$(sql "SELECT state FROM reads WHERE id = $gap_read")" = failed ] || fail "the gap series was read"
[ "$(sql "SELECT count(*) FROM result_objects WHERE read_ref = $gap_read")" = 0 ] || fail "results for the gap series"
study=$(sql "SELECT study_ref FROM reads WHERE id = $gap_read")
curl -fsS -H "Authorization: Bearer $SECONDREAD_TOKEN" "${SECONDREAD_WORKLIST_URL%/}/api/v1/studies/$study" \
  >"$WORK/gap.json" || fail "study detail of the gap series"
$PY - "$WORK/gap.json" <<'PY' || fail "the worklist API does not say why the gap series was not read"
import json, sys
reads = json.load(open(sys.argv[1]))["reads"]
assert len(reads) == 1 and reads[0]["state"] == "failed", reads
assert "missing" in reads[0]["error"].lower() or "gap" in reads[0]["error"].lower(), reads[0]["error"]
print(reads[0]["error"])
PY
grep -q '"refusal":"missing_slices"' "$NODE/log/secondread.log" || fail "no log line with the refusal code"
[ "$(sql "SELECT count(*) FROM exports")" = 1 ] || fail "an export for the gap series"
pass "a series with a missing slice is refused with its reason, shown on the worklist API; nothing reaches the PACS"

# Two acquisitions at the same positions (a 4D series): one SEG cannot lie on
# two grids, so the read is refused with the reason, and nothing is sent.
$PY "$IT_REPO/tools/gen_series.py" "$WORK/4d" --modality CT --slices 12 --rows 16 --columns 16 \
  --defect two-acquisitions --seed 33 >/dev/null
send "$WORK"/4d/*.dcm >/dev/null 2>&1 || fail "storescu two-acquisition series"
wait_sql "SELECT count(*) FROM reads WHERE input = 'volume' AND state IN ('done', 'failed')" 3 180
four_d=$(sql "SELECT r.id FROM reads r JOIN series se ON se.id = r.series_ref
              WHERE se.series_instance_uid = '$($PY -c 'import glob,sys,pydicom; print(pydicom.dcmread(sorted(glob.glob(sys.argv[1] + "/*.dcm"))[0]).SeriesInstanceUID)' "$WORK/4d")'")
[ -n "$four_d" ] || fail "no volume read for the two-acquisition series"
[ "$(sql "SELECT state FROM reads WHERE id = $four_d")" = failed ] || fail "the two-acquisition series was read"
error=$(sql "SELECT error FROM reads WHERE id = $four_d")
grep -q "2 stacks" <<<"$error" || fail "the refusal does not say why: $error"
grep -q '"refusal":"several_stacks"' "$NODE/log/secondread.log" || fail "no log line with the several_stacks code"
[ "$(sql "SELECT count(*) FROM exports")" = 1 ] || fail "an export for the two-acquisition series"
pass "a series of two acquisitions at the same positions is refused with its reason; nothing reaches the PACS"
