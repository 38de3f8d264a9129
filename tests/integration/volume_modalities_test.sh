#!/usr/bin/env bash
# Volume reads of an Enhanced MR, a single-frame PET and an Enhanced PET end to
# end, with Orthanc as the PACS: Orthanc holds each study and sends it to the
# node, and the SEG, the TID 1500 report and the key-slice Secondary Capture
# must come back into that same study. Each series holds a sphere of known
# centre and radius; the worker's models mark every voxel above a threshold
# on the value the node sends (the raw MR value; SUVbw on PET), so the right
# segmentation is known to the voxel. For each read: dciodvfy reports
# nothing on the three objects; every SEG frame lies, within 0.01 mm, at the
# Plane Position of the source frame it names (SOP Instance and, for an
# enhanced source, Referenced Frame Number) and holds exactly the sphere's
# pixels there; the SEG is in the source's Frame of Reference; the SR's
# centroid lies inside the sphere, within a voxel of its centre, and its
# volume is the sphere's voxel count times the voxel volume; on PET the SR's
# mean and maximum are SUVbw ({SUVbw}g/ml) equal to the source's Bq/ml times
# the SUV factor the generator computes independently; on MR there are none.
source "$(dirname "$0")/lib/common.sh"
source "$(dirname "$0")/lib/orthanc.sh"
source "$(dirname "$0")/lib/results.sh"
it_setup "$@"
it_also_on_exit '[ -n "${ORTHANC_DIR:-}" ] && orthanc_stop "$ORTHANC_DIR"'

# MR: raw values (background at most 290 on the grid below, the sphere 1000
# more). PET: SUVbw (background at most 1.4, the sphere at least 2.9).
REPO="$WORK/models"
threshold_volume_model "$REPO" mr-threshold-volume 600 0.01 MR
threshold_volume_model "$REPO" pet-threshold-volume 2.0 10 PT
worker_up --repo "$REPO" --set cpu.threads=1

cat >"$WORK/routing.yaml" <<'YAML'
routing:
  rules:
    - name: mr-volume
      input: volume
      match: {modalities: [MR]}
      series: {min_slices: 10}
      models: [{name: mr-threshold-volume}]
      completeness: {trigger: association, silence_seconds: 60, expected_count: false}
    - name: pet-volume
      input: volume
      match: {modalities: [PT]}
      series: {min_slices: 10}
      models: [{name: pet-threshold-volume}]
      completeness: {trigger: association, silence_seconds: 60, expected_count: false}
YAML
results_up --routing "$WORK/routing.yaml" --set "inference.endpoints=[$SECONDREAD_WORKER_ADDR]"

# Writes a series with gen_series.py into DIR with a sphere of radius R mm and
# contrast ADD centred at the fractional voxel index (I, J, K) of its grid.
series_with_sphere() {  # dir i j k radius add gen_series-args...
  local dir=$1 i=$2 j=$3 k=$4 r=$5 add=$6 lesion
  shift 6
  $PY "$IT_REPO/tools/gen_series.py" "$dir" "$@" >/dev/null
  lesion=$($PY - "$dir/manifest.json" "$i" "$j" "$k" "$r" "$add" <<'PY'
import json, sys
g = json.load(open(sys.argv[1]))
i, j, k = (float(v) for v in sys.argv[2:5])
sz, sy, sx = g["spacing"]
c = [g["origin"][a] + i * sx * g["row"][a] + j * sy * g["column"][a] + k * sz * g["normal"][a] for a in range(3)]
print("%.4f,%.4f,%.4f,%s,%s" % (c[0], c[1], c[2], sys.argv[5], sys.argv[6]))
PY
)
  rm -rf "$dir"
  $PY "$IT_REPO/tools/gen_series.py" "$dir" "$@" --lesion="$lesion" >/dev/null
}

