#!/usr/bin/env bash
# Validates the volume reference models (synthetic-lesion3d-ct, -mr, -pet)
# through the real worker on a freshly generated held-out set: each volume
# goes through InferenceClient::InferVolume and the label map that comes back
# is scored as evaluate3d.py scores it. All three entries must pass the gate
# (mean Dice 0.8, lesion sensitivity 0.9); a CT entry with a wrong intensity
# window must fail it, and so must the right model against ground truth moved
# 8 voxels; and the worker's figures must agree with
# evaluate3d.py's on the same set. The reports are kept in the test's work
# directory.
source "$(dirname "$0")/lib/common.sh"
it_setup "$@"
VALIDATE=${VALIDATE_BIN:-$BUILD_DIR/tools/validate/secondread-validate-model}
MODELS="$IT_REPO/tools/models"
ENTRIES=(synthetic-lesion3d-ct synthetic-lesion3d-mr synthetic-lesion3d-pet)

# A seed neither training, the documented held-out set nor volume_model_gate
# uses; 15 volumes, 5 per kind, with 0, 1, 2, 3 and 0 lesions.
$PY "$MODELS/make_heldout3d.py" --out "$WORK/heldout" --count 15 --seed 737373 >/dev/null

# The served repository: the three entries and a negative control, the CT
# entry with its window centred 1024 HU too high, as if the rescale intercept
# had been left out.
REPO="$WORK/models"
mkdir -p "$REPO"
for e in "${ENTRIES[@]}"; do cp -r "$MODELS/repository/$e" "$REPO/"; done
mkdir -p "$REPO/wrong-window-control/1"
cp "$REPO/synthetic-lesion3d-ct/1/model.pt" "$REPO/wrong-window-control/1/"
sed -e "s/^name: .*/name: wrong-window-control/" -e "s/^    center: 40$/    center: 1064/" \
  "$REPO/synthetic-lesion3d-ct/model.yaml" > "$REPO/wrong-window-control/model.yaml"
grep -q "center: 1064" "$REPO/wrong-window-control/model.yaml" || fail "the control's window was not changed"

worker_up --repo "$REPO" --set cpu.threads=2
model_args=()
for e in "${ENTRIES[@]}"; do model_args+=(--model "$e"); done
"$VALIDATE" --volume --worker "$SECONDREAD_WORKER_ADDR" "${model_args[@]}" --heldout "$WORK/heldout" \
  --report "$WORK/validation-report.json" --min-dice 0.8 --min-sensitivity 0.9 2>"$WORK/validation.log" >/dev/null \
  || fail "validation through the worker under the floors: $(cat "$WORK/validation.log")"
summary() {  # report.json: one line per model
  $PY - "$1" <<'PYEOF'
import json, sys
r = json.load(open(sys.argv[1]))
print("; ".join("%s Dice %.3f, sensitivity %.3f, FP/volume %.2f" % (
    n, m["summary"]["dice"], m["summary"]["sensitivity"], m["summary"]["false_positives_per_volume"])
    for n, m in r["models"].items()))
PYEOF
}
pass "through the worker: $(summary "$WORK/validation-report.json")"

if "$VALIDATE" --volume --worker "$SECONDREAD_WORKER_ADDR" --model wrong-window-control --heldout "$WORK/heldout" \
  --report "$WORK/control-report.json" >/dev/null 2>&1; then
  fail "a CT model with a wrong intensity window passed the gate: $(summary "$WORK/control-report.json")"
fi
[ -s "$WORK/control-report.json" ] || fail "the control run wrote no report"
pass "the gate rejects a wrong intensity window ($(summary "$WORK/control-report.json"))"

