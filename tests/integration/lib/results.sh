# shellcheck shell=bash
# Helpers for the results tests (Orthanc as the hospital PACS, the node with a
# worker); sourced after common.sh and orthanc.sh.

# Starts Orthanc as the PACS that both sends studies to the node (modality
# "secondread") and receives its results, and the node (with a worker)
# exporting to it. Extra arguments go to dev-up.
results_up() {
  ORTHANC_DIR="$WORK/orthanc"
  ORTHANC_DICOM=1
  ORTHANC_DICOM_PORT=$(free_port)
  export ORTHANC_DICOM ORTHANC_DICOM_PORT
  IT_WORKER=1 node_up --pacs "ORTHANC@127.0.0.1:$ORTHANC_DICOM_PORT" "$@"
  orthanc_start "$ORTHANC_DIR" secondread SECONDREAD 127.0.0.1 "$SECONDREAD_DICOM_PORT" ||
    fail "Orthanc did not start"
}

# Uploads the files to Orthanc and prints the Orthanc study id (one study).
orthanc_upload() {  # files...
  local f out id=""
  for f in "$@"; do
    out=$(curl -fsS -X POST "$ORTHANC_URL/instances" --data-binary "@$f") || fail "upload $f to Orthanc"
    id=$($PY -c 'import json,sys; print(json.load(sys.stdin)["ParentStudy"])' <<<"$out")
  done
  echo "$id"
}

# Orthanc sends a study to the node, as a PACS routing rule would.
orthanc_send_study() {  # orthanc-study-id
  curl -fsS -X POST "$ORTHANC_URL/modalities/secondread/store" -d "$1" >/dev/null ||
    fail "Orthanc could not send study $1 to the node"
}

# Prints "modality sop_instance_uid orthanc_instance_id" for every instance of
# the Orthanc study.
orthanc_instances() {  # orthanc-study-id
  $PY - "$ORTHANC_URL" "$1" <<'PY'
import json, sys, urllib.request
base, study = sys.argv[1], sys.argv[2]
def get(path):
    with urllib.request.urlopen(base + path, timeout=10) as r:
        return json.load(r)
try:
    series = get("/studies/%s/series" % study)
except Exception:
    sys.exit(0)
for s in series:
    modality = s["MainDicomTags"].get("Modality", "")
    for i in s["Instances"]:
        inst = get("/instances/%s" % i)
        print(modality, inst["MainDicomTags"]["SOPInstanceUID"], i)
PY
}

# Waits until the Orthanc study holds at least N SR and M OT (Secondary
# Capture) instances; fails after the timeout.
wait_results_in_orthanc() {  # orthanc-study-id n_sr n_sc timeout_s
  local deadline=$(( $(date +%s) + $4 )) list
  while [ "$(date +%s)" -lt "$deadline" ]; do
    list=$(orthanc_instances "$1")
    if [ "$(grep -c '^SR ' <<<"$list")" -ge "$2" ] && [ "$(grep -c '^OT ' <<<"$list")" -ge "$3" ]; then
      return 0
    fi
    sleep 0.5
  done
  echo "$list" >&2
  fail "results for Orthanc study $1 did not arrive in $4 s"
}

# Runs dciodvfy on a file and fails on any error or warning it reports.
check_dciodvfy() {  # file label
  local out
  out=$(dciodvfy "$1" 2>&1 || true)
  if grep -qE '^(Error|Warning)' <<<"$out"; then
    grep -E '^(Error|Warning)' <<<"$out" >&2
    fail "dciodvfy reports errors or warnings in $2"
  fi
}

wait_sql() {  # query expected timeout_s
  # The timeout is a ceiling, never a measure: on a loaded 2-core machine with
  # ctest -j2 a step that takes 0.1 s alone can take several seconds, so short
  # ceilings get at least 20 s.
  local limit=$3
  [ "$limit" -ge 20 ] || limit=20
  local deadline=$(( $(date +%s) + limit )) got=""
  while [ "$(date +%s)" -lt "$deadline" ]; do
    got=$(sql "$1" 2>/dev/null || true)
    [ "$got" = "$2" ] && return 0
    sleep 0.3
  done
  fail "waited $limit s for [$1] = [$2], last [$got]"
}

# Writes a volume model into the model repository DIR whose right answer is
# known to the voxel: label 1 ("lesion") wherever the value the node sends is
# above THRESHOLD (default 500: Hounsfield units on CT; raw values on MR, SUVbw
# on PET), on the source grid, with no intensity transform. The lesion logit
# is (value - THRESHOLD) * GAIN: the label map does not depend on GAIN, the
# reported probability does, so a small threshold (SUV) wants a large gain.
threshold_volume_model() {  # repository-dir [name [threshold [gain [modality]]]]
  local name=${2:-threshold-volume-demo} threshold=${3:-500} gain=${4:-0.01} modality=${5:-CT}
  mkdir -p "$1/$name/1"
  $PY - "$1/$name/1/model.pt" "$threshold" "$gain" <<'PY'
import sys, torch
threshold, gain = float(sys.argv[2]), float(sys.argv[3])
class Threshold(torch.nn.Module):
    # Two-class logits: background 0, lesion (value - threshold) * gain.
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.zeros_like(x), (x - threshold) * gain], dim=1)
# Traced (scripting needs a source file); every operation is shape-agnostic.
torch.jit.trace(Threshold(), torch.zeros(1, 1, 8, 16, 16)).save(sys.argv[1])
PY
  cat >"$1/$name/model.yaml" <<YAML
name: $name
description: Marks every voxel above $threshold, so that a test knows the right segmentation exactly.
intended_use: Testing secondread only; not a medical device.
platform: torchscript
input:
  kind: volume
  orientation: LPS
  intensity: {kind: none}
sliding_window: {roi: [8, 16, 16], overlap: 0.25, blending: constant, batch_size: 2}
output:
  kind: label_map
  resample_back: true
  labels:
    - name: lesion
      category: {scheme: SCT, value: "49755003", meaning: "Morphologically Abnormal Structure"}
      type: {scheme: SCT, value: "52988006", meaning: "Lesion"}
      threshold: 0.5
applicability:
  modalities: [$modality]
instance_group: {kind: cpu, count: 1}
YAML
}

# Fetches from Orthanc each result object the query lists ("kind
# sop_instance_uid" rows) into DIR/<kind>.dcm, and checks each with dciodvfy.
fetch_results_from_orthanc() {  # dir query
  local kind uid id
  mkdir -p "$1"
  while read -r kind uid; do
    id=$(curl -fsS -X POST "$ORTHANC_URL/tools/lookup" -d "$uid" |
      $PY -c 'import json,sys; r=[x for x in json.load(sys.stdin) if x["Type"]=="Instance"]; print(r[0]["ID"] if r else "")')
    [ -n "$id" ] || fail "Orthanc does not hold the $kind $uid"
    curl -fsS "$ORTHANC_URL/instances/$id/file" -o "$1/$kind.dcm" || fail "fetch the $kind from Orthanc"
    check_dciodvfy "$1/$kind.dcm" "the $kind"
  done < <(sql "$2")
}
