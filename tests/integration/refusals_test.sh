#!/usr/bin/env bash
# Hostile and faulty input gets a clear refusal and leaves nothing behind:
# unknown AE titles, path-traversal and mismatched UIDs, random bytes, an
# association aborted mid-transfer, oversized instances and a disk below its floor.
source "$(dirname "$0")/lib/common.sh"
it_setup "$@"
node_up --set storage.max_instance_bytes=4MiB
GEN="$WORK/gen"
$PY "$IT_REPO/tools/gen_instances.py" "$GEN/ct" --kind ct --count 3 >/dev/null
$PY "$IT_REPO/tools/gen_instances.py" "$GEN/cr" --kind cr --count 1 >/dev/null
CT=$(ls "$GEN"/ct/*.dcm | head -n 1)
CR=$(ls "$GEN"/cr/*.dcm | head -n 1)

assert_nothing_registered() {
  [ "$(sql "select count(*) from instances")" = 0 ] || fail "$1: an instance was registered"
  [ -z "$(find "$SECONDREAD_SPOOL/objects" -type f)" ] || fail "$1: a spool object was left"
  [ -z "$(find "$SECONDREAD_SPOOL/tmp" -type f)" ] || fail "$1: a temp file was left"
}

# Unknown calling AE, and the wrong called AE: association rejected.
SEND_AET=INTRUDER send "$CT" >"$WORK/unknown.log" 2>&1 && fail "unknown AE was accepted"
grep -q "Calling AE Title Not Recognized" "$WORK/unknown.log" || fail "unknown AE: wrong rejection reason"
storescu -aet STORESCU -aec SOMEONE_ELSE 127.0.0.1 "$SECONDREAD_DICOM_PORT" "$CT" >"$WORK/called.log" 2>&1 &&
  fail "wrong called AE was accepted"
grep -q "Called AE Title Not Recognized" "$WORK/called.log" || fail "wrong called AE: wrong rejection reason"
[ "$(metric 'secondread_scp_associations_total{result="rejected"}')" -ge 2 ] || fail "rejections not counted"
grep -q '"event":"association_rejected"' "$SECONDREAD_LOG" || fail "rejection not logged"
assert_nothing_registered "unknown AE"
pass "unknown calling AE and wrong called AE rejected"

# Path-traversal UIDs, in the request and the dataset alike.
for uid in "1.2.3/../../x" ".." "../../../../tmp/evil"; do
  cp "$CT" "$WORK/traversal.dcm"
  dcmodify -nb -m "(0008,0018)=$uid" "$WORK/traversal.dcm" >/dev/null 2>&1  # meta follows the dataset
  SEND_OPTS=-v send "$WORK/traversal.dcm" >"$WORK/trav.log" 2>&1 && fail "traversal UID '$uid' stored"
  grep -q "Store Response (Error: CannotUnderstand)" "$WORK/trav.log" || fail "traversal UID '$uid': no C000"
done
[ ! -e "$SECONDREAD_SPOOL/../x" ] && [ ! -e /tmp/evil ] || fail "a file escaped the spool"
assert_nothing_registered "traversal"
[ "$(metric 'secondread_scp_instances_refused_total{reason="invalid_uid"}')" -ge 3 ] || fail "invalid_uid not counted"
pass "path-traversal UIDs refused with C000"

# Request UID differs from the dataset's.
status=$("$STORE_PROBE" 127.0.0.1 "$SECONDREAD_DICOM_PORT" STORESCU SECONDREAD "$CT" 1.2.826.0.1.3680043.10.1139.999)
[ "$status" = A900 ] || fail "mismatched UID answered $status, expected A900"
status=$("$STORE_PROBE" 127.0.0.1 "$SECONDREAD_DICOM_PORT" STORESCU SECONDREAD "$CT" "1.2.3/../x")
[ "$status" = C000 ] || fail "invalid request UID answered $status, expected C000"
assert_nothing_registered "mismatch"
pass "mismatched SOP Instance UID refused with A900"

# Random bytes at the port, then the node still works.
for n in 1 2 3; do send_raw "os.urandom(4096 * $n)"; done
# A PDU header claiming a huge A-ASSOCIATE-RQ.
send_raw 'b"\x01\x00" + struct.pack(">I", 0x7fffffff) + b"\x00\x01\x00\x00"'
echoscu -aet STORESCU -aec SECONDREAD 127.0.0.1 "$SECONDREAD_DICOM_PORT" || fail "node dead after random bytes"
kill -0 "$SECONDREAD_PID" || fail "node process died"
pass "random bytes and malformed PDUs survived"

# An association aborted mid-PDU: kill the sender while a 10 MiB instance is
# in flight, with Nagle off and small PDUs so the cut lands inside a PDU.
for attempt in 1 2 3; do
  storescu --max-pdu 16384 -aet STORESCU -aec SECONDREAD 127.0.0.1 "$SECONDREAD_DICOM_PORT" "$CR" \
    >/dev/null 2>&1 &
  spid=$!
  sleep 0.0$((attempt * 3))
  kill -9 "$spid" 2>/dev/null || true
  wait "$spid" 2>/dev/null || true
done
sleep 1
echoscu -aet STORESCU -aec SECONDREAD 127.0.0.1 "$SECONDREAD_DICOM_PORT" || fail "node dead after aborts"
assert_nothing_registered "abort"
pass "aborted associations leave no half files and no rows"

# Over the size limit (4 MiB configured): A700, nothing written.
SEND_OPTS=-v send "$CR" >"$WORK/big.log" 2>&1 && fail "oversized instance stored"
grep -q "Store Response (Refused: OutOfResources)" "$WORK/big.log" || { cat "$WORK/big.log"; fail "oversize: no A700"; }
[ "$(metric 'secondread_scp_instances_refused_total{reason="too_large"}')" -ge 1 ] || fail "too_large not counted"
assert_nothing_registered "oversize"
pass "oversized instance refused with A700"

# Unparsable dataset (valid request UIDs, garbage body).
$PY - "$CT" "$WORK/garbage.dcm" <<'PYEOF'
import sys
src = open(sys.argv[1], "rb").read()
# Keep preamble and meta, corrupt the dataset with an impossible element length.
import struct
end = 144 + struct.unpack("<I", src[140:144])[0]
body = bytearray(src[end:end + 64]) + b"\x08\x00\x20\x00DA\xff\x7f" + b"\x00" * 32
open(sys.argv[2], "wb").write(src[:end] + bytes(body))
PYEOF
send "$WORK/garbage.dcm" >/dev/null 2>&1 || true
assert_nothing_registered "garbage"
pass "unparsable dataset not registered"

# Disk below the floor: every store refused with A700, not ready.
node_restart --set storage.min_free_bytes=1000000TiB
SEND_OPTS=-v send "$CT" >"$WORK/floor.log" 2>&1 && fail "stored below the disk floor"
grep -q "Store Response (Refused: OutOfResources)" "$WORK/floor.log" || { cat "$WORK/floor.log"; fail "floor: no A700"; }
[ "$(metric 'secondread_scp_instances_refused_total{reason="disk_floor"}')" = 1 ] || fail "disk_floor not counted"
code=$(curl -s -o /dev/null -w '%{http_code}' "${SECONDREAD_METRICS_URL%/metrics}/readyz")
[ "$code" = 503 ] || fail "readyz answered $code below the floor"
assert_nothing_registered "disk floor"
pass "disk below floor refused with A700 and not ready"

# And with sane settings the same files go through.
node_restart
send "$GEN"/ct/*.dcm >/dev/null 2>&1 || fail "normal store failed after refusals"
[ "$(sql "select count(*) from instances")" = 3 ] || fail "normal store incomplete"
pass "node stores normally afterwards"
finish
