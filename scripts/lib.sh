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

# A private, migrated PostgreSQL in DIR for a benchmark (dev-up --db-only);
# sets SECONDREAD_DATABASE_URL. private_db_down stops whatever dev-up started
# in DIR, removes the server's data where dev-up kept it outside DIR, and DIR.
private_db_up() {  # dir
  "$REPO_ROOT/scripts/dev-up" "$1" --db-only --no-worker >/dev/null
  # shellcheck disable=SC1091
  source "$1/pg.env"
}
private_db_down() {  # dir
  "$REPO_ROOT/scripts/dev-down" "$1" >/dev/null 2>&1 || true
  if [ -L "$1/pg" ]; then
    local real
    real=$(readlink -f "$1/pg")
    case "$real" in /tmp/secondread-pg.*) rm -rf "$real" ;; esac
  fi
  rm -rf "$1"
}
