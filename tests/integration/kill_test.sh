#!/usr/bin/env bash
# kill -9 the node at random moments while storescu streams instances; after
# each restart every instance storescu saw acknowledged with Success must be
# registered and in the spool, byte-identical to what was sent.
#
#   kill_test.sh [WORK_DIR] [KILLS]      (CI runs 20; the benchmark 1000)
source "$(dirname "$0")/lib/common.sh"
it_setup "${1:-}"
KILLS=${2:-20}
node_up
GEN="$WORK/gen"
$PY "$IT_REPO/tools/gen_instances.py" "$GEN" --kind ct --count 60 >/dev/null
mapfile -t files < <(ls "$GEN"/*.dcm)
declare -A SHA UID_OF
for f in "${files[@]}"; do
  SHA[$f]=$(dataset_sha "$f")
  UID_OF[$f]=$(dicom_uid "$f")
done

declare -A ACKED
total_acked=0
checked=0
start=$(date +%s)
for ((k = 1; k <= KILLS; k++)); do
  SEND_OPTS="-v --no-halt" send "${files[@]}" >"$WORK/stream.log" 2>&1 &
  spid=$!
  # A random moment within the first ~0.3 s of the stream.
  sleep "0.$(printf '%03d' $((RANDOM % 300)))"
  kill -9 "$SECONDREAD_PID" 2>/dev/null || true
  wait "$spid" 2>/dev/null || true
  while IFS= read -r f; do
    ACKED[$f]=1
    total_acked=$((total_acked + 1))
  done < <(awk '/Sending file:/ { f = $NF } /Received Store Response \(Success\)/ { print f }' "$WORK/stream.log")
  "$IT_REPO/scripts/dev-up" "$NODE" --node-only >/dev/null
  source "$NODE/env"
  # Every instance ever acknowledged must be present and intact: one query
  # and one hashing pass per kill keep a 1,000-kill run affordable.
  for f in "${!ACKED[@]}"; do echo "${UID_OF[$f]} ${SHA[$f]}"; done >"$WORK/acked.txt"
  sql "select sop_instance_uid || ' ' || spool_name from instances" >"$WORK/rows.txt"
  n=$($PY - "$WORK/acked.txt" "$WORK/rows.txt" "$SECONDREAD_SPOOL" <<'PYEOF'
import hashlib, struct, sys
acked = [l.split() for l in open(sys.argv[1]) if l.strip()]
rows = dict(l.split() for l in open(sys.argv[2]) if l.strip())
for uid, sha in acked:
    name = rows.get(uid)
    if name is None:
        sys.exit("acknowledged %s has no row" % uid)
    try:
        data = open("%s/objects/%s/%s.dcm" % (sys.argv[3], name[:2], name), "rb").read()
    except OSError:
        sys.exit("acknowledged %s has no spool file" % uid)
    end = 144 + struct.unpack("<I", data[140:144])[0]
    if hashlib.sha256(data[end:]).hexdigest() != sha:
        sys.exit("spool copy of %s differs from what was sent" % uid)
print(len(acked))
PYEOF
) || fail "kill $k: see above"
  checked=$((checked + n))
  [ -z "$(find "$SECONDREAD_SPOOL/tmp" -type f -name '*.part')" ] || fail "kill $k: temp files survived recovery"
done
elapsed=$(( $(date +%s) - start ))
recovered=$(grep -a '"event":"spool_recovered"' "$SECONDREAD_LOG" | $PY -c '
import json, sys
print(sum(json.loads(l)["registered"] for l in sys.stdin))')
echo "kill_test: kills=$KILLS acknowledged_successes=$total_acked distinct_acknowledged=${#ACKED[@]} checks=$checked lost=0 rows_recovered_from_spool=$recovered seconds=$elapsed"
pass "$KILLS kills, no acknowledged instance lost or altered"
finish
