# shellcheck shell=bash
# Helpers that run a private Orthanc for integration tests; sourced, not run.
#
#   orthanc_start DIR NAME AET HOST PORT
#       Writes DIR/orthanc.json and starts Orthanc in the background with its
#       storage, index and log under DIR. One DICOM modality NAME (AET at
#       HOST:PORT) is configured. Sets ORTHANC_URL and ORTHANC_PID and writes
#       DIR/orthanc.pid. Returns non-zero if Orthanc does not answer /system.
#   orthanc_stop DIR
#       Stops the Orthanc whose PID is in DIR/orthanc.pid.
#
# Orthanc 1.10 has no option to choose the listening address: its HTTP server
# listens on every interface, so RemoteAccessAllowed=false makes it refuse any
# client but loopback. Its DICOM server is off unless ORTHANC_DICOM=1 (Orthanc
# as the PACS that receives results); then it listens on ORTHANC_DICOM_PORT,
# also on every interface, and only this machine's loopback clients use it.
# ORTHANC_DICOM_PORT may be preset to restart an Orthanc on the same port.
# ORTHANC_EXTRA_CONFIG may name a JSON file whose top-level keys are merged
# into the configuration last (DICOM TLS settings, modalities with
# "UseDicomTls").

ORTHANC_START_TIMEOUT=${ORTHANC_START_TIMEOUT:-60}

orthanc_bin() {
  if [ -n "${ORTHANC_BIN:-}" ]; then echo "$ORTHANC_BIN"; return 0; fi
  local b
  b=$(PATH="$PATH:/usr/sbin:/sbin" command -v Orthanc 2>/dev/null) || true
  [ -n "$b" ] || { echo "Orthanc not found (install the orthanc package or set ORTHANC_BIN)" >&2; return 1; }
  echo "$b"
}

orthanc_free_port() {
  python3 "$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)/scripts/lib/free_port.py"
}

orthanc_start() {  # dir name aet host port
  local dir=$1 name=$2 aet=$3 host=$4 port=$5 bin http_port dicom_port
  bin=$(orthanc_bin) || return 1
  mkdir -p "$dir/storage" "$dir/index"
  http_port=${ORTHANC_HTTP_PORT:-$(orthanc_free_port)}
  dicom_port=${ORTHANC_DICOM_PORT:-$(orthanc_free_port)}
  ORTHANC_DICOM_PORT=$dicom_port
  ORTHANC_HTTP_PORT=$http_port
  python3 - "$dir" "$http_port" "$dicom_port" "$name" "$aet" "$host" "$port" "${ORTHANC_DICOM:-0}" \
    "${ORTHANC_EXTRA_CONFIG:-}" <<'PY'
import json, os, sys
d, http_port, dicom_port, name, aet, host, port, dicom, extra = sys.argv[1:]
cfg = {
    "Name": "secondread-test",
    "StorageDirectory": os.path.join(d, "storage"),
    "IndexDirectory": os.path.join(d, "index"),
    "StorageCompression": False,
    "Plugins": [],
    "LuaScripts": [],
    "HttpServerEnabled": True,
    "HttpPort": int(http_port),
    "HttpThreadsCount": 8,
    "RemoteAccessAllowed": False,
    "AuthenticationEnabled": False,
    "SslEnabled": False,
    "DicomServerEnabled": dicom == "1",
    "DicomAet": "ORTHANC",
    "DicomPort": int(dicom_port),
    "DicomCheckCalledAet": False,
    "DicomModalitiesInDatabase": False,
    "DicomModalities": {name: [aet, host, int(port)]},
    "DicomScuTimeout": 60,
    "ConcurrentJobs": 1,
    "SaveJobs": False,
    "JobsHistorySize": 10,
    "ExecuteLuaEnabled": False,
    # A re-sent result object (same UID) replaces the stored one, as a PACS
    # configured for AI results should.
    "OverwriteInstances": dicom == "1",
}
if extra:
    with open(extra) as f:
        cfg.update(json.load(f))
with open(os.path.join(d, "orthanc.json"), "w") as f:
    json.dump(cfg, f, indent=2)
PY
  "$bin" "$dir/orthanc.json" >"$dir/orthanc.log" 2>&1 </dev/null &
  ORTHANC_PID=$!
  echo "$ORTHANC_PID" >"$dir/orthanc.pid"
  ORTHANC_URL="http://127.0.0.1:$http_port"
  local deadline=$(( $(date +%s) + ORTHANC_START_TIMEOUT ))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    if ! kill -0 "$ORTHANC_PID" 2>/dev/null; then
      echo "Orthanc exited during start-up; its log:" >&2
      tail -n 30 "$dir/orthanc.log" >&2 || true
      return 1
    fi
    if curl -fsS -o /dev/null --max-time 5 "$ORTHANC_URL/system" 2>/dev/null; then return 0; fi
    sleep 0.3
  done
  echo "Orthanc did not answer $ORTHANC_URL/system within ${ORTHANC_START_TIMEOUT}s; its log:" >&2
  tail -n 30 "$dir/orthanc.log" >&2 || true
  return 1
}

orthanc_stop() {  # dir
  local dir=$1 pid
  [ -f "$dir/orthanc.pid" ] || return 0
  pid=$(cat "$dir/orthanc.pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  fi
  # Reap it when it is a child of this shell.
  wait "$pid" 2>/dev/null || true
  rm -f "$dir/orthanc.pid"
}

# Orthanc as the sender: the files uploaded to it, then sent to a configured
# modality by a store job (one association per job), as a PACS routes.
# Uploads the files; prints the Orthanc instance ids, in file order.
upload_ids() {  # file...
  local f
  for f in "$@"; do
    curl -fsS -X POST "$ORTHANC_URL/instances" --data-binary "@$f" |
      $PY -c 'import json,sys; print(json.load(sys.stdin)["ID"])'
  done
}
# Starts a store job of the given instances to a modality; prints the job id.
store_job() {  # modality ids...
  local modality=$1; shift
  $PY - "$ORTHANC_URL" "$modality" "$@" <<'PY'
import json, sys, urllib.request
base, modality, ids = sys.argv[1], sys.argv[2], sys.argv[3:]
req = urllib.request.Request("%s/modalities/%s/store" % (base, modality),
                             data=json.dumps({"Resources": ids, "Synchronous": False}).encode(), method="POST")
print(json.load(urllib.request.urlopen(req, timeout=30))["ID"])
PY
}
# Waits for a job to end; prints Success, Failure or timeout (after 120 s).
wait_job() {  # job-id
  local s
  for _ in $(seq 1 600); do
    s=$(curl -fsS "$ORTHANC_URL/jobs/$1" | $PY -c 'import json,sys; print(json.load(sys.stdin)["State"])')
    case $s in Success|Failure) echo "$s"; return 0 ;; esac
    sleep 0.2
  done
  echo timeout
}
