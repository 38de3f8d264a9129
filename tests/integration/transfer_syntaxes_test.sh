#!/usr/bin/env bash
# Every supported transfer syntax arrives with storescu and is stored exactly
# as received (no transcoding); re-sends are idempotent; C-ECHO answers.
source "$(dirname "$0")/lib/common.sh"
it_setup "$@"
node_up

echoscu -aet STORESCU -aec SECONDREAD 127.0.0.1 "$SECONDREAD_DICOM_PORT" || fail "C-ECHO failed"
pass "C-ECHO"

declare -A FILES=(
  [1.2.840.10008.1.2]=MR_small_implicit.dcm
  [1.2.840.10008.1.2.1]=CT_small.dcm
  [1.2.840.10008.1.2.2]=MR_small_bigendian.dcm
  [1.2.840.10008.1.2.1.99]=image_dfl.dcm
  [1.2.840.10008.1.2.4.50]=SC_rgb_jpeg_dcmtk.dcm
  [1.2.840.10008.1.2.4.51]=JPGExtended.dcm
  [1.2.840.10008.1.2.4.70]=SC_rgb_jpeg_gdcm.dcm
  [1.2.840.10008.1.2.4.80]=MR_small_jpeg_ls_lossless.dcm
  [1.2.840.10008.1.2.5]=MR_small_RLE.dcm
  [1.2.840.10008.1.2.4.90]=MR_small_jp2klossless.dcm
  [1.2.840.10008.1.2.4.91]=JPEG2000.dcm
)
# storescu proposes a compressed transfer syntax only when asked to, and would
# otherwise decompress before sending.
declare -A PROPOSE=(
  [1.2.840.10008.1.2]=-xi
  [1.2.840.10008.1.2.1]=-xe
  [1.2.840.10008.1.2.2]=-xb
  [1.2.840.10008.1.2.1.99]=-xd
  [1.2.840.10008.1.2.4.50]=-xy
  [1.2.840.10008.1.2.4.51]=-xx
  [1.2.840.10008.1.2.4.70]=-xs
  [1.2.840.10008.1.2.4.80]=-xt
  [1.2.840.10008.1.2.5]=-xr
  [1.2.840.10008.1.2.4.90]=-xv
  [1.2.840.10008.1.2.4.91]=-xw
)
# Element values without length encoding: storescu rewrites undefined-length
# sequences with explicit lengths and drops trailing padding when it re-encodes.
normalized_dump() {
  dcmdump -q "$1" 2>/dev/null | grep -v '^(0002,' | grep -v 'Delimitation' | grep -v '^(fffc,fffc)' |
    sed -E 's/#.*//; s/\((Sequence|Item) with (undefined|explicit) length.*//; s/[[:space:]]+$//'
}
for ts in "${!FILES[@]}"; do
  f="$TEST_DATA/${FILES[$ts]}"
  uid=$(dicom_uid "$f")
  # Propose exactly the file's own transfer syntax, as a PACS forwarding
  # stored objects does, so any transcoding would show.
  SEND_OPTS=${PROPOSE[$ts]} send "$f" >"$WORK/send.log" 2>&1 || { cat "$WORK/send.log"; fail "storescu failed for $ts"; }
  got=$(sql "select transfer_syntax_uid || '|' || spool_name from instances where sop_instance_uid = '$uid'")
  [ -n "$got" ] || fail "no row for $ts"
  [ "${got%%|*}" = "$ts" ] || fail "stored transfer syntax ${got%%|*}, sent $ts"
  path=$(spool_path "${got##*|}")
  [ -f "$path" ] || fail "spool file missing for $ts"
  meta_ts=$(dcmdump -q -M -Un +P 0002,0010 "$path" 2>/dev/null | sed -n 's/.*\[\(.*\)\].*/\1/p' | head -n 1)
  [ "$meta_ts" = "$ts" ] || fail "meta header of $ts says '$meta_ts'"
  if [ "$(dataset_sha "$path")" = "$(dataset_sha "$f")" ]; then
    pass "transfer syntax $ts stored byte-identical"
  else
    # storescu re-encodes some files while sending (it re-deflates deflated
    # data); then the stored dataset must still equal the sent one element
    # for element, in the same transfer syntax.
    diff <(normalized_dump "$f") <(normalized_dump "$path") >"$WORK/diff.txt" ||
      { head -20 "$WORK/diff.txt"; fail "dataset content differs for $ts"; }
    pass "transfer syntax $ts stored with identical content (sender re-encoded)"
  fi
done

# Several sample files share a SOP Instance UID: the newer copy replaced the
# older one, so the registry holds one row per distinct UID.
distinct=$(for f in "${FILES[@]}"; do dicom_uid "$TEST_DATA/$f"; done | sort -u | wc -l)
count=$(sql "select count(*) from instances")
[ "$count" = "$distinct" ] || fail "expected $distinct instances, found $count"

