#!/usr/bin/env bash
# Runs a test executable against a private, migrated PostgreSQL server.
#   with_postgres.sh WORK_DIR EXECUTABLE [ARGS...]
# The server listens on a free loopback port; its URL is passed in
# SECONDREAD_TEST_DATABASE_URL (and SECONDREAD_TEST_PG_ENV names pg.env, for
# tests that stop and start the server). It is stopped afterwards.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
WORK=$1; shift
rm -rf "$WORK"; mkdir -p "$WORK"
cleanup() {
  local rc=$?
  "$REPO/scripts/dev-down" "$WORK" >/dev/null 2>&1 || true
  if [ -L "$WORK/pg" ]; then
    real=$(readlink -f "$WORK/pg")
    case "$real" in /tmp/secondread-pg.*) rm -rf "$real" ;; esac
  fi
  exit $rc
}
trap cleanup EXIT
"$REPO/scripts/dev-up" "$WORK" --db-only >/dev/null
# shellcheck disable=SC1091
source "$WORK/pg.env"
export SECONDREAD_TEST_DATABASE_URL=$SECONDREAD_DATABASE_URL SECONDREAD_TEST_PG_ENV=$WORK/pg.env
"$@"
