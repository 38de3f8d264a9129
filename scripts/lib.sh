# Shared helpers for the scripts; sourced, not run.
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${SECONDREAD_BUILD_DIR:-$REPO_ROOT/build}"
SECONDREAD_BIN="${SECONDREAD_BIN:-$BUILD_DIR/cmd/secondread/secondread}"
# Debian's interpreter, which has python3-pydicom.
PY=/usr/bin/python3

pg_bin() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$d" ] || { echo "PostgreSQL server binaries not found; run scripts/bootstrap" >&2; return 1; }
  echo "$d"
}

# Prints a free TCP port on 127.0.0.1, reserved against every other caller.
free_port() {
  $PY "$REPO_ROOT/scripts/lib/free_port.py"
}

# Runs a command as the postgres user when we are root (initdb refuses root).
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

wait_http_ok() {  # url timeout_s
  local url=$1 deadline=$(( $(date +%s) + $2 ))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    if curl -fsS -o /dev/null "$url" 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  return 1
}
