#!/usr/bin/env bash
# No patient data crosses into the inference tier. DICOM files full of
# patient data (names, IDs, birth dates, accession numbers, dates,
# institution, UIDs), in several transfer syntaxes, go through the real node
# and a real worker; a recording proxy between them keeps the exact bytes of
# every request the node sent, and none of those values may appear in them.
source "$(dirname "$0")/lib/common.sh"
source "$(dirname "$0")/lib/results.sh"
it_setup "$@"
it_also_on_exit '[ -n "${REC_PID:-}" ] && kill "$REC_PID" 2>/dev/null'

# The reference chest model, and a volume model for the CT series.
REPO="$WORK/models"
mkdir -p "$REPO"
cp -r "$IT_REPO/tools/models/repository/synthetic-nodule-demo" "$REPO/"
threshold_volume_model "$REPO"
worker_up --repo "$REPO" --set cpu.threads=1
recorder_up
cat >"$WORK/routing.yaml" <<'YAML'
routing:
  rules:
    - name: chest-radiographs
      match: {modalities: [CR, DX], body_parts: [CHEST]}
      models: [{name: synthetic-nodule-demo}]
      completeness: {trigger: instance}
    - name: ct-volume
      input: volume
      match: {modalities: [CT]}
      series: {min_slices: 10}
      models: [{name: threshold-volume-demo}]
      completeness: {trigger: association, silence_seconds: 60, expected_count: false}
YAML
node_up --routing "$WORK/routing.yaml" --set "inference.endpoints=[$RECORDER_ADDR]"

# storescu sends a compressed object as it is only when told to propose its
# transfer syntax; otherwise it would decompress it first.
declare -A PROPOSE=([explicit]=-xe [implicit]=-xi [jpeg-ls]=-xt [rle]=-xr [j2k]=-xv [jpeg-lossless]=-xs)
i=0
for syntax in explicit implicit jpeg-ls rle j2k jpeg-lossless; do
  i=$((i + 1))
  extra=()
  [ "$syntax" = rle ] && extra=(--monochrome1)
  $PY "$IT_REPO/tools/gen_study.py" "$WORK/in-$syntax" --studies 1 --images-per-study 2 --lesion random \
    --modality CR --syntax "$syntax" --seed $((200 + i)) "${extra[@]}" >/dev/null
  SEND_OPTS=${PROPOSE[$syntax]} send "$WORK"/in-$syntax/study-*/*.dcm >/dev/null 2>&1 || fail "storescu $syntax"
done
# A CT series read as a volume: its voxels, spacing and directions cross;
# its names, IDs, dates and UIDs must not.
$PY "$IT_REPO/tools/gen_series.py" "$WORK/in-volume/study-1" --modality CT --slices 12 --rows 32 --columns 32 \
  --seed 240 --lesion=0,0,10,5,1500 >/dev/null
send "$WORK"/in-volume/study-1/*.dcm >/dev/null 2>&1 || fail "storescu CT series"
wait_sql "SELECT count(*) FROM reads WHERE state = 'done'" 13 180
[ "$(sql "SELECT count(*) FROM reads WHERE state = 'done' AND input = 'volume'")" = 1 ] || fail "the volume read"
pass "12 images in six transfer syntaxes and a CT series as a volume read through the recording proxy"

$PY - "$WORK/requests.bin" "$WORK"/in-* <<'PY' || fail "patient data found in what was sent to the worker"
import struct, sys, pydicom, glob, os
data = open(sys.argv[1], "rb").read()
records, off = [], 0
while off < len(data):
    n = struct.unpack("<I", data[off:off + 4])[0]
    records.append(data[off + 4:off + 4 + n]); off += 4 + n
blob = b"".join(records)
big = [r for r in records if len(r) > 10000]
assert len(big) >= 13, "expected at least 12 image-carrying requests and a volume, got %d" % len(big)
needles = set()
for base in sys.argv[2:]:
    for f in glob.glob(os.path.join(base, "study-*", "*.dcm")):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        for kw in ("PatientID", "IssuerOfPatientID", "PatientBirthDate", "AccessionNumber", "StudyDate",
                   "StudyTime", "StudyID", "InstitutionName", "StudyInstanceUID", "SeriesInstanceUID",
                   "SOPInstanceUID", "ReferringPhysicianName", "StudyDescription", "SeriesDate"):
            v = str(ds.get(kw, "") or "")
            if len(v) >= 4:
                needles.add(v)
        needles.add(str(ds.PatientName))
        # Name parts of five letters or more: shorter byte strings occur in
        # megabytes of pixel data by chance.
        for part in str(ds.PatientName).replace("^", " ").split():
            if len(part) >= 5:
                needles.add(part)
assert len(needles) > 20, needles
found = [n for n in needles if n.encode() in blob or n.upper().encode() in blob]
# Binary pixel data can contain any short byte string by chance; a UID, an
# ID or a name is long enough that a match means a leak.
if found:
    print("found in requests:", found)
    sys.exit(1)
print("checked %d values against %d requests (%d bytes)" % (len(needles), len(records), len(blob)))
PY
pass "none of the patient names, IDs, dates, accession numbers or UIDs appear in the bytes sent"
finish
