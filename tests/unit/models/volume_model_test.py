#!/usr/bin/python3
"""Unit tests of the volume reference model's tools: phantom3d geometry,
make_heldout3d's files, contract3d's steps (sliding-window blend on a case
worked by hand) and the committed repository entries."""
import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np
import torch

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
MODELS = os.path.join(REPO, "tools", "models")
sys.path.insert(0, MODELS)
import contract3d  # noqa: E402
import evaluate3d  # noqa: E402
import phantom3d  # noqa: E402

ENTRIES = ["synthetic-lesion3d-ct", "synthetic-lesion3d-mr", "synthetic-lesion3d-pet"]


def ellipsoid_rho(lesion, spacing, shape):
    """Normalised radius at every voxel centre, from the manifest fields alone."""
    z = np.arange(shape[0])[:, None, None] * spacing[0] - lesion["centre_mm"][0]
    y = np.arange(shape[1])[None, :, None] * spacing[1] - lesion["centre_mm"][1]
    x = np.arange(shape[2])[None, None, :] * spacing[2] - lesion["centre_mm"][2]
    acc = 0.0
    for axis, r in zip(lesion["axes"], lesion["radii_mm"]):
        u = z * axis[0] + y * axis[1] + x * axis[2]
        acc = acc + (u / r) ** 2
    return np.sqrt(acc)


class PhantomGeometry(unittest.TestCase):
    def test_lesions_are_where_the_description_says(self):
        seen_shapes = set()
        for i, kind in enumerate(["ct", "mr", "pet", "ct", "mr", "pet"]):
            ph = phantom3d.generate(phantom3d.phantom_rng(77, 9, i), kind, lesion_count=3)
            self.assertEqual(ph.voxels.dtype, np.float32)
            self.assertEqual(ph.voxels.shape, ph.labels.shape)
            sz, sy, sx = ph.spacing
            self.assertTrue(1.5 <= sz <= 3.0 and 0.7 <= sy <= 1.2 and sy == sx, ph.spacing)
            self.assertGreaterEqual(len(ph.lesions), 1)
            self.assertEqual(sorted(int(v) for v in np.unique(ph.labels) if v), [l["id"] for l in ph.lesions])
            for les in ph.lesions:
                seen_shapes.add(les["shape"])
                self.assertTrue(phantom3d.MAJOR_RADIUS_MM[0] <= les["radius_mm"] <= phantom3d.MAJOR_RADIUS_MM[1])
                self.assertGreaterEqual(min(les["radii_mm"]), phantom3d.MIN_RADIUS_MM)
                centre = tuple(int(round(c)) for c in les["centre_voxel"])
                self.assertEqual(int(ph.labels[centre]), les["id"])
                for a in range(3):
                    self.assertAlmostEqual(les["centre_voxel"][a] * ph.spacing[a], les["centre_mm"][a], places=2)
                # The label is exactly the ellipsoid the description gives.
                rho = ellipsoid_rho(les, ph.spacing, ph.labels.shape)
                mine = ph.labels == les["id"]
                np.testing.assert_array_equal(mine, rho <= 1.0)
                self.assertEqual(int(mine.sum()), les["voxels"])
                analytic = 4.0 / 3.0 * math.pi * np.prod(les["radii_mm"]) / (sz * sy * sx)
                self.assertLess(abs(mine.sum() - analytic) / analytic, 0.12)
                # The image shows the lesion with the described contrast.
                shell = (rho > 1.15) & (rho < 1.45)
                inner = rho < 0.5
                diff = float(np.median(ph.voxels[inner]) - np.median(ph.voxels[shell]))
                expected = les["value"] - les["background"]
                if kind != "mr":  # MR is on a random scale
                    self.assertGreater(diff * np.sign(expected), 0.4 * abs(expected), (kind, les))
                else:
                    self.assertGreater(diff * np.sign(expected), 0.0, (kind, les))
        self.assertEqual(seen_shapes, {"sphere", "ellipsoid"})

    def test_kinds_have_their_units(self):
        ct = phantom3d.generate(phantom3d.phantom_rng(5, 9, 0), "ct", lesion_count=0)
        self.assertLess(float(ct.voxels.min()), -900)  # air
        self.assertGreater(float(ct.voxels.max()), 500)  # bone
        pet = phantom3d.generate(phantom3d.phantom_rng(5, 9, 1), "pet", lesion_count=2)
        for les in pet.lesions:
            self.assertTrue(4.0 <= les["value"] <= 15.0)
        mr = [phantom3d.generate(phantom3d.phantom_rng(5, 9, k), "mr", lesion_count=0) for k in (2, 3)]
        scales = sorted(float(np.percentile(m.voxels, 99)) for m in mr)
        self.assertGreater(scales[1] / scales[0], 1.05)  # a random scale per volume

    def test_same_seed_same_phantom(self):
        a = phantom3d.generate(phantom3d.phantom_rng(3, 1, 4), "pet")
        b = phantom3d.generate(phantom3d.phantom_rng(3, 1, 4), "pet")
        np.testing.assert_array_equal(a.voxels, b.voxels)
        np.testing.assert_array_equal(a.labels, b.labels)

    def test_heldout_files_match_the_manifest(self):
        with tempfile.TemporaryDirectory() as out:
            subprocess.run([sys.executable, os.path.join(MODELS, "make_heldout3d.py"), "--out", out, "--count", "4",
                            "--seed", "99"], check=True, stdout=subprocess.DEVNULL)
            with open(os.path.join(out, "manifest.json")) as f:
                vols = json.load(f)["volumes"]
            self.assertEqual([v["kind"] for v in vols], ["ct", "mr", "pet", "ct"])
            self.assertEqual(len(vols[3]["lesions"]), 1)
            self.assertEqual(len(vols[0]["lesions"]), 0)
            for v in vols:
                voxels, truth = evaluate3d.load_volume(out, v)
                self.assertEqual(list(voxels.shape), v["shape"])
                for les in v["lesions"]:
                    centre = tuple(int(round(c)) for c in les["centre_voxel"])
                    self.assertEqual(int(truth[centre]), les["id"])
                    self.assertEqual(int((truth == les["id"]).sum()), les["voxels"])


