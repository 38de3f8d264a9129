#!/usr/bin/env bash
# What decoding each compressed image in a child process costs
# (scp/pixels/internals/decoder_sandbox.cc), against the same codecs in the calling
# process, timed alternately on the same files in one run
# (bench/decoder_bench.cc, median and p90 of REPEAT runs, files in the page
# cache). Files: the 512 x 512 CT slice of tools/gen_instances.py as JPEG
# baseline, JPEG lossless, JPEG-LS, RLE and JPEG 2000, and an 8 x 8 RLE image
# whose decode costs next to nothing (the fixed cost of the child). The run is repeated
# with BALLAST_MIB MiB touched in the benchmark process, about the node's
# resident size, since fork copies the caller's page tables.
#
#   bench/decoder_isolation.sh [REPEAT=200] [BALLAST_MIB=64]
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
source "$REPO/scripts/lib.sh"
REPEAT=${1:-200}
BALLAST=${2:-64}
BENCH="$BUILD_DIR/bench/decoder_bench"
[ -x "$BENCH" ] || { echo "build $BENCH first (cmake --build build --target decoder_bench)" >&2; exit 2; }
WORK=$(mktemp -d /tmp/secondread-decoder.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
$PY "$REPO/tools/gen_instances.py" "$WORK/ct" --kind ct --count 1 >/dev/null
CT=$(ls "$WORK"/ct/*.dcm)
dcmcjpeg --encode-baseline "$CT" "$WORK/jpeg-baseline.dcm"
dcmcjpeg --encode-lossless-sv1 "$CT" "$WORK/jpeg-lossless.dcm"
dcmcjpls "$CT" "$WORK/jpeg-ls.dcm"
dcmcrle "$CT" "$WORK/rle.dcm"
gdcmconv --j2k "$CT" "$WORK/jpeg2000.dcm"
$PY - "$WORK/tiny.dcm" <<'PY'
import sys
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
ds = Dataset()
ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.7", generate_uid()
ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
ds.Modality, ds.PatientID = "OT", "BENCH"
ds.Rows = ds.Columns = 8
ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
ds.PixelData = bytes(range(64))
ds.file_meta = FileMetaDataset()
ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
ds.is_little_endian, ds.is_implicit_VR = True, False
ds.save_as(sys.argv[1], write_like_original=False)
PY
dcmcrle "$WORK/tiny.dcm" "$WORK/tiny-rle.dcm"
FILES=("$WORK/jpeg-baseline.dcm" "$WORK/jpeg-lossless.dcm" "$WORK/jpeg-ls.dcm" "$WORK/rle.dcm" "$WORK/jpeg2000.dcm"
       "$WORK/tiny-rle.dcm")
echo "# $(nproc) CPU, $(uname -m), $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n 1); median of $REPEAT runs"
"$BENCH" --repeat "$REPEAT" "${FILES[@]}"
"$BENCH" --repeat "$REPEAT" --ballast-mib "$BALLAST" "${FILES[@]}"
