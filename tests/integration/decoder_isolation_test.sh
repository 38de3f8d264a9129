#!/usr/bin/env bash
# Every compressed image decodes in a process of its own. A study of three
# chest radiographs: one JPEG Lossless image that decodes, one JPEG-LS image
# whose 4096 x 4096 pixels need more memory than decoder.memory_limit
# allows, and one RLE image whose stream is corrupt. The node keeps its
# process, the read completes with the one good image, and the read records
# the other two with their reasons, which the worklist API and the metrics
# show. A second study whose only image is corrupt fails its read, which
# still lists the image and why.
source "$(dirname "$0")/lib/common.sh"
source "$(dirname "$0")/lib/results.sh"
it_setup "$@"

cat >"$WORK/routing.yaml" <<'YAML'
routing:
  rules:
    - name: chest
      match: {modalities: [CR], calling_aes: [STORESCU]}
      models: [{name: synthetic-nodule-demo}]
      completeness: {trigger: association, silence_seconds: 60}
YAML
IT_WORKER=1 node_up --routing "$WORK/routing.yaml" --set decoder.memory_limit=16MiB
node_pid=$(cat "$NODE/secondread.pid")

# Three radiographs of one study, written uncompressed and then compressed
# with DCMTK's own tools.
$PY - "$WORK/native" <<'PY'
import os, sys
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
study, series = generate_uid(), generate_uid()
lonely_study, lonely_series = generate_uid(), generate_uid()
for n, (name, size) in enumerate([("good", 128), ("big", 4096), ("corrupt", 128), ("lonely", 128)], start=1):
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    if name == "lonely":
        ds.StudyInstanceUID, ds.SeriesInstanceUID = lonely_study, lonely_series
    ds.PatientName, ds.PatientID = "DECODER^ISOLATION", "DEC-ISO-1"
    ds.PatientBirthDate, ds.PatientSex = "19700101", "M"
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber = "20261201", "101010", "ACC-DEC"
    ds.StudyID, ds.ReferringPhysicianName = "1", ""
    ds.Modality, ds.BodyPartExamined = "CR", "CHEST"
    ds.SeriesNumber, ds.InstanceNumber = 1, n
    ds.Rows = ds.Columns = size
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = (np.add.outer(np.arange(size), np.arange(size)) * 13 % 4096).astype(np.uint16).tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.is_little_endian, ds.is_implicit_VR = True, False
    ds.save_as(os.path.join(out, name + ".dcm"), write_like_original=False)