# Re-sending the same SOP Instance is Success, with no duplicate rows.
send "$TEST_DATA/CT_small.dcm" >/dev/null 2>&1 || fail "re-send failed"
[ "$(sql "select count(*) from instances")" = "$distinct" ] || fail "re-send duplicated a row"
[ "$(sql "select receive_count from instances where sop_instance_uid = '$(dicom_uid "$TEST_DATA/CT_small.dcm")'")" = 2 ] ||
  fail "receive_count not incremented"
pass "re-send is idempotent"

# Storage SOP Classes beyond the 128 presentation contexts a DCMTK profile
# holds: ultrasound, waveform, RT, structured report, segmentation.
for f in ExplVR_BigEnd.dcm waveform_ecg.dcm rtplan.dcm test-SR.dcm liver_1frame.dcm; do
  # -R: storescu itself proposes only 128 of the classes it knows otherwise.
  SEND_OPTS=-R send "$TEST_DATA/$f" >"$WORK/sop.log" 2>&1 || { tail -3 "$WORK/sop.log"; fail "SOP class of $f refused"; }
  [ "$(sql "select count(*) from instances where sop_instance_uid = '$(dicom_uid "$TEST_DATA/$f")'")" = 1 ] ||
    fail "$f not registered"
done
pass "ultrasound, ECG, RT plan, SR and segmentation storage accepted"

# Latin-1 patient data is registered as UTF-8; the spool keeps the original.
cp "$TEST_DATA/CT_small.dcm" "$WORK/latin1.dcm"
dcmodify -nb -i "(0008,0005)=ISO_IR 100" -m "(0008,0018)=1.2.826.0.1.3680043.10.1139.77" "$WORK/latin1.dcm" >/dev/null 2>&1
$PY - "$WORK/latin1.dcm" <<'PYEOF'
import pydicom, sys
ds = pydicom.dcmread(sys.argv[1])
ds.SpecificCharacterSet = "ISO_IR 100"
ds.PatientName = "M\u00fcller^J\u00fcrgen"
ds.save_as(sys.argv[1])
PYEOF
send "$WORK/latin1.dcm" >/dev/null 2>&1 || fail "Latin-1 dataset refused"
[ "$(sql "select p.patient_name from patients p join studies s on s.patient_ref = p.id join series se on se.study_ref = s.id join instances i on i.series_ref = se.id where i.sop_instance_uid = '1.2.826.0.1.3680043.10.1139.77'")" = "Müller^Jürgen" ] ||
  fail "Latin-1 name not stored as UTF-8"
pass "ISO_IR 100 text registered as UTF-8"

# Registry content the pipeline needs.
[ "$(sql "select count(*) from studies where last_received_at is not null")" -ge 1 ] || fail "study times"
[ "$(sql "select count(*) from associations where calling_ae = 'STORESCU' and ended_at is not null")" -ge 1 ] ||
  fail "association not recorded"
[ "$(sql "select count(*) from instances where association_ref is null")" = 0 ] || fail "instance without association"
pass "registry rows"

[ "$(metric secondread_scp_instances_stored_total)" -ge 18 ] || fail "stored metric"
# Capture first: grep -q exits at the first match, and under pipefail the
# writer's SIGPIPE would fail the check that had just passed.
metrics_body=$(curl -fsS "$SECONDREAD_METRICS_URL") || fail "metrics endpoint"
grep -q 'secondread_scp_store_duration_seconds_bucket' <<<"$metrics_body" || fail "latency histogram"
grep -qF 'secondread_scp_associations_total{result="accepted"}' <<<"$metrics_body" || fail "assoc metric"
readyz_body=$(curl -fsS "${SECONDREAD_METRICS_URL%/metrics}/readyz") || fail "readyz endpoint"
grep -q ready <<<"$readyz_body" || fail "readyz"
pass "metrics and readiness"

# No patient name or ID in the info-level log.
grep -q "Synthetic\|CompressedSamples\|Doe\|ller" "$SECONDREAD_LOG" && fail "PHI in the log"
for f in "$TEST_DATA"/CT_small.dcm "$TEST_DATA"/MR_small.dcm; do
  pid=$(dcmdump -q +P 0010,0020 "$f" | sed -n 's/.*\[\(.*\)\].*/\1/p')
  name=$(dcmdump -q +P 0010,0010 "$f" | sed -n 's/.*\[\(.*\)\].*/\1/p')
  { [ -n "$pid" ] && grep -qF "$pid" "$SECONDREAD_LOG"; } && fail "patient ID in the log"
  { [ -n "$name" ] && grep -qF "$name" "$SECONDREAD_LOG"; } && fail "patient name in the log"
done
pass "no PHI in info logs"
finish