class Contract(unittest.TestCase):
    def test_window_starts_and_padding(self):
        self.assertEqual(contract3d.window_starts([80, 48, 50], [48, 48, 48], 0.25), [[0, 32], [0], [0, 2]])
        self.assertEqual(contract3d.window_starts([100], [48], 0.5), [[0, 24, 48, 52]])
        self.assertEqual(contract3d.padding_for([30, 48, 47], [48, 48, 48]), [(9, 9), (0, 0), (0, 1)])
        self.assertEqual(contract3d.resampled_size([40, 160, 160], [2.5, 0.8, 0.8], [2, 2, 2]), [50, 64, 64])
        self.assertEqual(contract3d.resampled_size([40, 160, 160], [2.5, 0.8, 0.8], [0, 2, 2]), [40, 64, 64])

    def test_importance_map(self):
        w = contract3d.importance_map([1, 1, 4], "gaussian", 0.125)
        # sigma 0.5 voxel, centre 1.5: exp(-d^2 / 0.5) / exp(-0.5)
        expected = [math.exp(-4.0), 1.0, 1.0, math.exp(-4.0)]
        np.testing.assert_allclose(w.reshape(-1).numpy(), expected, rtol=1e-6)
        self.assertTrue(torch.equal(contract3d.importance_map([2, 3, 4], "constant"), torch.ones(2, 3, 4)))
        g = contract3d.importance_map([5, 7, 9], "gaussian", 0.25)
        self.assertEqual(float(g.max()), 1.0)
        self.assertEqual(float(g[2, 3, 4]), 1.0)
        torch.testing.assert_close(g, g.flip(0).flip(1).flip(2))

    def test_sliding_window_blend_worked_by_hand(self):
        # W = 6, ROI 4, overlap 0.5: windows at 0 and 2. Each window answers
        # a constant: its start + 1. Voxels 0-1 see only the first window,
        # 4-5 only the second, 2-3 both, weighted 1 : e^-4 and e^-4 : 1.
        x = torch.arange(6, dtype=torch.float32).reshape(1, 1, 1, 1, 6)

        def predict(batch):
            return batch[:, :, :, :, :1].expand(-1, -1, -1, -1, 4) + 1.0

        out = contract3d.sliding_window(x, [1, 1, 4], 0.5, predict, "gaussian", 0.125, batch_size=1)
        e = math.exp(-4.0)
        expected = [1.0, 1.0, (1.0 + 3.0 * e) / (1.0 + e), (1.0 * e + 3.0) / (e + 1.0), 3.0, 3.0]
        np.testing.assert_allclose(out.reshape(-1).numpy(), expected, rtol=1e-6)
        out2 = contract3d.sliding_window(x, [1, 1, 4], 0.5, predict, "gaussian", 0.125, batch_size=2)
        torch.testing.assert_close(out, out2)

    def test_sliding_window_identity_with_padding(self):
        x = torch.randn(1, 1, 5, 7, 30, generator=torch.Generator().manual_seed(1))
        out = contract3d.sliding_window(x, [8, 8, 8], 0.25, lambda b: b * 2.0, "gaussian", 0.125, 3)
        self.assertEqual(out.shape, x.shape)
        torch.testing.assert_close(out, x * 2.0)

    def test_intensity(self):
        x = torch.tensor([-1000.0, -160.0, 40.0, 240.0, 3000.0])
        w = contract3d.apply_intensity(x, {"kind": "window", "center": 40, "width": 400})
        torch.testing.assert_close(w, torch.tensor([0.0, 0.0, 0.5, 1.0, 1.0]))
        s = contract3d.apply_intensity(torch.tensor([0.0, 6.0, 24.0]), {"kind": "suv_range", "low": 0, "high": 12})
        torch.testing.assert_close(s, torch.tensor([0.0, 0.5, 1.0]))
        z = contract3d.apply_intensity(torch.tensor([1.0, 2.0, 3.0, 4.0]) * 1234.5, {"kind": "zscore"})
        self.assertAlmostEqual(float(z.mean()), 0.0, places=5)
        self.assertAlmostEqual(float(z.std(unbiased=False)), 1.0, places=5)
        zn = contract3d.apply_intensity(torch.tensor([0.0, 0.0, 1.0, 3.0]), {"kind": "zscore", "over": "nonzero"})
        torch.testing.assert_close(zn[2:], torch.tensor([-1.0, 1.0]))

    def test_connected_components_are_26_connected(self):
        m = np.zeros((6, 6, 6), bool)
        m[0, 0, 0] = m[1, 1, 1] = True  # corner contact: one lesion
        m[4:6, 4:6, 4:6] = True
        m[0, 5, 5] = True
        ids, n = contract3d.connected_components(m)
        self.assertEqual(n, 3)
        self.assertEqual(ids[0, 0, 0], ids[1, 1, 1])
        self.assertEqual(len({ids[0, 0, 0], ids[0, 5, 5], ids[5, 5, 5]}), 3)

    def test_metrics(self):
        truth = np.zeros((10, 10, 10), np.uint8)
        truth[1:4, 1:4, 1:4] = 1
        truth[6:9, 6:9, 6:9] = 2
        pred = np.zeros_like(truth)
        pred[1:4, 1:4, 1:4] = 1  # lesion 1 found exactly
        pred[0, 9, 0] = 1  # a false positive
        m = evaluate3d.lesion_metrics(pred, truth)
        self.assertEqual((m["lesions"], m["detected"], m["false_positives"]), (2, 1, 1))
        self.assertAlmostEqual(m["dice"], 2 * 27 / (28 + 54), places=6)


