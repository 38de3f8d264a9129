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
# A negative control: the same network with its weights scrambled must fail
# the gate, or the gate proves nothing.
REPO="$WORK/models"
mkdir -p "$REPO/scrambled-control/1"
cp -r "$IT_REPO/tools/models/repository/$MODEL" "$REPO/"
sed "s/^name: .*/name: scrambled-control/" "$REPO/$MODEL/model.yaml" > "$REPO/scrambled-control/model.yaml"
$PY - "$REPO/$MODEL/1/model.pt" "$REPO/scrambled-control/1/model.pt" <<'PYEOF'
import sys, torch
torch.manual_seed(5)
m = torch.jit.load(sys.argv[1])
with torch.no_grad():
    for p in m.parameters():
        p.copy_(torch.randn_like(p) * 0.05)
m.save(sys.argv[2])
PYEOF
worker_up --repo "$REPO" --set cpu.threads=2
"$VALIDATE" --worker "$SECONDREAD_WORKER_ADDR" --model "$MODEL" --heldout "$WORK/heldout" \
  --report "$WORK/validation-report.json" --min-auc 0.95 --min-localization 0.9 --concurrency 4 \
  || fail "validation under the floors; report: $(cat "$WORK/validation-report.json" 2>/dev/null)"
pass "reference model: $(tr -d '\n ' < "$WORK/validation-report.json" | sed 's/.*"auc":\([0-9.]*\).*"localization":\([0-9.]*\).*/AUC \1, localization \2/')"
if "$VALIDATE" --worker "$SECONDREAD_WORKER_ADDR" --model scrambled-control --heldout "$WORK/heldout" \
  --report "$WORK/control-report.json" --min-auc 0.95 --min-localization 0.9 --concurrency 4 >/dev/null 2>&1; then
  fail "a model with scrambled weights passed the gate: $(cat "$WORK/control-report.json")"
fi
pass "the gate rejects a scrambled model ($(tr -d '\n ' < "$WORK/control-report.json" | sed 's/.*"auc":\([0-9.]*\).*/AUC \1/'))"
finish
