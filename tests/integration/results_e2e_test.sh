#!/usr/bin/env bash
# The product's main job end to end, with Orthanc as the hospital PACS: a
# study with a lesion and one without go from Orthanc to the node, through the
# real worker, and their SR and Secondary Capture come back into the same
# studies in Orthanc, valid for dciodvfy, once each; the lesion study is
# flagged on the worklist, the clean one is not.
source "$(dirname "$0")/lib/common.sh"
source "$(dirname "$0")/lib/orthanc.sh"
source "$(dirname "$0")/lib/results.sh"
it_setup "$@"
it_also_on_exit 'orthanc_stop "$WORK/orthanc"'

results_up
$PY "$IT_REPO/tools/gen_study.py" "$WORK/lesion" --studies 1 --lesion yes --modality CR --seed 11 >/dev/null
$PY "$IT_REPO/tools/gen_study.py" "$WORK/clean" --studies 1 --lesion no --modality DX --seed 12 >/dev/null
manifest() { $PY -c "import json,sys; m=json.load(open(sys.argv[1])); print(m['studies'][0][sys.argv[2]])" "$1" "$2"; }
LESION_UID=$(manifest "$WORK/lesion/manifest.json" study_uid)
CLEAN_UID=$(manifest "$WORK/clean/manifest.json" study_uid)

LESION_ID=$(orthanc_upload "$WORK"/lesion/study-*/*.dcm)
CLEAN_ID=$(orthanc_upload "$WORK"/clean/study-*/*.dcm)
orthanc_send_study "$LESION_ID"
orthanc_send_study "$CLEAN_ID"
pass "Orthanc sent both studies to the node"

wait_results_in_orthanc "$LESION_ID" 1 1 90
wait_results_in_orthanc "$CLEAN_ID" 1 1 90
pass "SR and Secondary Capture arrived in both studies in Orthanc"

# Exactly once: one SR and one SC per single-image study, one export each.
for id in "$LESION_ID" "$CLEAN_ID"; do
  list=$(orthanc_instances "$id")
  [ "$(grep -c '^SR ' <<<"$list")" -eq 1 ] || fail "study $id holds $(grep -c '^SR ' <<<"$list") SRs"
  [ "$(grep -c '^OT ' <<<"$list")" -eq 1 ] || fail "study $id holds $(grep -c '^OT ' <<<"$list") SCs"
done
[ "$(sql "SELECT count(*) FROM exports WHERE state = 'sent' AND attempts = 1")" = 2 ] || fail "exports not sent once each"
pass "one SR and one SC per study, each export sent on its first attempt"

# Content: fetch what Orthanc holds and check it.
mkdir -p "$WORK/fetched"
check_study() {  # orthanc-id study-uid expect-flagged label
  local list sr sc src_uid
  list=$(orthanc_instances "$1")
  sr=$(awk '$1 == "SR" { print $3 }' <<<"$list")
  sc=$(awk '$1 == "OT" { print $3 }' <<<"$list")
  src_uid=$(awk '$1 == "CR" || $1 == "DX" { print $2 }' <<<"$list")
  curl -fsS "$ORTHANC_URL/instances/$sr/file" -o "$WORK/fetched/$4-sr.dcm"
  curl -fsS "$ORTHANC_URL/instances/$sc/file" -o "$WORK/fetched/$4-sc.dcm"
  check_dciodvfy "$WORK/fetched/$4-sr.dcm" "the $4 SR"
  check_dciodvfy "$WORK/fetched/$4-sc.dcm" "the $4 Secondary Capture"
  $PY - "$WORK/fetched/$4-sr.dcm" "$WORK/fetched/$4-sc.dcm" "$2" "$src_uid" "$3" <<'PY' || fail "content of the $4 results"
import sys, pydicom
sr = pydicom.dcmread(sys.argv[1]); sc = pydicom.dcmread(sys.argv[2])
study, src, flagged = sys.argv[3], sys.argv[4], sys.argv[5] == "1"
assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34", sr.SOPClassUID
assert sr.StudyInstanceUID == study and sc.StudyInstanceUID == study, "not in the source study"
assert sr.VerificationFlag == "UNVERIFIED"
assert sr.ContributingEquipmentSequence[0].PurposeOfReferenceCodeSequence[0].CodeValue == "109102"
assert "AI" in sr.SeriesDescription and "AI" in sc.SeriesDescription
assert list(sc.ImageType)[:2] == ["DERIVED", "SECONDARY"], sc.ImageType
assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == src
assert sc.BurnedInAnnotation == "YES"
refs, scores = set(), []
def walk(items):
    for it in items:
        for r in getattr(it, "ReferencedSOPSequence", []):
            refs.add(r.ReferencedSOPInstanceUID)
        if getattr(it, "ValueType", "") == "NUM":
            for mv in it.MeasuredValueSequence:
                scores.append(float(mv.NumericValue))
        walk(getattr(it, "ContentSequence", []))
walk(sr.ContentSequence)
assert src in refs, "the SR does not reference the source image"
assert refs <= {src}, "the SR references images that are not the source: %s" % refs
assert scores, "no probability in the SR"
PY
  local got
  got=$(sql "SELECT w.flagged FROM worklist_entries w JOIN studies s ON s.id = w.study_ref WHERE s.study_instance_uid = '$2'")
  if [ "$3" = 1 ]; then [ "$got" = t ] || fail "$4 study not flagged ($got)"; else [ "$got" = f ] || fail "$4 study flagged ($got)"; fi
}
check_study "$LESION_ID" "$LESION_UID" 1 lesion
check_study "$CLEAN_ID" "$CLEAN_UID" 0 clean
pass "dciodvfy finds no error; SR references the source; lesion study flagged, clean study not"

[ "$(sql "SELECT count(*) FROM findings WHERE above")" = 1 ] || fail "expected exactly one finding above threshold"
[ "$(metric 'secondread_pipeline_reads_total{result="done"}')" = 2 ] || fail "reads metric"
[ "$(metric 'secondread_export_attempts_total{result="sent"}')" = 2 ] || fail "export metric"
pass "findings, read and export metrics"

# A study no rule matches is recorded as unmatched, and nothing is read.
$PY "$IT_REPO/tools/gen_instances.py" "$WORK/ct" --kind ct --count 2 >/dev/null
send "$WORK"/ct/*.dcm >/dev/null 2>&1 || fail "storescu CT"
wait_sql "SELECT count(*) FROM study_routing WHERE status = 'unmatched'" 1 20
[ "$(sql "SELECT count(*) FROM reads")" = 2 ] || fail "an unmatched study was read"
pass "an unmatched CT study is recorded as such and not read"

# Re-sending the lesion study starts no new read (per-instance rule, same instances).
orthanc_send_study "$LESION_ID"
sleep 2
[ "$(sql "SELECT count(*) FROM reads")" = 2 ] || fail "a re-sent study was read twice"
pass "a re-sent study does not duplicate its read"

# No patient data in the node's log at info level.
name=$(manifest "$WORK/lesion/manifest.json" patient_name)
pid=$(manifest "$WORK/lesion/manifest.json" patient_id)
! grep -qF "$name" "$SECONDREAD_LOG" || fail "patient name in the node log"
! grep -qF "$pid" "$SECONDREAD_LOG" || fail "patient id in the node log"
pass "no patient name or ID in the node log"
finish
