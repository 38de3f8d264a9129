#!/usr/bin/env bash
# Thousands of short associations, ten at a time, leave the node's memory
# flat: each association's thread gives its stack back when it ends. A node
# that kept every ended thread's stack grew by tens of kilobytes of RSS and
# two address-space mappings (stack and guard page) per association.
source "$(dirname "$0")/lib/common.sh"
it_setup "$@"
# Room above the ten concurrent associations for a loaded machine, where a
# released association's socket may close a little after the client has
# opened its next one.
node_up --set dicom.max_associations=64
SOAK=${ASSOC_SOAK:-$BUILD_DIR/tests/assoc_soak}
TOTAL=${SOAK_ASSOCIATIONS:-3000}
PID=$(cat "$NODE/secondread.pid")
$PY "$IT_REPO/tools/gen_instances.py" "$WORK/gen" --kind ct --count 1 >/dev/null
FILE=$(ls "$WORK"/gen/*.dcm)

# One C-STORE in 20 associations, the rest C-ECHO; samples every 500:
#   associations rss_kb vm_kb mappings
"$SOAK" 127.0.0.1 "$SECONDREAD_DICOM_PORT" SECONDREAD "$TOTAL" 10 --pid "$PID" --sample-every 500 \
  --store "$FILE" --store-every 20 >"$WORK/soak.txt" 2>"$WORK/soak.err" ||
  { cat "$WORK/soak.err" >&2; fail "associations failed"; }
cat "$WORK/soak.txt"
kill -0 "$PID" || fail "the node died"
read -r _ rss_early _ maps_early < <(awk '$1 == 500' "$WORK/soak.txt")
read -r n rss_end _ maps_end < <(tail -n 1 "$WORK/soak.txt")
[ "$n" = "$TOTAL" ] || fail "the soak ended after $n associations"
pass "$TOTAL associations (C-ECHO and C-STORE, 10 at a time) all succeeded"

# The bound is generous for allocator noise on a loaded machine; the old
# growth over 2,500 associations was about 90 MB (36.6 KB each).
growth_kb=$((rss_end - rss_early))
[ "$growth_kb" -lt 12288 ] || fail "RSS grew by $growth_kb kB from association 500 to $TOTAL"
pass "RSS grew by $growth_kb kB from association 500 to $TOTAL (bound 12 MB)"
[ $((maps_end - maps_early)) -lt 200 ] ||
  fail "mappings grew from $maps_early to $maps_end: ended threads keep their stacks"
pass "address-space mappings stay flat ($maps_early -> $maps_end)"
[ "$(sql "select count(*) from instances")" = 1 ] || fail "the re-sent instance is not registered once"
pass "the re-sent instance is registered once"
finish
