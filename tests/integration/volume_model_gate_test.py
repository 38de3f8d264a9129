#!/usr/bin/python3
"""The committed volume reference models pass their gate on a fresh held-out
set, and negative controls (scrambled weights, a shifted label map) fail it.

  volume_model_gate_test.py [WORK_DIR]

Runs tools/models/make_heldout3d.py and evaluate3d.py as a user would; the
reports are kept in WORK_DIR (default: a temporary directory).
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MODELS = os.path.join(REPO, "tools", "models")
ENTRIES = [os.path.join(MODELS, "repository", "synthetic-lesion3d-%s" % k) for k in ("ct", "mr", "pet")]
# A seed neither training nor the documented held-out set uses.
SEED = 616161
# Four volumes of each kind with 0, 1, 2 and 3 lesions, twice over.
COUNT = 24
WORK = None


def evaluate(models, report, *extra):
    cmd = [sys.executable, os.path.join(MODELS, "evaluate3d.py"), "--heldout", os.path.join(WORK, "heldout"),
           "--report", os.path.join(WORK, report)]
    for m in models:
        cmd += ["--model", m]
    proc = subprocess.run(cmd + list(extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with open(os.path.join(WORK, report)) as f:
        return proc.returncode, json.load(f), proc.stderr


class VolumeModelGate(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        subprocess.run([sys.executable, os.path.join(MODELS, "make_heldout3d.py"), "--out",
                        os.path.join(WORK, "heldout"), "--count", str(COUNT), "--seed", str(SEED)],
                       check=True, stdout=subprocess.DEVNULL)

    def test_reference_models_pass(self):
        rc, report, err = evaluate(ENTRIES, "report.json")
        summary = {name: m["summary"] for name, m in report["models"].items()}
        print(json.dumps(summary, indent=1), file=sys.stderr)
        self.assertEqual(rc, 0, err)
        self.assertTrue(report["passed"])
        self.assertEqual(len(report["models"]), 3)
        for name, s in summary.items():
            self.assertEqual(s["volumes"], COUNT // 3, name)
            self.assertGreaterEqual(s["dice"], 0.8, name)
            self.assertGreaterEqual(s["sensitivity"], 0.9, name)

    def test_scrambled_weights_fail(self):
        rc, report, _ = evaluate(ENTRIES[:1], "control-shuffled.json", "--control", "shuffle-weights")
        self.assertEqual(rc, 1, "a model with shuffled weights passed the gate: %s" % report["overall"])
        self.assertFalse(report["passed"])

    def test_shifted_labels_fail(self):
        rc, report, _ = evaluate(ENTRIES[2:], "control-shifted.json", "--control", "shift", "--shift", "8")
        self.assertEqual(rc, 1, "a label map shifted by 8 voxels passed the gate: %s" % report["overall"])
        self.assertLess(report["overall"]["dice"], 0.8)


if __name__ == "__main__":
    if len(sys.argv) > 1 and not sys.argv[1].startswith("-"):
        WORK = sys.argv.pop(1)
        shutil.rmtree(WORK, ignore_errors=True)
        os.makedirs(WORK)
    else:
        WORK = tempfile.mkdtemp(prefix="volume-gate-")
    unittest.main()
