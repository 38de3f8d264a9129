#!/usr/bin/env bash
# Validates the committed reference model through the real worker on a
# freshly generated held-out set. Fails under AUC 0.95 or localization 0.9.
# The report is kept in the test's work directory.
source "$(dirname "$0")/lib/common.sh"
it_setup "$@"
VALIDATE=${VALIDATE_BIN:-$BUILD_DIR/tools/validate/secondread-validate-model}
MODEL=synthetic-nodule-demo

# A seed the training script never uses, so these phantoms are new to the model.
$PY "$IT_REPO/tools/models/make_heldout.py" --out "$WORK/heldout" --count 400 --seed 424242 >/dev/null
worker_up --set cpu.threads=2
"$VALIDATE" --worker "$SECONDREAD_WORKER_ADDR" --model "$MODEL" --heldout "$WORK/heldout" \
  --report "$WORK/validation-report.json" --min-auc 0.95 --min-localization 0.9 --concurrency 4 \
  || fail "validation under the floors; report: $(cat "$WORK/validation-report.json" 2>/dev/null)"
pass "reference model: $(tr -d '\n ' < "$WORK/validation-report.json" | sed 's/.*"auc":\([0-9.]*\).*"localization":\([0-9.]*\).*/AUC \1, localization \2/')"
finish
