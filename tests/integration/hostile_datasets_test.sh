#!/usr/bin/env bash
# Data sets built to break a parser are refused with a status while the node
# keeps serving, as the same process: sequences nested 100,000 levels deep
# (CVE-2026-44031 in DCMTK 3.6.7's recursive parser), a value length past the
# end of the data, more elements than the limit, and a deflate bomb that
# inflates past the instance size limit. tools/raw_store.py sends the raw
# bytes; a DCMTK or pydicom sender could not build them.
source "$(dirname "$0")/lib/common.sh"
it_setup "$@"
RAW="$PY $IT_REPO/tests/integration/tools/raw_store.py"
node_up --set storage.max_instance_bytes=8MiB --set dicom.limits.max_elements=1000
PID=$(cat "$NODE/secondread.pid")

raw() {  # kind [options] -> status
  $RAW 127.0.0.1 "$SECONDREAD_DICOM_PORT" STORESCU SECONDREAD "$@"
}
refused() {  # reason -> count
  metric "secondread_scp_instances_refused_total{reason=\"$1\"}"
}
still_serving() {  # what
  kill -0 "$PID" 2>/dev/null || fail "$1: the node died"
  [ "$(cat "$NODE/secondread.pid")" = "$PID" ] || fail "$1: the node was restarted"
  echoscu -aet STORESCU -aec SECONDREAD 127.0.0.1 "$SECONDREAD_DICOM_PORT" >/dev/null 2>&1 || fail "$1: C-ECHO failed"
}
nothing_kept() {  # what
  [ "$(sql "SELECT count(*) FROM instances")" = 0 ] || fail "$1: an instance was registered"
  [ -z "$(find "$SECONDREAD_SPOOL/objects" "$SECONDREAD_SPOOL/tmp" -type f)" ] || fail "$1: a file was kept"
}

[ "$(raw deep --count 100000)" = C000 ] || fail "deep nesting was not refused with C000"
still_serving "deep nesting"
nothing_kept "deep nesting"
[ "$(refused nesting_too_deep)" = 1 ] || fail "nesting_too_deep not counted"
grep -q '"event":"dataset_structure_refused".*"problem":"nesting_too_deep"' "$SECONDREAD_LOG" ||
  fail "deep nesting not logged"
pass "a data set nested 100,000 levels deep is refused with C000 and the node serves on as the same process"

[ "$(raw deep --count 64)" = 0000 ] || fail "64 levels of nesting were refused"
[ "$(raw deep --count 65)" = C000 ] || fail "65 levels of nesting were accepted"
pass "64 levels are stored, 65 refused"
sql "DELETE FROM instances" >/dev/null
find "$SECONDREAD_SPOOL/objects" -type f -delete

[ "$(raw lying --size 1000000)" = C000 ] || fail "a lying length was not refused with C000"
[ "$(refused length_beyond_data)" = 1 ] || fail "length_beyond_data not counted"
still_serving "lying length"
nothing_kept "lying length"
pass "a value length a megabyte past the data is refused with C000"

[ "$(raw elements --count 990)" = 0000 ] || fail "a data set under the element limit was refused"
[ "$(raw elements --count 1000)" = A700 ] || fail "a data set over the element limit was not refused with A700"
[ "$(refused too_many_elements)" = 1 ] || fail "too_many_elements not counted"
still_serving "element count"
pass "the element limit holds (990 + 7 stored, 1000 + 7 refused with A700)"
sql "DELETE FROM instances" >/dev/null
find "$SECONDREAD_SPOOL/objects" -type f -delete

before=$(refused too_large)
[ "$(raw bomb --size $((512 << 20)))" = A700 ] || fail "a deflate bomb was not refused with A700"
[ "$(refused too_large)" = $((before + 1)) ] || fail "the deflate bomb was not counted as too_large"
still_serving "deflate bomb"
nothing_kept "deflate bomb"
[ "$(raw bomb --size $((1 << 20)))" = 0000 ] || fail "a deflated data set within the limit was refused"
pass "a deflated data set inflating to 512 MiB is refused with A700; one inflating to 1 MiB is stored"

[ "$(raw plain)" = 0000 ] || fail "a plain instance after all that was refused"
pass "an ordinary instance is stored afterwards"
finish
