# Shared helpers for integration tests; sourced by each *_test.sh.
# Usage in a test:  source "$(dirname "$0")/lib/common.sh"; it_setup "$@"
set -euo pipefail
# Under pipefail, `producer | grep -q x` fails when grep stops at its first
# match while the producer still writes (SIGPIPE). A grep that ends a
# pipeline therefore reads everything (`grep x >/dev/null`), and long
# output (container logs) is written to a file first.
IT_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
source "$IT_REPO/scripts/lib.sh"
export TCP_NODELAY=1
TEST_NAME=$(basename "$0" .sh)
TEST_DATA=/usr/lib/python3/dist-packages/pydicom/data/test_files
STORE_PROBE=${STORE_PROBE:-$BUILD_DIR/tests/store_probe}
PASSED=0

it_setup() {  # [WORK_DIR]
  WORK=${1:-$(mktemp -d)}
  rm -rf "$WORK"
  mkdir -p "$WORK"
  NODE="$WORK/node"
  trap it_cleanup EXIT
}

# Shell commands to run at exit before the common cleanup, e.g. stopping a
# helper process the test started itself.
it_also_on_exit() {  # commands
  IT_EXIT_EXTRA=$1
}

it_cleanup() {
  local rc=$?
  # A failing step must not end the cleanup early: under errexit it would
  # leave the node, the workers and PostgreSQL running.
  set +e
  if [ -n "${IT_EXIT_EXTRA:-}" ]; then eval "$IT_EXIT_EXTRA"; fi
  if [ -f "${WORK:-}/worker/worker.pid" ]; then
    kill -TERM "$(cat "$WORK/worker/worker.pid")" 2>/dev/null || true
  fi
  [ -n "${NODE:-}" ] && "$IT_REPO/scripts/dev-down" "$NODE" >/dev/null 2>&1
  # dev-up keeps PostgreSQL's data outside DIR when the server user cannot
  # reach DIR; that copy is the test's to remove.
  if [ -L "${NODE:-}/pg" ]; then
    local real
    real=$(readlink -f "$NODE/pg")
    case "$real" in /tmp/secondread-pg.*) rm -rf "$real" ;; esac
  fi
  if [ $rc -ne 0 ]; then
    echo "---- $TEST_NAME failed; last node log lines:" >&2
    tail -n 30 "$NODE/log/secondread.log" >&2 2>/dev/null || true
    tail -n 30 "$WORK/worker/log/worker.log" >&2 2>/dev/null || true
  fi
  exit $rc
}

node_up() {  # [dev-up args...]
  # Tests that read studies set IT_WORKER=1; the others need no worker.
  local worker=(--no-worker)
  [ "${IT_WORKER:-0}" = 1 ] && worker=()
  "$IT_REPO/scripts/dev-up" "$NODE" "${worker[@]}" "$@" >/dev/null
  # shellcheck disable=SC1091
  source "$NODE/env"
}

# Starts a worker in $WORK/worker (scripts/worker-up arguments) and loads its
# endpoints into the environment.
worker_up() {
  "$IT_REPO/scripts/worker-up" "$WORK/worker" "$@" >/dev/null
  # shellcheck disable=SC1091
  source "$WORK/worker/worker.env"
}

node_restart() {  # [dev-up args...]
  local pid
  pid=$(cat "$NODE/secondread.pid")
  kill -TERM "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  "$IT_REPO/scripts/dev-up" "$NODE" --node-only "$@" >/dev/null
  source "$NODE/env"
}

# Starts the recording gRPC proxy (integration/tools/infer_recorder.cc) in
# front of the worker at SECONDREAD_WORKER_ADDR. It keeps every request in
# $WORK/requests.bin and lists each image sent in $WORK/images.txt; the node
# reaches it at RECORDER_ADDR. The caller stops REC_PID at exit.
recorder_up() {
  local recorder=${INFER_RECORDER:-$BUILD_DIR/tests/infer_recorder}
  "$recorder" --listen 127.0.0.1:0 --upstream "$SECONDREAD_WORKER_ADDR" --out "$WORK/requests.bin" \
    --images "$WORK/images.txt" --port-file "$WORK/recorder.port" >"$WORK/recorder.log" 2>&1 &
  REC_PID=$!
  for _ in $(seq 1 300); do [ -s "$WORK/recorder.port" ] && break; sleep 0.1; done
  [ -s "$WORK/recorder.port" ] || fail "the recorder did not start"
  RECORDER_ADDR="127.0.0.1:$(cat "$WORK/recorder.port")"
}

fail() { echo "FAIL [$TEST_NAME]: $*" >&2; exit 1; }
pass() { PASSED=$((PASSED + 1)); echo "PASS [$TEST_NAME]: $*"; }
finish() { echo "$TEST_NAME: $PASSED passed, 0 failed"; }

sql() { psql "$SECONDREAD_DATABASE_URL" -qAt -v ON_ERROR_STOP=1 -c "$1"; }

# storescu as a PACS would run it: Nagle off, 128 KiB PDU. Extra storescu
# options go in SEND_OPTS; the arguments are files.
send() {  # files...
  # shellcheck disable=SC2086
  storescu --max-pdu 131072 -aet "${SEND_AET:-STORESCU}" -aec SECONDREAD ${SEND_OPTS:-} \
    127.0.0.1 "$SECONDREAD_DICOM_PORT" "$@"
}

metric() {  # name-with-labels -> value (0 when absent)
  curl -fsS "$SECONDREAD_METRICS_URL" | awk -v m="$1" '$1 == m { print $2; found=1 } END { if (!found) print 0 }'
}

dicom_uid() {  # file -> SOP Instance UID
  dcmdump -q +P 0008,0018 "$1" | sed -n 's/.*\[\(.*\)\].*/\1/p' | head -n 1
}

spool_path() {  # spool_name -> path
  echo "$SECONDREAD_SPOOL/objects/${1:0:2}/$1.dcm"
}

# The dataset bytes of a Part 10 file: everything after the meta group.
dataset_sha() {
  $PY - "$1" <<'PYEOF'
import hashlib, struct, sys
data = open(sys.argv[1], "rb").read()
assert data[128:132] == b"DICM", "not a Part 10 file"
assert data[132:136] == b"\x02\x00\x00\x00", "meta group length missing"
end = 144 + struct.unpack("<I", data[140:144])[0]
print(hashlib.sha256(data[end:]).hexdigest())
PYEOF
}

# Sends raw bytes to the DICOM port and reads whatever comes back. The payload
# is a Python expression (os and struct are imported).
send_raw() {  # python-payload-expression
  $PY - "$SECONDREAD_DICOM_PORT" "$1" <<'PYEOF'
import os, socket, struct, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
try:
    s.sendall(eval(sys.argv[2]))
    s.settimeout(3)
    s.recv(1024)
except OSError:
    pass
s.close()
PYEOF
}
