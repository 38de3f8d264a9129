#!/usr/bin/env bash
# scripts/demo, as a user runs it: two chest radiographs and a phantom CT
# volume go from Orthanc through the node and back. The demo must finish;
# the CT's one lesion must be flagged, measured within 3 mm of the
# phantom's lesion centre and within a third of its volume; the SEG, SRs and
# Secondary Captures it fetches back from Orthanc must pass dciodvfy.
source "$(dirname "$0")/lib/common.sh"
it_setup "$@"

mkdir -p "$WORK/demo"
DEMO_DIR="$WORK/demo" "$IT_REPO/scripts/demo" >"$WORK/demo.out" 2>&1 || {
  tail -n 40 "$WORK/demo.out" >&2; fail "scripts/demo failed"; }
out=$(cat "$WORK/demo.out")
grep -q "all three studies done" <<<"$out" || fail "the demo did not report its three studies done"
pass "scripts/demo ran to the end"

grep -q "1 lesion(s) flagged for review" <<<"$out" || fail "the CT lesion was not flagged: $(grep -A8 'the CT volume' <<<"$out")"
$PY - "$out" <<'PY' || fail "the CT lesion's measurements are off: $(grep -A8 'the CT volume' <<<"$out")"
import re, sys
out = sys.argv[1]
dist = float(re.search(r"measured centre ([0-9.]+) mm from it", out).group(1))
truth = float(re.search(r"= ([0-9.]+) mm3; measured", out).group(1))
measured = float(re.search(r"Volume\s+([0-9.]+) mm3", out).group(1))
print("centre %.1f mm from the truth; volume %.0f mm3 against %.0f" % (dist, measured, truth))
sys.exit(0 if dist <= 3.0 and abs(measured - truth) <= truth / 3 else 1)
PY
pass "the CT lesion is flagged, its centre and volume measured against the phantom's"

grep -q "SEG AI RESULT (synthetic-lesion3d-ct)" <<<"$out" || fail "no SEG series in the CT study in Orthanc"
checked=$(grep -cE '^   (SEG|SR|OT)-[0-9a-f]+\.dcm: ' <<<"$out" || true)
clean=$(grep -cE '^   (SEG|SR|OT)-[0-9a-f]+\.dcm: 0 errors' <<<"$out" || true)
[ "$checked" -eq 7 ] && [ "$clean" -eq 7 ] ||
  fail "dciodvfy: $clean of $checked objects clean, 7 expected: $(grep -E 'dcm: ' <<<"$out")"
pass "Orthanc holds the SEG, three SRs and three Secondary Captures, all clean under dciodvfy"
