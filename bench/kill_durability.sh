#!/usr/bin/env bash
# Durability benchmark: the kill test with many kills (default 1,000).
# Every kill -9 lands at a random moment while storescu streams; after each
# restart every acknowledged instance is checked in the registry and the
# spool, byte for byte. Prints one summary line.
#
#   bench/kill_durability.sh [KILLS] [WORK_DIR]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
kills=${1:-1000}
work=${2:-$(mktemp -d)}
exec "$here/../tests/integration/kill_test.sh" "$work" "$kills"
