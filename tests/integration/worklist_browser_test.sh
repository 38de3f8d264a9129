#!/usr/bin/env bash
# The worklist page in a real browser (Debian's Chromium driven by
# playwright-core) against the real node, a real worker and PostgreSQL: a study
# with a lesion and a clean one are read; the page lists the flagged one first,
# shows its Secondary Capture, records an Agree, handles a review that raced a
# colleague's (409), and shows the model's performance. The agree review and
# its audit row must then be in PostgreSQL. Screenshots stay in WORK/screenshots.
# Needs chromium, node and npm (scripts/bootstrap); npm ci fetches
# playwright-core when tests/browser/node_modules is missing.
source "$(dirname "$0")/lib/common.sh"
source "$(dirname "$0")/lib/results.sh"
it_setup "$@"

BROWSER_DIR="$IT_REPO/tests/browser"
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
[ -x "$CHROMIUM" ] || fail "no Chromium at $CHROMIUM (scripts/bootstrap installs the chromium package)"
command -v node >/dev/null || fail "node is not installed (scripts/bootstrap)"
command -v npm >/dev/null || fail "npm is not installed (scripts/bootstrap)"
if [ ! -d "$BROWSER_DIR/node_modules/playwright-core" ]; then
  # Only the driver library; browsers are never downloaded.
  (cd "$BROWSER_DIR" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund >"$WORK/npm-ci.log" 2>&1) ||
    { tail -n 20 "$WORK/npm-ci.log" >&2; fail "npm ci in tests/browser"; }
fi
pass "Chromium $("$CHROMIUM" --version 2>/dev/null | awk '{print $2}'), node $(node --version), playwright-core present"

IT_WORKER=1 node_up
[ -n "${SECONDREAD_WORKLIST_URL:-}" ] || fail "dev-up wrote no SECONDREAD_WORKLIST_URL to $NODE/env"
[ -n "${SECONDREAD_TOKEN:-}" ] || fail "dev-up wrote no SECONDREAD_TOKEN"

# ---- two studies, read by the worker ---------------------------------------
$PY "$IT_REPO/tools/gen_study.py" "$WORK/lesion" --studies 1 --lesion yes --modality CR --seed 41 >/dev/null
$PY "$IT_REPO/tools/gen_study.py" "$WORK/clean" --studies 1 --lesion no --modality DX --seed 42 >/dev/null
manifest() { $PY -c "import json,sys; m=json.load(open(sys.argv[1])); print(m['studies'][0][sys.argv[2]])" "$1" "$2"; }
LESION_ACC=$(manifest "$WORK/lesion/manifest.json" accession)
CLEAN_ACC=$(manifest "$WORK/clean/manifest.json" accession)
[ "$LESION_ACC" != "$CLEAN_ACC" ] || fail "the generator gave both studies accession $LESION_ACC"
send "$WORK"/lesion/study-*/*.dcm >/dev/null 2>&1 || fail "storescu lesion study"
send "$WORK"/clean/study-*/*.dcm >/dev/null 2>&1 || fail "storescu clean study"
wait_sql "SELECT count(*) FROM reads WHERE state = 'done'" 2 180
wait_sql "SELECT count(*) FROM worklist_entries" 2 30
wait_sql "SELECT count(*) FROM result_objects WHERE kind = 'sc'" 2 60
[ "$(sql "SELECT count(*) FROM worklist_entries WHERE flagged")" = 1 ] || fail "expected exactly one flagged study"
pass "both studies read; one flagged"

# ---- the page in Chromium ----------------------------------------------------
SHOTS="$WORK/screenshots"
mkdir -p "$SHOTS"
WORKLIST_URL=$SECONDREAD_WORKLIST_URL TOKEN=$SECONDREAD_TOKEN CHROMIUM=$CHROMIUM \
  FLAGGED_ACCESSION=$LESION_ACC CLEAN_ACCESSION=$CLEAN_ACC SCREENSHOT_DIR=$SHOTS \
  timeout 300 node "$BROWSER_DIR/worklist.mjs" >"$WORK/browser.log" 2>&1 ||
  { cat "$WORK/browser.log" >&2; fail "the browser test failed (screenshots in $SHOTS)"; }
sed 's/^/  /' "$WORK/browser.log"
for f in list.png detail.png performance.png; do
  [ -s "$SHOTS/$f" ] || fail "screenshot $f missing"
done
pass "the browser test passed; screenshots in $SHOTS"

# ---- what the page did is in PostgreSQL --------------------------------------
LESION_REF=$(sql "SELECT id FROM studies WHERE accession_number = '$LESION_ACC'" 2>/dev/null || true)
if [ -z "$LESION_REF" ]; then
  LESION_UID=$(manifest "$WORK/lesion/manifest.json" study_uid)
  LESION_REF=$(sql "SELECT id FROM studies WHERE study_instance_uid = '$LESION_UID'")
fi
[ -n "$LESION_REF" ] || fail "the lesion study is not in the registry"
[ "$(sql "SELECT count(*) FROM reviews WHERE study_ref = $LESION_REF AND verdict = 'agree'")" = 1 ] ||
  fail "expected one agree review of the lesion study: $(sql "SELECT verdict, reviewer FROM reviews WHERE study_ref = $LESION_REF")"
[ "$(sql "SELECT count(*) FROM audit_log WHERE action = 'review' AND study_ref = $LESION_REF AND detail->>'verdict' = 'agree'")" = 1 ] ||
  fail "no audit row for the agree review: $(sql "SELECT action, detail FROM audit_log WHERE study_ref = $LESION_REF")"
[ "$(sql "SELECT status FROM worklist_entries WHERE study_ref = $LESION_REF")" = agreed ] ||
  fail "the lesion study is not agreed on the worklist"
[ "$(sql "SELECT count(*) FROM audit_log WHERE action = 'view_image' AND study_ref = $LESION_REF")" -ge 1 ] ||
  fail "the preview image view was not audited"
# The race: the colleague's uncertain and the radiologist's second decision are
# stored; the refused one is not.
CLEAN_REF=$(sql "SELECT w.study_ref FROM worklist_entries w WHERE w.study_ref <> $LESION_REF")
[ "$(sql "SELECT count(*) FROM reviews WHERE study_ref = $CLEAN_REF")" = 2 ] ||
  fail "expected 2 reviews of the clean study: $(sql "SELECT verdict, worklist_version FROM reviews WHERE study_ref = $CLEAN_REF")"
pass "the agree review, its audit row and the agreed status are in PostgreSQL; the refused review was not stored"
finish