PY
mkdir -p "$WORK/study"
dcmcjpeg --encode-lossless-sv1 "$WORK/native/good.dcm" "$WORK/study/good.dcm"
dcmcjpls "$WORK/native/big.dcm" "$WORK/study/big.dcm"
# The RLE header of the first fragment says where its second segment starts;
# put that far past the fragment's end.
corrupt_rle() {  # native out
  dcmcrle "$1" "$WORK/rle.dcm"
  $PY - "$WORK/rle.dcm" "$2" <<'PY'
import struct, sys
b = bytearray(open(sys.argv[1], "rb").read())
px = b.index(b"\xe0\x7f\x10\x00")
table = b.index(b"\xfe\xff\x00\xe0", px)
fragment = table + 8 + struct.unpack_from("<I", b, table + 4)[0]
assert b[fragment:fragment + 4] == b"\xfe\xff\x00\xe0"
assert struct.unpack_from("<I", b, fragment + 8)[0] == 2  # two segments: 16-bit pixels
struct.pack_into("<I", b, fragment + 8 + 8, 0x7ffffff0)
open(sys.argv[2], "wb").write(b)
PY
}
corrupt_rle "$WORK/native/corrupt.dcm" "$WORK/study/corrupt.dcm"
mkdir -p "$WORK/lonely"
corrupt_rle "$WORK/native/lonely.dcm" "$WORK/lonely/lonely.dcm"
# dcmsend proposes each file's own transfer syntax, all on one association.
dcmsend -aet STORESCU -aec SECONDREAD --decompress-never 127.0.0.1 "$SECONDREAD_DICOM_PORT" "$WORK"/study/*.dcm \
  >"$WORK/dcmsend.log" 2>&1 || fail "dcmsend: $(tail -n 5 "$WORK/dcmsend.log")"
dcmsend -aet STORESCU -aec SECONDREAD --decompress-never 127.0.0.1 "$SECONDREAD_DICOM_PORT" "$WORK"/lonely/*.dcm \
  >"$WORK/dcmsend-lonely.log" 2>&1 || fail "dcmsend lonely: $(tail -n 5 "$WORK/dcmsend-lonely.log")"
[ "$(sql "SELECT count(*) FROM instances")" = 4 ] || fail "instances stored: $(sql "SELECT count(*) FROM instances")"

wait_sql "SELECT count(*) FROM reads WHERE state IN ('done', 'failed')" 2 120
lonely_uid=$(dicom_uid "$WORK/lonely/lonely.dcm")
lonely_study="(SELECT se.study_ref FROM instances i JOIN series se ON se.id = i.series_ref
               WHERE i.sop_instance_uid = '$lonely_uid')"
[ "$(sql "SELECT state || ' ' || images_read FROM reads WHERE study_ref <> $lonely_study")" = "done 1" ] ||
  fail "the read: $(sql "SELECT state, images_read, error FROM reads")"
skipped=$(sql "SELECT i.sop_instance_uid || ':' || s.reason FROM read_skipped_instances s
               JOIN instances i ON i.id = s.instance_ref JOIN reads r ON r.id = s.read_ref
               WHERE r.study_ref <> $lonely_study ORDER BY 1")
expected=$(printf '%s\n' "$(dicom_uid "$WORK/study/big.dcm"):decoder_out_of_memory" \
  "$(dicom_uid "$WORK/study/corrupt.dcm"):undecodable" | sort)
[ "$skipped" = "$expected" ] || fail "skipped images: [$skipped], expected [$expected]"
[ "$(sql "SELECT count(*) FROM findings f JOIN instances i ON i.id = f.instance_ref
          WHERE i.sop_instance_uid = '$(dicom_uid "$WORK/study/good.dcm")'")" -ge 1 ] || fail "no finding for the good image"
pass "the read completed with the image that decodes and recorded the other two with their reasons"

[ "$(sql "SELECT state || ':' || error FROM reads WHERE study_ref = $lonely_study")" = \
  "failed:no source image could be decoded" ] || fail "the lonely read: $(sql "SELECT state, error FROM reads")"
[ "$(sql "SELECT i.sop_instance_uid || ':' || s.reason FROM read_skipped_instances s
          JOIN instances i ON i.id = s.instance_ref JOIN reads r ON r.id = s.read_ref
          WHERE r.study_ref = $lonely_study")" = "$lonely_uid:undecodable" ] || fail "the failed read does not list its image"
pass "a read none of whose images decodes fails and still lists the image with its reason"

study_id=$(sql "SELECT study_ref FROM reads WHERE study_ref <> $lonely_study")
curl -fsS -H "Authorization: Bearer $SECONDREAD_TOKEN" "${SECONDREAD_WORKLIST_URL%/}/api/v1/studies/$study_id" \
  >"$WORK/study.json" || fail "study detail"
$PY - "$WORK/study.json" <<'PY' || fail "the study detail does not show the images left out"
import json, sys
reads = json.load(open(sys.argv[1]))["reads"]
assert [r["state"] for r in reads] == ["done"], reads
skipped = sorted(s["reason"] for r in reads for s in r["skipped_images"])
assert skipped == ["decoder_out_of_memory", "undecodable"], skipped
PY
[ "$(metric 'secondread_pipeline_images_skipped_total{reason="decoder_out_of_memory"}')" = 1 ] ||
  fail "skipped metric (out of memory): $(metric 'secondread_pipeline_images_skipped_total{reason="decoder_out_of_memory"}')"
[ "$(metric 'secondread_pipeline_images_skipped_total{reason="undecodable"}')" = 2 ] ||
  fail "skipped metric (undecodable): $(metric 'secondread_pipeline_images_skipped_total{reason="undecodable"}')"
pass "the worklist API's study detail and the metrics show each image left out with its reason"

kill -0 "$node_pid" 2>/dev/null || fail "the node is gone"
[ "$(cat "$NODE/secondread.pid")" = "$node_pid" ] || fail "the node was restarted"
[ "$(grep -ac '"event":"node_started"' "$SECONDREAD_LOG")" = 1 ] || fail "the node started more than once"
grep -a '"event":"decode_failed"' "$SECONDREAD_LOG" | grep >/dev/null '"reason":"decoder_out_of_memory"' ||
  fail "no decode_failed line with its reason"
if grep -aq 'DECODER\|DEC-ISO-1\|ACC-DEC' "$SECONDREAD_LOG"; then fail "patient data in the log"; fi
# The node still serves: a C-ECHO answers.
echoscu -aet STORESCU -aec "$SECONDREAD_AE" 127.0.0.1 "$SECONDREAD_DICOM_PORT" >/dev/null 2>&1 || fail "C-ECHO after the reads"
pass "the node kept its process ($node_pid), logged each failure with its reason and no patient data, and still answers"
finish
