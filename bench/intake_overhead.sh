#!/usr/bin/env bash
# What the results pipeline's intake costs the C-STORE path: the same node and
# the same instances, with the intake trigger on `instances` enabled and
# disabled in turn (ALTER TABLE ... DISABLE TRIGGER), alternating, in one run.
# The tracker runs in both cases; no worker and no routing rule, so nothing is
# read, and only the trigger's row and NOTIFY differ.
#
#   bench/intake_overhead.sh [COUNT=400] [REPEATS=4]
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
COUNT=${1:-400}
REPEATS=${2:-4}
source "$REPO/tests/integration/lib/common.sh"
it_setup "$(mktemp -d /tmp/secondread-intake.XXXXXX)"
printf 'routing:\n  rules: []\n' >"$WORK/rules.yaml"
node_up --routing "$WORK/rules.yaml"
results=()
for r in $(seq 1 "$REPEATS"); do
  for mode in on off; do
    if [ "$mode" = on ]; then sql "ALTER TABLE instances ENABLE TRIGGER instances_intake"; else
      sql "ALTER TABLE instances DISABLE TRIGGER instances_intake"; fi
    rm -rf "$WORK/set"
    $PY "$REPO/tools/gen_instances.py" "$WORK/set" --kind ct --count "$COUNT" >/dev/null
    t0=$(date +%s%N)
    send "$WORK"/set/*.dcm >/dev/null 2>&1 || fail "storescu"
    t1=$(date +%s%N)
    rate=$($PY -c "print(round($COUNT / (($t1 - $t0) / 1e9), 1))")
    results+=("$mode $r $rate")
    echo "repeat $r, trigger $mode: $rate instances/s" >&2
  done
done
$PY - "${results[@]}" <<'PY'
import statistics, sys
rows = [a.split() for a in sys.argv[1:]]
on = [float(r[2]) for r in rows if r[0] == "on"]
off = [float(r[2]) for r in rows if r[0] == "off"]
print("| Intake trigger | Repeats | Median inst/s | All runs |")
print("|---|---:|---:|---|")
print("| enabled | %d | %.1f | %s |" % (len(on), statistics.median(on), " ".join("%.1f" % x for x in on)))
print("| disabled | %d | %.1f | %s |" % (len(off), statistics.median(off), " ".join("%.1f" % x for x in off)))
print()
print("enabled/disabled = %.2f" % (statistics.median(on) / statistics.median(off)))
PY