series_with_sphere "$WORK/mr" 15.3 19.6 7.4 5 1000 --modality MR --layout enhanced --orientation oblique \
  --slices 16 --rows 40 --columns 32 --pixel-spacing 0.8,0.6 --spacing 2.0 --shuffle --seed 41
series_with_sphere "$WORK/pet" 15.4 16.7 5.6 8 20000 --modality PT --layout single --orientation axial \
  --slices 12 --rows 32 --columns 32 --pixel-spacing 2.0,2.0 --spacing 3.0 --shuffle --seed 42
series_with_sphere "$WORK/epet" 14.2 15.5 6.3 8 20000 --modality PT --layout enhanced --orientation coronal \
  --slices 12 --rows 32 --columns 32 --pixel-spacing 2.5,2.0 --spacing 3.0 --shuffle --seed 43

series_uid() { $PY -c 'import glob,sys,pydicom; print(pydicom.dcmread(sorted(glob.glob(sys.argv[1] + "/*.dcm"))[0]).SeriesInstanceUID)' "$1"; }

# Orthanc holds the three studies and sends each to the node, as a PACS
# routing rule would; each association completes its study.
declare -A STUDY
for name in mr pet epet; do
  STUDY[$name]=$(orthanc_upload "$WORK/$name"/*.dcm)
  orthanc_send_study "${STUDY[$name]}"
done

wait_sql "SELECT count(*) FROM reads WHERE input = 'volume' AND state IN ('done', 'failed')" 3 150
[ "$(sql "SELECT count(*) FROM reads WHERE input = 'volume' AND state = 'done' AND flagged")" = 3 ] ||
  fail "the volume reads did not all finish flagged: $(sql "SELECT state, flagged, error FROM reads WHERE input = 'volume'")"
wait_sql "SELECT count(*) FROM exports WHERE state = 'sent'" 3 120
pass "the enhanced MR, the PET and the enhanced PET volumes were read, flagged and exported"

for name in mr pet epet; do
  uid=$(series_uid "$WORK/$name")
  read_id=$(sql "SELECT r.id FROM reads r JOIN series se ON se.id = r.series_ref
                 WHERE r.input = 'volume' AND se.series_instance_uid = '$uid'")
  [ -n "$read_id" ] || fail "no volume read for the $name series"
  kinds=$(sql "SELECT string_agg(kind, ' ' ORDER BY kind) FROM result_objects WHERE read_ref = $read_id")
  [ "$kinds" = "sc seg sr" ] || fail "$name result objects: $kinds"
  # Fetched back from Orthanc, each from the Orthanc study that holds the source.
  mkdir -p "$WORK/pacs/$name"
  while read -r kind sop; do
    id=$(curl -fsS -X POST "$ORTHANC_URL/tools/lookup" -d "$sop" |
      $PY -c 'import json,sys; r=[x for x in json.load(sys.stdin) if x["Type"]=="Instance"]; print(r[0]["ID"] if r else "")')
    [ -n "$id" ] || fail "Orthanc does not hold the $name $kind $sop"
    study=$(curl -fsS "$ORTHANC_URL/instances/$id/study" | $PY -c 'import json,sys; print(json.load(sys.stdin)["ID"])')
    [ "$study" = "${STUDY[$name]}" ] || fail "the $name $kind is not in the source study in Orthanc"
    curl -fsS "$ORTHANC_URL/instances/$id/file" -o "$WORK/pacs/$name/$kind.dcm" || fail "fetch the $name $kind"
    check_dciodvfy "$WORK/pacs/$name/$kind.dcm" "the $name $kind"
  done < <(sql "SELECT kind || ' ' || sop_instance_uid FROM result_objects WHERE read_ref = $read_id")
done
pass "Orthanc holds each read's SEG, SR and SC in the source study, and dciodvfy reports nothing on them"

check_results() {  # name
  $PY - "$WORK/pacs/$1" "$WORK/$1" <<'PY'
import glob, json, os, sys
import numpy as np
import pydicom
pacs, src_dir = sys.argv[1], sys.argv[2]
g = json.load(open(os.path.join(src_dir, "manifest.json")))
lesion = g["lesions"][0]
centre, radius = np.array(lesion["centre"]), lesion["radius"]
spacing_z, spacing_row, spacing_col = g["spacing"]
voxel_mm3 = spacing_z * spacing_row * spacing_col

# Every source frame by (SOP Instance UID, frame number; 0 for a single-frame
# image): its Plane Position and its values in the source's units (Bq/ml on
# PET, the stored values on MR).
frames = {}
first = None
for f in sorted(glob.glob(os.path.join(src_dir, "*.dcm"))):
    ds = pydicom.dcmread(f)
    if first is None:
        first = ds
    if "PerFrameFunctionalGroupsSequence" in ds:
        pixels = ds.pixel_array.reshape(int(ds.NumberOfFrames), int(ds.Rows), int(ds.Columns))
        for n, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
            pos = [float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient]
            pvt = item.get("PixelValueTransformationSequence")
            slope, intercept = (float(pvt[0].RescaleSlope), float(pvt[0].RescaleIntercept)) if pvt else (1.0, 0.0)
            frames[(ds.SOPInstanceUID, n + 1)] = (np.array(pos), pixels[n] * slope + intercept)
    else:
        slope, intercept = float(ds.get("RescaleSlope", 1)), float(ds.get("RescaleIntercept", 0))
        frames[(ds.SOPInstanceUID, 0)] = (np.array([float(v) for v in ds.ImagePositionPatient]),
                                          ds.pixel_array * slope + intercept)
enhanced = g["layout"] != "single"  # enhanced or legacy converted: multi-frame
row, col = np.array(g["row"]), np.array(g["column"])
rows, columns = g["rows"], g["columns"]
jj, ii = np.mgrid[0:rows, 0:columns]

def pixel_centres(pos):
    return pos[None, None, :] + ii[..., None] * spacing_col * row + jj[..., None] * spacing_row * col

# The sphere as the generator draws it: every pixel centre within the radius.
def sphere(pos):
    return np.linalg.norm(pixel_centres(pos) - centre, axis=-1) <= radius

seg = pydicom.dcmread(os.path.join(pacs, "seg.dcm"))
assert seg.StudyInstanceUID == first.StudyInstanceUID
assert seg.FrameOfReferenceUID == first.FrameOfReferenceUID, "the SEG is not in the source's Frame of Reference"
assert seg.SegmentationType == "BINARY"
shared = seg.SharedFunctionalGroupsSequence[0]
orient = [float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient]
assert np.allclose(orient, g["row"] + g["column"], atol=1e-5), orient
assert np.allclose([float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing], [spacing_row, spacing_col],
                   atol=1e-6)
seg_pixels = seg.pixel_array.reshape(int(seg.NumberOfFrames), int(seg.Rows), int(seg.Columns))
covered = set()
worst = 0.0
for n, item in enumerate(seg.PerFrameFunctionalGroupsSequence):
    ref = item.DerivationImageSequence[0].SourceImageSequence[0]
    if enhanced:
        assert "ReferencedFrameNumber" in ref, "frame %d of a SEG on an enhanced source names no frame" % n
        key = (ref.ReferencedSOPInstanceUID, int(ref.ReferencedFrameNumber))
    else:
        assert "ReferencedFrameNumber" not in ref, "frame %d names a frame of a single-frame image" % n
        key = (ref.ReferencedSOPInstanceUID, 0)
    assert key in frames, "SEG frame %d names %s, not a frame of the series" % (n, key)
    pos = np.array([float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient])
    src_pos = frames[key][0]
    worst = max(worst, float(np.abs(pos - src_pos).max()))
    assert np.allclose(pos, src_pos, atol=0.01, rtol=0), "SEG frame %d at %s, its source %s at %s" % (
        n, pos, key, src_pos)
    # Decimal strings carry the positions, so a pixel centre within 0.05 mm
    # of the sphere's surface may fall either way; every other pixel must be
    # exactly what the sphere says.
    dist = np.linalg.norm(pixel_centres(src_pos) - centre, axis=-1)
    got = seg_pixels[n] > 0
    wrong = (got & (dist > radius + 0.05)) | (~got & (dist < radius - 0.05))
    assert not wrong.any(), "SEG frame %d: %d pixels differ from the sphere" % (n, int(wrong.sum()))
    covered.add(key)
for key, (pos, _) in frames.items():
    if sphere(pos).any():
        assert key in covered, "source frame %s crosses the sphere but has no SEG frame" % (key,)

# The SR's numbers, read from the content tree.
sr = pydicom.dcmread(os.path.join(pacs, "sr.dcm"))
assert sr.VerificationFlag == "UNVERIFIED"
points, nums, segments, source_series = [], [], [], []
def walk(items):
    for it in items:
        vt = getattr(it, "ValueType", "")
        concept = it.ConceptNameCodeSequence[0].CodeValue if "ConceptNameCodeSequence" in it else ""
        if vt == "IMAGE" and concept == "121191":  # Referenced Segment
            ref = it.ReferencedSOPSequence[0]
            numbers = ref.ReferencedSegmentNumber
            numbers = list(numbers) if isinstance(numbers, pydicom.multival.MultiValue) else [numbers]
            segments.append((ref.ReferencedSOPInstanceUID, [int(v) for v in numbers]))
        if vt == "UIDREF" and concept == "121232":  # Source series for segmentation
            source_series.append(it.UID)
        if vt == "SCOORD3D":
            assert it.ReferencedFrameOfReferenceUID == first.FrameOfReferenceUID
            points.append(np.array([float(v) for v in it.GraphicData]))
        if vt == "NUM":
            mv = it.MeasuredValueSequence[0]
            derivation = [c.ConceptCodeSequence[0].CodeValue for c in it.get("ContentSequence", [])
                          if c.ConceptNameCodeSequence[0].CodeValue == "121401"]
            nums.append((it.ConceptNameCodeSequence[0].CodeValue, float(mv.NumericValue),
                         mv.MeasurementUnitsCodeSequence[0].CodeValue, derivation[0] if derivation else None))
        if "ContentSequence" in it:
            walk(it.ContentSequence)
walk(sr.ContentSequence)
assert len(points) == 1, "one lesion, one centroid: %s" % points
assert segments == [(seg.SOPInstanceUID, [1])], "the SR names segments %s, not the SEG's segment 1" % segments
assert source_series == [first.SeriesInstanceUID], source_series
evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
assert evidence.SeriesInstanceUID == first.SeriesInstanceUID
assert {r.ReferencedSOPInstanceUID for r in evidence.ReferencedSOPSequence} == {k[0] for k in frames}
centroid = points[0]
d = float(np.linalg.norm(centroid - centre))
assert d < radius, "the centroid is %.2f mm from the centre, outside the sphere" % d
assert d <= max(g["spacing"]), "the centroid is %.2f mm from the centre, more than a voxel" % d
# And it is the mean of the sphere's voxel centres (GraphicData is float32).
voxel_mean = np.concatenate([pixel_centres(pos)[sphere(pos)] for pos, _ in frames.values()]).mean(axis=0)
assert np.linalg.norm(centroid - voxel_mean) <= 0.01, "centroid %s, the sphere's voxels' mean %s" % (
    centroid, voxel_mean)

# The sphere's voxels over the whole grid, and their values.
inside = [(values[sphere(pos)]) for pos, values in frames.values()]
count = sum(int(v.size) for v in inside)
values = np.concatenate(inside)
volumes = [v for code, v, unit, _ in nums if code == "118565006"]
assert len(volumes) == 1 and [u for c, _, u, _ in nums if c == "118565006"] == ["mm3"], nums
expected_volume = count * voxel_mm3
assert abs(volumes[0] - expected_volume) <= 1e-4 * expected_volume, (volumes[0], count, voxel_mm3)
sphere_mm3 = 4.0 / 3.0 * np.pi * radius ** 3
assert abs(expected_volume - sphere_mm3) <= 0.15 * sphere_mm3, (expected_volume, sphere_mm3)

measures = {deriv: (v, unit) for code, v, unit, deriv in nums if deriv is not None}
summary = ("%d SEG frames (worst position %.4f mm), centroid %.2f mm from the centre and %.4f mm from the voxels' "
           "mean, volume %.1f mm3 (%d voxels)") % (len(seg.PerFrameFunctionalGroupsSequence), worst, d,
                                                  float(np.linalg.norm(centroid - voxel_mean)), volumes[0], count)
if g["modality"] == "PT":
    suv = values * g["suv_scale"]
    worst_suv = 0.0
    for deriv, expected in (("373098007", float(suv.mean())), ("56851009", float(suv.max()))):
        assert deriv in measures, "no %s in the PET SR: %s" % (deriv, nums)
        value, unit = measures[deriv]
        assert unit == "{SUVbw}g/ml", "PET unit %r" % unit
        assert abs(value - expected) <= 0.01 * expected, "%s: SR %.5g, source %.5g SUVbw" % (deriv, value, expected)
        worst_suv = max(worst_suv, abs(value - expected) / expected)
    assert [c for c, _, _, deriv in nums if deriv is not None] == ["126401", "126401"], nums
    # The dose, the injection and acquisition times and the decay correction
    # the SUVs were computed from stay in the source: no result object
    # carries them, at any depth. (Patient's Weight is the Patient Study
    # module's, copied into every result as the conformance statement says.)
    forbidden = {"RadiopharmaceuticalInformationSequence", "RadionuclideTotalDose", "RadionuclideHalfLife",
                 "RadiopharmaceuticalStartDateTime", "RadiopharmaceuticalStartTime", "Units", "DecayCorrection",
                 "CorrectedImage", "AcquisitionDate", "AcquisitionTime", "FrameReferenceTime"}
    for kind in ("sr", "seg", "sc"):
        found = {e.keyword for e in pydicom.dcmread(os.path.join(pacs, kind + ".dcm")).iterall()} & forbidden
        assert not found, "the PET %s carries %s" % (kind, sorted(found))
    summary += ", SUVbw mean %.4g max %.4g (%.1e from the source)" % (
        measures["373098007"][0], measures["56851009"][0], worst_suv)
else:
    # MR values have no unit: no mean or maximum is reported.
    assert not measures, "the MR SR reports %s" % nums

# The key-slice capture shows the slice with most of the sphere.
sc = pydicom.dcmread(os.path.join(pacs, "sc.dcm"))
ref = sc.SourceImageSequence[0]
key = (ref.ReferencedSOPInstanceUID, int(ref.get("ReferencedFrameNumber", 0)) if enhanced else 0)
assert key in frames, "the capture names %s, not a frame of the series" % (key,)
normal = np.array(g["normal"])
# The key slice: the most lesion pixels, the lowest along the normal on a tie.
counts = {k: int(sphere(pos).sum()) for k, (pos, _) in frames.items()}
most = max(counts.values())
expected_key = min((k for k in frames if counts[k] == most), key=lambda k: float(np.dot(frames[k][0], normal)))
assert key == expected_key, "the capture shows %s (%d pixels), not %s (%d)" % (key, counts[key], expected_key, most)
assert abs(np.dot(frames[key][0] - centre, normal)) <= spacing_z, "the key slice is far from the centre"
print(summary)
PY
}

for name in mr pet epet; do
  out=$(check_results "$name") || fail "the $name results are not where and what the sphere is"
  pass "$name: $out"
done
finish