# The held-out set with its ground truth moved 8 voxels along H and W: the
# right model must now fail, or the scoring does not look at where lesions are.
mkdir -p "$WORK/shifted"
$PY - "$WORK/heldout" "$WORK/shifted" <<'PYEOF'
import json, os, shutil, sys
import numpy as np
src, dst = sys.argv[1:]
manifest = json.load(open(os.path.join(src, "manifest.json")))
for v in manifest["volumes"]:
    shutil.copy(os.path.join(src, v["file"]), dst)
    labels = np.fromfile(os.path.join(src, v["labels"]), np.uint8).reshape(v["shape"])
    moved = np.zeros_like(labels)
    moved[:, 8:, 8:] = labels[:, :-8, :-8]
    moved.tofile(os.path.join(dst, v["labels"]))
shutil.copy(os.path.join(src, "manifest.json"), dst)
PYEOF
if "$VALIDATE" --volume --worker "$SECONDREAD_WORKER_ADDR" --model synthetic-lesion3d-ct --heldout "$WORK/shifted" \
  --report "$WORK/shifted-report.json" >/dev/null 2>&1; then
  fail "the gate passed against ground truth moved 8 voxels: $(summary "$WORK/shifted-report.json")"
fi
[ -s "$WORK/shifted-report.json" ] || fail "the shifted control wrote no report"
pass "the gate rejects ground truth moved 8 voxels ($(summary "$WORK/shifted-report.json"))"

# The same set through the executable specification (contract3d.py): the
# worker's figures must agree, model by model and volume by volume.
ref_args=()
for e in "${ENTRIES[@]}"; do ref_args+=(--model "$REPO/$e"); done
$PY "$MODELS/evaluate3d.py" --heldout "$WORK/heldout" --report "$WORK/reference-report.json" "${ref_args[@]}" \
  >/dev/null 2>"$WORK/reference.log" || true
[ -s "$WORK/reference-report.json" ] || fail "evaluate3d.py wrote no report: $(cat "$WORK/reference.log")"
$PY - "$WORK/validation-report.json" "$WORK/reference-report.json" <<'PYEOF' || fail "the worker's figures differ from evaluate3d.py's"
import json, sys
worker = json.load(open(sys.argv[1]))["models"]
ref = json.load(open(sys.argv[2]))["models"]
bad = []
for name, r in ref.items():
    w = worker[name]
    ws, rs = w["summary"], r["summary"]
    if ws["volumes"] != rs["volumes"] or ws["lesions"] != rs["lesions"]:
        bad.append("%s: %s volumes / %s lesions, reference %s / %s" % (
            name, ws["volumes"], ws["lesions"], rs["volumes"], rs["lesions"]))
        continue
    if abs(ws["dice"] - rs["dice"]) > 0.03:
        bad.append("%s: mean Dice %.4f, reference %.4f" % (name, ws["dice"], rs["dice"]))
    if abs(ws["sensitivity"] - rs["sensitivity"]) > 0.1:
        bad.append("%s: sensitivity %.3f, reference %.3f" % (name, ws["sensitivity"], rs["sensitivity"]))
    if abs(ws["false_positives_per_volume"] - rs["false_positives_per_volume"]) > 0.4:
        bad.append("%s: FP/volume %.2f, reference %.2f" % (
            name, ws["false_positives_per_volume"], rs["false_positives_per_volume"]))
    for wv, rv in zip(w["volumes"], r["volumes"]):
        if wv["file"] != rv["file"]:
            bad.append("%s: volumes in another order" % name)
            break
        if (wv["dice"] is None) != (rv["dice"] is None) or (
                wv["dice"] is not None and abs(wv["dice"] - rv["dice"]) > 0.05):
            bad.append("%s %s: Dice %s, reference %s" % (name, wv["file"], wv["dice"], rv["dice"]))
for name in ref:
    w, r = worker[name]["summary"], ref[name]["summary"]
    print("%s: Dice %.4f vs %.4f, sensitivity %.3f vs %.3f, FP/volume %.2f vs %.2f" % (
        name, w["dice"], r["dice"], w["sensitivity"], r["sensitivity"],
        w["false_positives_per_volume"], r["false_positives_per_volume"]), file=sys.stderr)
if bad:
    print("\n".join(bad), file=sys.stderr)
    sys.exit(1)
PYEOF
pass "the worker's figures agree with evaluate3d.py's on the same set"
finish
