#!/usr/bin/env bash
# Integration test: Orthanc forwards a study to secondread over DICOM C-STORE.
#
#   tests/integration/orthanc_forward_test.sh [WORKDIR]
#
# Starts a private secondread node (scripts/dev-up) and a private Orthanc on
# loopback, uploads a generated CT study to Orthanc over REST, asks Orthanc to
# send it to secondread (POST /modalities/secondread/store), then checks
# secondread's registry, spool, association record and metrics.
#
# WORKDIR, when given, is emptied, holds everything and is kept afterwards for inspection;
# otherwise a temporary directory is used and removed. Processes are stopped
# either way.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
# shellcheck source=SCRIPTDIR/lib/orthanc.sh
source "$SCRIPT_DIR/lib/orthanc.sh"

COUNT=${ORTHANC_FORWARD_COUNT:-12}
WAIT_S=60
# Debian's interpreter carries pydicom; another python3 first on PATH may not.
PYDICOM_PYTHON=${PYDICOM_PYTHON:-/usr/bin/python3}
NAME=orthanc_forward_test

if [ $# -ge 1 ]; then
  # A fresh start every run, as the other integration tests do: a node in a
  # reused directory would keep the previous run's registry.
  rm -rf "$1"
  mkdir -p "$1"
  WORK=$(cd "$1" && pwd)
  KEEP_WORK=1
else
  WORK=$(mktemp -d)
  KEEP_WORK=0
fi
NODE="$WORK/node"
ORTHANC_DIR="$WORK/orthanc"
DATA="$WORK/data"
NODE_STARTED=0

pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

cleanup() {
  local rc=$?
  set +e
  if [ "$rc" -ne 0 ]; then
    echo "$NAME: failed (exit $rc); work directory $WORK" >&2
    [ -f "$ORTHANC_DIR/orthanc.log" ] && { echo "--- Orthanc log (tail)" >&2; tail -n 30 "$ORTHANC_DIR/orthanc.log" >&2; }
    [ -f "$NODE/log/secondread.log" ] && { echo "--- secondread log (tail)" >&2; tail -n 30 "$NODE/log/secondread.log" >&2; }
    [ -f "$NODE/log/secondread.stdout" ] && { echo "--- secondread stdout (tail)" >&2; tail -n 10 "$NODE/log/secondread.stdout" >&2; }
  fi
  orthanc_stop "$ORTHANC_DIR"
  if [ "$NODE_STARTED" -eq 1 ]; then
    "$REPO_ROOT/scripts/dev-down" "$NODE" >/dev/null 2>&1
  fi
  if [ "$KEEP_WORK" -eq 0 ]; then
    # dev-up may keep PostgreSQL's data outside DIR (linked as DIR/pg) when
    # the postgres user cannot reach DIR; that directory is ours as well.
    if [ -L "$NODE/pg" ]; then
      local pgreal
      pgreal=$(readlink -f "$NODE/pg")
      case $(basename "$pgreal") in
        secondread-pg.*) rm -rf "$pgreal" ;;
      esac
    fi
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for tool in curl jq psql; do
  command -v "$tool" >/dev/null || fail "$tool is required"
done
"$PYDICOM_PYTHON" -c 'import pydicom' 2>/dev/null || fail "$PYDICOM_PYTHON cannot import pydicom"
orthanc_bin >/dev/null || fail "Orthanc is required"

# 1. The node.
NODE_STARTED=1
"$REPO_ROOT/scripts/dev-up" "$NODE" >"$WORK/dev-up.log" 2>&1 || { cat "$WORK/dev-up.log" >&2; fail "scripts/dev-up failed"; }
# shellcheck disable=SC1091
source "$NODE/env"
pass "secondread is up (AE $SECONDREAD_AE on $SECONDREAD_HOST:$SECONDREAD_DICOM_PORT)"

# 2. Orthanc, knowing secondread as modality "secondread".
orthanc_start "$ORTHANC_DIR" secondread "$SECONDREAD_AE" "$SECONDREAD_HOST" "$SECONDREAD_DICOM_PORT" \
  || fail "Orthanc did not start"
# shellcheck disable=SC2153  # set by orthanc_start
pass "Orthanc is up at $ORTHANC_URL (pid $ORTHANC_PID)"

# 3. Test data, and what it holds.
"$PYDICOM_PYTHON" "$REPO_ROOT/tools/gen_instances.py" "$DATA" --kind ct --count "$COUNT" >/dev/null \
  || fail "could not generate test instances"
"$PYDICOM_PYTHON" - "$DATA" >"$WORK/expected_uids" 3>"$WORK/study_uid" <<'PY' || fail "could not read the generated instances"
import glob, os, sys
import pydicom
studies = set()
uids = []
for p in sorted(glob.glob(os.path.join(sys.argv[1], "*.dcm"))):
    ds = pydicom.dcmread(p, stop_before_pixels=True)
    uids.append(str(ds.SOPInstanceUID))
    studies.add(str(ds.StudyInstanceUID))
if len(studies) != 1:
    sys.exit("expected one study in the generated data, found %d" % len(studies))
for u in sorted(uids):
    print(u)
with os.fdopen(3, "w") as f:
    f.write(studies.pop() + "\n")
PY
sort -o "$WORK/expected_uids" "$WORK/expected_uids"
STUDY_UID=$(cat "$WORK/study_uid")
[ "$(wc -l <"$WORK/expected_uids")" -eq "$COUNT" ] || fail "generated $(wc -l <"$WORK/expected_uids") instances, wanted $COUNT"
pass "generated $COUNT CT instances of study $STUDY_UID"

# 4. Upload to Orthanc.
uploaded=0
for f in "$DATA"/*.dcm; do
  code=$(curl -sS --max-time "$WAIT_S" -o "$WORK/upload.json" -w '%{http_code}' \
    -X POST -H 'Content-Type: application/dicom' --data-binary @"$f" "$ORTHANC_URL/instances") \
    || fail "upload of $(basename "$f") to Orthanc failed"
  [ "$code" = 200 ] || fail "upload of $(basename "$f"): HTTP $code: $(cat "$WORK/upload.json")"
  status=$(jq -r '.Status' "$WORK/upload.json")
  [ "$status" = Success ] || fail "upload of $(basename "$f"): Orthanc status $status"
  uploaded=$((uploaded + 1))
done
[ "$uploaded" -eq "$COUNT" ] || fail "uploaded $uploaded of $COUNT instances"
pass "uploaded $uploaded instances to Orthanc"

# Orthanc keys a study by Patient ID and Study Instance UID together, so data
# whose instances disagree on the Patient ID shows up as several Orthanc
# studies; all of those with the generated Study Instance UID are sent.
curl -fsS --max-time "$WAIT_S" "$ORTHANC_URL/studies" >"$WORK/studies.json" || fail "GET /studies failed"
: >"$WORK/orthanc_studies"
total=0
for id in $(jq -r '.[]' "$WORK/studies.json"); do
  curl -fsS --max-time "$WAIT_S" "$ORTHANC_URL/studies/$id" >"$WORK/study.json" || fail "GET /studies/$id failed"
  [ "$(jq -r '.MainDicomTags.StudyInstanceUID' "$WORK/study.json")" = "$STUDY_UID" ] || continue
  echo "$id" >>"$WORK/orthanc_studies"
  curl -fsS --max-time "$WAIT_S" "$ORTHANC_URL/studies/$id/instances" >"$WORK/study_instances.json" \
    || fail "GET /studies/$id/instances failed"
  total=$((total + $(jq 'length' "$WORK/study_instances.json")))
done
n_studies=$(wc -l <"$WORK/orthanc_studies")
[ "$n_studies" -ge 1 ] || fail "Orthanc holds no study with Study Instance UID $STUDY_UID"
[ "$total" -eq "$COUNT" ] || fail "Orthanc's studies hold $total instances, expected $COUNT"
if [ "$n_studies" -eq 1 ]; then
  pass "Orthanc study $(cat "$WORK/orthanc_studies") holds $COUNT instances"
  STORE_BODY=$(cat "$WORK/orthanc_studies")
else
  echo "NOTE: the generated instances disagree on Patient ID; Orthanc holds them as $n_studies studies"
  pass "Orthanc's $n_studies studies with Study Instance UID $STUDY_UID hold $COUNT instances"
  STORE_BODY=$(jq -Rsc 'split("\n") | map(select(length > 0))' "$WORK/orthanc_studies")
fi

# 5. Orthanc sends the study to secondread (synchronous job).
code=$(curl -sS --max-time $((WAIT_S * 2)) -o "$WORK/store.json" -w '%{http_code}' \
  -X POST --data-binary "$STORE_BODY" "$ORTHANC_URL/modalities/secondread/store") \
  || fail "POST /modalities/secondread/store did not complete"
[ "$code" = 200 ] || fail "POST /modalities/secondread/store: HTTP $code: $(cat "$WORK/store.json")"
failed=$(jq -r '.FailedInstancesCount' "$WORK/store.json")
sent=$(jq -r '.InstancesCount' "$WORK/store.json")
remote=$(jq -r '.RemoteAet' "$WORK/store.json")
[ "$failed" = 0 ] || fail "Orthanc reports $failed failed instances: $(cat "$WORK/store.json")"
[ "$sent" = "$COUNT" ] || fail "Orthanc reports $sent instances sent, expected $COUNT: $(cat "$WORK/store.json")"
[ "$remote" = "$SECONDREAD_AE" ] || fail "Orthanc sent to AE $remote, expected $SECONDREAD_AE"
pass "Orthanc stored $sent instances to $remote (0 failed)"

# 6. secondread's registry.
PSQL=(psql "$SECONDREAD_DATABASE_URL" -v ON_ERROR_STOP=1 -qAt)
"${PSQL[@]}" -c "select sop_instance_uid from instances order by 1" >"$WORK/registered_uids" \
  || fail "could not query the registry"
sort -o "$WORK/registered_uids" "$WORK/registered_uids"
if ! diff -u "$WORK/expected_uids" "$WORK/registered_uids" >"$WORK/uids.diff"; then
  cat "$WORK/uids.diff" >&2
  fail "registry instances differ from the uploaded ones"
fi
pass "registry holds exactly the $COUNT uploaded SOP Instance UIDs"

studies_in_registry=$("${PSQL[@]}" -c "select count(*) from studies where study_instance_uid = '$STUDY_UID'")
[ "$studies_in_registry" = 1 ] || fail "study $STUDY_UID is registered $studies_in_registry times"
pass "registry holds study $STUDY_UID"

# 7. The spool: every registered instance has its file, of the recorded size,
# holding the recorded SOP Instance UID.
"${PSQL[@]}" -F ' ' -c "select sop_instance_uid, spool_name, size_bytes from instances order by 1" >"$WORK/spool_rows"
"$PYDICOM_PYTHON" - "$SECONDREAD_SPOOL" "$WORK/spool_rows" <<'PY' || fail "spool check failed"
import os, sys
import pydicom
spool, rows = sys.argv[1], sys.argv[2]
bad = 0
n = 0
for line in open(rows):
    uid, name, size = line.split()
    n += 1
    path = os.path.join(spool, "objects", name[:2], name + ".dcm")
    if not os.path.isfile(path):
        print("missing spool file %s for %s" % (path, uid), file=sys.stderr); bad += 1; continue
    if os.path.getsize(path) != int(size):
        print("%s: %d bytes, registry says %s" % (path, os.path.getsize(path), size), file=sys.stderr); bad += 1; continue
    ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    if str(ds.SOPInstanceUID) != uid:
        print("%s holds SOP Instance UID %s, registry says %s" % (path, ds.SOPInstanceUID, uid), file=sys.stderr); bad += 1
sys.exit(1 if bad or n == 0 else 0)
PY
pass "every registered instance has its spool file, of the recorded size and UID"

# 8. The association, recorded with Orthanc's calling AE title.
assocs=$("${PSQL[@]}" -c "select count(*) from associations where calling_ae = 'ORTHANC'")
[ "$assocs" -gt 0 ] || fail "no association recorded with calling_ae ORTHANC"
linked=$("${PSQL[@]}" -c "select count(*) from instances i join associations a on a.id = i.association_ref where a.calling_ae = 'ORTHANC'")
[ "$linked" -eq "$COUNT" ] || fail "$linked instances linked to an ORTHANC association, expected $COUNT"
pass "$assocs association(s) recorded with calling_ae ORTHANC, delivering all $COUNT instances"

# 9. Metrics.
curl -fsS --max-time "$WAIT_S" "$SECONDREAD_METRICS_URL" >"$WORK/metrics.txt" || fail "could not read $SECONDREAD_METRICS_URL"
stored=$(awk '$1 == "secondread_scp_instances_stored_total" { print $2 }' "$WORK/metrics.txt")
[ -n "$stored" ] || fail "metric secondread_scp_instances_stored_total is missing"
awk -v v="$stored" -v n="$COUNT" 'BEGIN { exit !(v + 0 >= n + 0) }' \
  || fail "secondread_scp_instances_stored_total is $stored, expected at least $COUNT"
pass "secondread_scp_instances_stored_total is $stored (>= $COUNT)"

echo "$NAME: all checks passed"