class RepositoryEntries(unittest.TestCase):
    def test_entries_declare_the_volume_contract(self):
        blobs = set()
        for name in ENTRIES:
            entry = os.path.join(MODELS, "repository", name)
            with open(os.path.join(entry, "model.yaml")) as f:
                text = f.read()
            doc = contract3d.parse_yaml(text, pyyaml=False)
            try:
                import yaml
                self.assertEqual(doc, yaml.safe_load(text))
            except ImportError:
                pass
            self.assertEqual(doc["name"], name)
            self.assertIn("not a medical device", doc["intended_use"])
            self.assertIn("synthetic phantoms", doc["description"])
            inp = doc["input"]
            self.assertEqual((inp["kind"], inp["axes"], inp["orientation"], inp["values"]),
                             ("volume", "DHW", "LPS", "modality"))
            self.assertEqual(doc["output"]["kind"], "probabilities")
            self.assertIs(doc["output"]["resample_back"], True)
            label = doc["output"]["labels"][0]
            self.assertEqual(label["category"]["value"], "49755003")
            self.assertEqual(label["type"]["value"], "4147007")
            with open(os.path.join(entry, "1", "model.pt"), "rb") as f:
                blob = f.read()
            self.assertEqual(hashlib.sha256(blob).hexdigest(), doc["training"]["sha256"])
            blobs.add(blob)
            cfg = contract3d.read_config(os.path.join(entry, "model.yaml"))
            self.assertEqual(cfg["intensity"]["kind"], {"ct": "window", "mr": "zscore", "pet": "suv_range"}[
                name.rsplit("-", 1)[1]])
        self.assertEqual(len(blobs), 1)  # one network for all three kinds
        self.assertLess(len(blobs.pop()), 1024 * 1024)

    def test_model_runs_on_a_roi(self):
        model = torch.jit.load(os.path.join(MODELS, "repository", ENTRIES[0], "1", "model.pt"))
        with torch.no_grad():
            y = model(torch.zeros(2, 1, 48, 48, 48))
        self.assertEqual(tuple(y.shape), (2, 1, 48, 48, 48))


if __name__ == "__main__":
    torch.set_num_threads(1)
    unittest.main()
