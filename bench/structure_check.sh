#!/usr/bin/env bash
# What the structural scan adds to each received data set: the scan
# (scp/receive/dataset_limits.cc) and the DCMTK parse that follows it on the C-STORE
# path, timed on the same files in one run (bench/structure_bench.cc, median
# of REPEAT runs, files in the page cache). Files: a 512 KiB CT slice, a
# 10 MiB radiograph, the CT slice deflated, and a structure-set-like object
# with 20,000 nested items (the scan's worst case: all structure, no bulk).
#
#   bench/structure_check.sh [REPEAT=200]
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
source "$REPO/scripts/lib.sh"
REPEAT=${1:-200}
BENCH="$BUILD_DIR/bench/structure_bench"
[ -x "$BENCH" ] || { echo "build $BENCH first (cmake --build build --target structure_bench)" >&2; exit 2; }
WORK=$(mktemp -d /tmp/secondread-structure.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
$PY "$REPO/tools/gen_instances.py" "$WORK/ct" --kind ct --count 1 >/dev/null
$PY "$REPO/tools/gen_instances.py" "$WORK/cr" --kind cr --count 1 >/dev/null
CT=$(ls "$WORK"/ct/*.dcm); CR=$(ls "$WORK"/cr/*.dcm)
dcmconv +td "$CT" "$WORK/ct-deflated.dcm"
$PY - "$WORK/items.dcm" <<'PY'
import sys
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
ds = Dataset()
ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.481.3"
ds.SOPInstanceUID = generate_uid()
ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
ds.Modality, ds.PatientID = "RTSTRUCT", "BENCH"
rois = []
for r in range(20):
    contours = []
    for c in range(1000):
        item = Dataset()
        item.ContourGeometricType = "CLOSED_PLANAR"
        item.NumberOfContourPoints = 4
        item.ContourData = [0, 0, c, 1, 0, c, 1, 1, c, 0, 1, c]
        contours.append(item)
    roi = Dataset()
    roi.ReferencedROINumber = r + 1
    roi.ContourSequence = Sequence(contours)
    rois.append(roi)
ds.ROIContourSequence = Sequence(rois)
ds.file_meta = FileMetaDataset()
ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
ds.is_little_endian, ds.is_implicit_VR = True, False
ds.save_as(sys.argv[1], write_like_original=False)
PY
echo "# $(nproc) CPU, $(uname -m); median of $REPEAT runs"
"$BENCH" --repeat "$REPEAT" \
  "$CT" 1.2.840.10008.1.2.1 \
  "$CR" 1.2.840.10008.1.2.1 \
  "$WORK/ct-deflated.dcm" 1.2.840.10008.1.2.1.99 \
  "$WORK/items.dcm" 1.2.840.10008.1.2.1
