#!/usr/bin/env bash
# Text burned into pixels is patient data that no de-identification of the
# tensor removes, so it stays on the node. A worker serves an ultrasound
# model behind a recording proxy. Ultrasound images that say Burned In
# Annotation YES, or do not say (as many ultrasound devices do), are left out
# of their reads and the read records why; an image that says NO is read. A
# rule that allows burned-in text (workers in the node's own trust zone)
# sends all of them. Study-level and per-instance reads both hold.
source "$(dirname "$0")/lib/common.sh"
source "$(dirname "$0")/lib/results.sh"
it_setup "$@"
it_also_on_exit '[ -n "${REC_PID:-}" ] && kill "$REC_PID" 2>/dev/null'

REPO="$WORK/models"
mkdir -p "$REPO/us-demo/1"
cp "$IT_REPO/tools/models/repository/synthetic-nodule-demo/1/model.pt" "$REPO/us-demo/1/model.pt"
cat >"$REPO/us-demo/model.yaml" <<'YAML'
name: us-demo
description: The reference weights behind an ultrasound manifest, for testing what the node sends.
intended_use: Testing secondread only; not a medical device.
platform: torchscript
input:
  channels: 1
  height: 256
  width: 256
  scaling: minmax
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
  modalities: [US]
max_batch_size: 8
instance_group: {kind: cpu, count: 1}
YAML

worker_up --repo "$REPO" --set cpu.threads=1
recorder_up

cat >"$WORK/routing.yaml" <<'YAML'
routing:
  rules:
    - name: us
      match: {modalities: [US], calling_aes: [STORESCU], series_description: "^STUDY"}
      models: [{name: us-demo}]
      completeness: {trigger: association, silence_seconds: 60}
    - name: us-single
      match: {modalities: [US], calling_aes: [STORESCU], series_description: "^SINGLE"}
      models: [{name: us-demo}]
      completeness: {trigger: instance}
    - name: us-trusted
      match: {modalities: [US], calling_aes: [ORTHANC]}
      models: [{name: us-demo}]
      burned_in_text: allow
      completeness: {trigger: association, silence_seconds: 60}
YAML
IT_WORKER=1 node_up --routing "$WORK/routing.yaml" --set "inference.endpoints=[$RECORDER_ADDR]"

