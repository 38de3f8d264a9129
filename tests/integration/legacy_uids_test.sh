#!/usr/bin/env bash
# Archives hold UIDs that break PS3.5 9.1 in harmless ways: a component with
# a leading zero (a real 1990s XA study), an empty component. storescu sends
# them as they are (space pads are covered by the unit tests: DCMTK's tools
# strip them before sending); the node stores and registers
# them under the value the PACS knows, logs each at warn level without the UID
# itself, and counts them. A UID with a character no UID holds is refused.
source "$(dirname "$0")/lib/common.sh"
it_setup "$@"
node_up
$PY "$IT_REPO/tools/gen_instances.py" "$WORK/gen" --kind cr --count 3 >/dev/null
mapfile -t FILES < <(ls "$WORK"/gen/*.dcm)

STUDY="1.2.840.113619.2.1.1.0322.12"
SOP1="1.2.826.0.1.3680043.10.1139.07.1"
SOP2="1.2.826.0.1.3680043.10.1139.1..2"
SERIES="1.2.826.0.1.3680043.10.1139.3.04"
dcmodify -nb -m "(0020,000d)=$STUDY" -m "(0020,000e)=$SERIES" -m "(0008,0018)=$SOP1" "${FILES[0]}" >/dev/null 2>&1
dcmodify -nb -m "(0020,000d)=$STUDY" -m "(0020,000e)=$SERIES" -m "(0008,0018)=$SOP2" "${FILES[1]}" >/dev/null 2>&1
dcmodify -nb -m "(0008,0018)=1.2.826.0.1.3680043.10.1139.5x" "${FILES[2]}" >/dev/null 2>&1
[ "$(dicom_uid "${FILES[0]}")" = "$SOP1" ] || fail "the generator did not write the legacy UID"

send "${FILES[0]}" "${FILES[1]}" >"$WORK/legacy.log" 2>&1 || { cat "$WORK/legacy.log"; fail "legacy UIDs were refused"; }
[ "$(sql "SELECT count(*) FROM instances i JOIN series se ON se.id = i.series_ref JOIN studies st ON st.id = se.study_ref
          WHERE st.study_instance_uid = '$STUDY' AND se.series_instance_uid = '$SERIES'
            AND i.sop_instance_uid IN ('$SOP1', '$SOP2')")" = 2 ] ||
  fail "legacy instances not registered under their UIDs: $(sql "SELECT sop_instance_uid FROM instances")"
for name in $(sql "SELECT spool_name FROM instances"); do
  [ -f "$(spool_path "$name")" ] || fail "a legacy instance is missing from the spool"
done
pass "instances with leading-zero study, series and instance UIDs and an empty component are stored and registered"

[ "$(metric 'secondread_scp_legacy_uids_total{attribute="study",quirk="leading_zero"}')" = 2 ] || fail "study quirk not counted"
[ "$(metric 'secondread_scp_legacy_uids_total{attribute="series",quirk="leading_zero"}')" = 2 ] || fail "series quirk not counted"
[ "$(metric 'secondread_scp_legacy_uids_total{attribute="sop_instance",quirk="leading_zero"}')" = 1 ] || fail "leading zero not counted"
[ "$(metric 'secondread_scp_legacy_uids_total{attribute="sop_instance",quirk="empty_component"}')" = 1 ] ||
  fail "empty component not counted"
grep -q '"event":"legacy_uid_accepted"' "$SECONDREAD_LOG" || fail "legacy UIDs not logged"
grep -q "$STUDY\|0322" "$SECONDREAD_LOG" && fail "a UID appears in the log"
pass "each legacy UID is counted by attribute and quirk and logged at warn level without the UID"

SEND_OPTS=-v send "${FILES[2]}" >"$WORK/bad.log" 2>&1 && fail "a UID with a letter was stored"
grep -q "Store Response (Error: CannotUnderstand)" "$WORK/bad.log" || fail "a UID with a letter: no C000"
[ "$(sql "SELECT count(*) FROM instances")" = 2 ] || fail "the refused instance was registered"
pass "a UID holding a letter is still refused with C000"
finish