# Ultrasound images whose pixels carry a "patient name" band, with Burned In
# Annotation YES, NO or absent. Files are named by that value.
make_us() {  # outdir series-description
  $PY - "$1" "$2" <<'PY'
import os, sys
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
out, description = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
study, series = generate_uid(), generate_uid()
for n, burned in enumerate(["YES", "NO", None], start=1):
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.6.1"
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.PatientName, ds.PatientID = "BURNED^IN^TEXT", "BIT-" + description
    ds.PatientBirthDate, ds.PatientSex = "19800101", "F"
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber = "20261201", "101010", "ACC-BIT"
    ds.StudyID, ds.ReferringPhysicianName = "1", ""
    ds.Modality, ds.BodyPartExamined = "US", "ABDOMEN"
    ds.SeriesNumber, ds.InstanceNumber = 1, n
    ds.SeriesDescription = description
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    if burned is not None:
        ds.BurnedInAnnotation = burned
    ds.Rows, ds.Columns = 128, 128
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    pixels = (np.add.outer(np.arange(128), np.arange(128)) % 200).astype(np.uint8)
    pixels[4:14, 4:100] = 255  # where a device would write the name
    ds.PixelData = pixels.tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.is_little_endian, ds.is_implicit_VR = True, False
    ds.save_as(os.path.join(out, "%s.dcm" % (burned or "ABSENT")), write_like_original=False)
PY
}
make_us "$WORK/study" STUDY
make_us "$WORK/single" SINGLE
make_us "$WORK/trusted" TRUSTED
send "$WORK"/study/*.dcm >/dev/null 2>&1 || fail "storescu study"
send "$WORK"/single/*.dcm >/dev/null 2>&1 || fail "storescu single"
SEND_AET=ORTHANC send "$WORK"/trusted/*.dcm >/dev/null 2>&1 || fail "storescu trusted"

# One study-level read per study and three per-instance reads.
wait_sql "SELECT count(*) FROM reads WHERE state IN ('done', 'not_applicable', 'failed')" 5 120
[ "$(sql "SELECT count(*) FROM reads WHERE state = 'failed'")" = 0 ] || fail "a read failed: $(sql "SELECT rule_name, error FROM reads")"

uid_of() { dicom_uid "$WORK/$1.dcm"; }
images_read() {  # rule -> images_read of its (study-level) read
  sql "SELECT images_read FROM reads WHERE rule_name = '$1'"
}
skipped() {  # rule -> "uid:reason" lines, sorted
  sql "SELECT i.sop_instance_uid || ':' || s.reason FROM read_skipped_instances s
       JOIN reads r ON r.id = s.read_ref JOIN instances i ON i.id = s.instance_ref
       WHERE r.rule_name = '$1' ORDER BY 1"
}
expected() {  # dir -> the two left-out images as "uid:reason" lines, sorted
  printf '%s\n' "$(uid_of "$1/YES"):burned_in_annotation" "$(uid_of "$1/ABSENT"):burned_in_annotation_unknown" | sort
}

[ "$(images_read us)" = 1 ] || fail "study read sent $(images_read us) images, not 1"
[ "$(skipped us)" = "$(expected study)" ] || fail "study read's skipped images: [$(skipped us)]"
study_id=$(sql "SELECT study_ref FROM reads WHERE rule_name = 'us'")
curl -fsS -H "Authorization: Bearer $SECONDREAD_TOKEN" "${SECONDREAD_WORKLIST_URL%/}/api/v1/studies/$study_id" >"$WORK/study.json" ||
  fail "study detail"
$PY - "$WORK/study.json" <<'PY' || fail "the study detail does not show the images left out"
import json, sys
reads = json.load(open(sys.argv[1]))["reads"]
skipped = sorted(s["reason"] for r in reads for s in r["skipped_images"])
assert skipped == ["burned_in_annotation", "burned_in_annotation_unknown"], skipped
PY
pass "a study read sent only the image that says NO and recorded the YES and the silent one with their reasons, which the worklist API shows"

[ "$(skipped us-single)" = "$(expected single)" ] || fail "per-instance skipped images: [$(skipped us-single)]"
[ "$(sql "SELECT state FROM reads r JOIN read_instances ri ON ri.read_ref = r.id
          JOIN instances i ON i.id = ri.instance_ref
          WHERE r.rule_name = 'us-single' AND i.sop_instance_uid = '$(uid_of single/NO)'")" = done ] ||
  fail "the per-instance read of the NO image is not done"
[ "$(sql "SELECT count(*) FROM reads WHERE rule_name = 'us-single' AND state = 'not_applicable'")" = 2 ] ||
  fail "per-instance reads of left-out images: $(sql "SELECT state, images_read FROM reads WHERE rule_name = 'us-single'")"
pass "per-instance reads of the YES and the silent image sent nothing and say why"

[ "$(images_read us-trusted)" = 3 ] || fail "the trusted rule sent $(images_read us-trusted) images, not 3"
[ "$(sql "SELECT count(*) FROM read_skipped_instances s JOIN reads r ON r.id = s.read_ref
          WHERE r.rule_name = 'us-trusted'")" = 0 ] || fail "the trusted rule left images out"
pass "a rule that allows burned-in text sends every image"

# What crossed to the worker: 1 + 1 + 3 images, and no more.
[ "$(grep -c '^us-demo ' "$WORK/images.txt")" = 5 ] || { cat "$WORK/images.txt"; fail "images sent to the worker"; }
[ "$(metric 'secondread_pipeline_images_skipped_total{reason="burned_in_annotation"}')" = 2 ] ||
  fail "skipped metric (YES): $(metric 'secondread_pipeline_images_skipped_total{reason="burned_in_annotation"}')"
[ "$(metric 'secondread_pipeline_images_skipped_total{reason="burned_in_annotation_unknown"}')" = 2 ] ||
  fail "skipped metric (unknown)"
pass "the worker received exactly the five permitted images; the metric counts the four left out by reason"
finish
