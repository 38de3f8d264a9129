#!/usr/bin/python3
"""Trains the reference volume lesion segmenter on synthetic 3D phantoms.

  train_volume_reference.py --out REPO_DIR [--seed 20261203] [--train-count N] [--steps S]

One small 3D U-Net serves CT, MR and PET: every kind reaches it through its
own intensity transform (CT window, MR z-score, PET SUV range), so it is
written as three repository entries that share one network file:

  REPO_DIR/synthetic-lesion3d-{ct,mr,pet}/model.yaml
  REPO_DIR/synthetic-lesion3d-{ct,mr,pet}/1/model.pt   (identical bytes)

The models are for demonstration and testing only, trained on synthetic
phantoms (phantom3d.py), not a medical device.

Training: volumes of all three kinds go through the worker's preprocessing
(contract3d.py: resampling to 2 mm isotropic, the kind's intensity
transform); 24^3 patches are drawn from them, most centred near a lesion,
with random flips. Targets are each voxel's lesion fraction (the ground
truth averaged over the voxel), so that the 0.5 iso-surface of the
resampled-back probability is the lesion surface. Loss: binary cross-entropy
plus soft Dice. Each entry's threshold is chosen on validation phantoms
(best mean Dice for its kind).

The same seed, counts and PyTorch build give the same model.pt, byte for
byte: phantoms have their own seeds, training runs single-threaded with
deterministic algorithms, the script runs with a fixed Python hash seed and
the saved archive carries no debug records.
"""
import argparse
import hashlib
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import contract3d  # noqa: E402
import evaluate3d  # noqa: E402
import phantom3d  # noqa: E402
from train_reference import strip_debug_records  # noqa: E402

FAMILY = "synthetic-lesion3d"
SPLIT_TRAIN, SPLIT_VALIDATION = 1, 2
SPLIT_HELDOUT = 3  # make_heldout3d.py; training never draws from it
SPACING = [2.0, 2.0, 2.0]
ROI = [48, 48, 48]
PATCH = 24
CHANNELS = (8, 16, 32)
INTENSITY = {
    "ct": {"kind": "window", "center": 40, "width": 250},
    "mr": {"kind": "zscore", "over": "all"},
    "pet": {"kind": "suv_range", "low": 0.0, "high": 12.0, "clip": True},
}
THRESHOLD = 0.5


def config_for(kind):
    """The contract3d configuration the model.yaml of `kind` declares."""
    return {
        "name": "%s-%s" % (FAMILY, kind), "axes": "DHW", "orientation": "LPS", "spacing": SPACING,
        "interpolation": "linear", "intensity": INTENSITY[kind], "roi": ROI, "overlap": 0.25,
        "blending": "gaussian", "sigma_scale": 0.125, "sw_batch_size": 2, "output": "probabilities",
        "resample_back": True, "thresholds": [THRESHOLD], "modalities": [phantom3d.MODALITY[kind]], "latest": 1,
    }


def _conv(cin, cout):
    # No normalisation layer: the network computes the same function in
    # training, on a batch of windows and on one window alone (batch
    # statistics over three kinds of input did not carry over to inference).
    conv = nn.Conv3d(cin, cout, 3, padding=1)
    nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
    nn.init.zeros_(conv.bias)
    return [conv, nn.ReLU(inplace=True)]


def _block(cin, cout):
    return nn.Sequential(*(_conv(cin, cout) + _conv(cout, cout)))


class LesionUNet3d(nn.Module):
    """A three-level 3D U-Net: [N, 1, d, h, w] -> [N, 1, d, h, w] lesion logits.

    d, h and w must be multiples of 4 (the sliding window's ROI is).
    """

    def __init__(self, channels=CHANNELS):
        super().__init__()
        a, b, c = channels
        self.enc1 = _block(1, a)
        self.enc2 = _block(a, b)
        self.enc3 = _block(b, c)
        self.up2 = nn.ConvTranspose3d(c, b, 2, stride=2)
        self.dec2 = _block(2 * b, b)
        self.up1 = nn.ConvTranspose3d(b, a, 2, stride=2)
        self.dec1 = _block(2 * a, a)
        self.head = nn.Conv3d(a, 1, 1)

    def forward(self, x):
        x1 = self.enc1(x)
        x2 = self.enc2(F.max_pool3d(x1, 2))
        x3 = self.enc3(F.max_pool3d(x2, 2))
        y = self.dec2(torch.cat([self.up2(x3), x2], 1))
        y = self.dec1(torch.cat([self.up1(y), x1], 1))
        return self.head(y)


def prepare(seed, split, index, kind, lesion_count):
    """One phantom through the worker's preprocessing, with its lesion-fraction target."""
    ph = phantom3d.generate(phantom3d.phantom_rng(seed, split, index), kind, lesion_count=lesion_count)
    cfg = config_for(kind)
    x = contract3d.preprocess(ph.voxels, ph.spacing, cfg)[0, 0]
    size = list(x.shape)
    mask = torch.from_numpy((ph.labels > 0).astype(np.float32))[None, None]
    target = F.interpolate(mask, size=size, mode="area")[0, 0]
    # Lesion centres on the model grid, for drawing patches: the grids share
    # their outer edges (align_corners false).
    centres = [[(les["centre_mm"][a] + 0.5 * ph.spacing[a]) * size[a] / (ph.voxels.shape[a] * ph.spacing[a]) - 0.5
                for a in range(3)] for les in ph.lesions]
    return kind, x, target, centres


# Patches per kind: CT's lesions have the lowest contrast against their noise.
KIND_WEIGHTS = {"ct": 0.45, "mr": 0.35, "pet": 0.2}


def draw_patches(rng, data, count, patch=PATCH):
    """[count, 1, P, P, P] inputs and targets; two thirds centred near a lesion.

    data: (kind, input, target, lesion centres) per volume.
    """
    xs, ts = [], []
    by_kind = {k: [d for d in data if d[0] == k] for k in KIND_WEIGHTS}
    kinds = [k for k in KIND_WEIGHTS if by_kind[k]]
    weights = np.array([KIND_WEIGHTS[k] for k in kinds])
    for _ in range(count):
        pool = by_kind[kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]]
        _, x, t, centres = pool[int(rng.integers(0, len(pool)))]
        size = x.shape
        if centres and rng.random() < 0.67:
            c = centres[int(rng.integers(0, len(centres)))]
            start = [int(round(c[a] + rng.uniform(-10, 10))) - patch // 2 for a in range(3)]
        else:
            start = [int(rng.integers(0, max(1, size[a] - patch + 1))) for a in range(3)]
        start = [min(max(0, s), max(0, size[a] - patch)) for a, s in enumerate(start)]
        sl = tuple(slice(s, s + patch) for s in start)
        px, pt = x[sl], t[sl]
        pad = []
        for a in reversed(range(3)):
            pad += [0, patch - px.shape[a]]
        if any(pad):
            px = F.pad(px, pad)
            pt = F.pad(pt, pad)
        for a in range(3):
            if rng.random() < 0.5:
                px = px.flip(a)
                pt = pt.flip(a)
        xs.append(px)
        ts.append(pt)
    return torch.stack(xs)[:, None].contiguous(), torch.stack(ts)[:, None].contiguous()


def loss_fn(logits, target):
    bce = F.binary_cross_entropy_with_logits(logits, target)
    p = torch.sigmoid(logits)
    inter = (p * target).sum()
    dice = 1.0 - (2.0 * inter + 1.0) / (p.sum() + target.sum() + 1.0)
    return bce + dice


YAML_TEMPLATE = """\
name: {name}
description: >-
  Reference lesion segmenter for {modality_text} volumes, trained on synthetic
  phantoms (tools/models/phantom3d.py): a small 3D U-Net (3 levels, {channels}
  channels, {params} parameters) shared by the synthetic-lesion3d-ct, -mr and
  -pet entries, each with its own intensity transform. For demonstration and
  testing only, trained on synthetic phantoms, not a medical device.
intended_use: >-
  For demonstration and testing of secondread only, trained on synthetic phantoms, not a medical device; not for clinical use.
platform: torchscript
input:
  kind: volume
  channels: 1
  values: modality
  axes: DHW
  orientation: LPS
  spacing: [{sz}, {sy}, {sx}]
  interpolation: linear
  intensity:
{intensity}
sliding_window:
  roi: [{rd}, {rh}, {rw}]
  overlap: 0.25
  blending: gaussian
  sigma_scale: 0.125
  batch_size: 2
output:
  kind: probabilities
  resample_back: true
  labels:
    - name: lesion
      category: {{scheme: SCT, value: "49755003", meaning: "Morphologically Abnormal Structure"}}
      type: {{scheme: SCT, value: "4147007", meaning: "Mass"}}
      threshold: {threshold}
applicability:
  modalities: [{modality}]
max_batch_size: 1
instance_group:
  kind: cpu
  count: 1
precision: fp32
version_policy:
  latest: 1
training:
  seed: {seed}
  script: tools/models/train_volume_reference.py
  train_volumes: {train_volumes}
  steps: {steps}
  sha256: {sha256}
  validation: {{volumes: {val_volumes}, dice: {dice:.4f}, sensitivity: {sens:.4f}, false_positives_per_volume: {fp:.4f}}}
"""

MODALITY_TEXT = {"ct": "CT (Hounsfield units)", "mr": "MR", "pet": "PET (SUVbw)"}


def intensity_yaml(kind):
    return "\n".join("    %s: %s" % (k, str(v).lower() if isinstance(v, bool) else v) for k, v in INTENSITY[kind].items())


def main():
    if os.environ.get("PYTHONHASHSEED") != "0":
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable] + sys.argv)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="model repository directory")
    ap.add_argument("--seed", type=int, default=20261203)
    ap.add_argument("--train-count", type=int, default=96, help="training volumes (kinds alternate)")
    ap.add_argument("--validation-count", type=int, default=24)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--patch", type=int, default=PATCH)
    args = ap.parse_args()

    def log(msg):
        print(msg, flush=True)

    started = time.time()
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)

    data = []
    for i in range(args.train_count):
        # Mostly volumes with lesions; one in eight without.
        count = 0 if i % 8 == 7 else 1 + (i // 3) % 3
        data.append(prepare(args.seed, SPLIT_TRAIN, i, phantom3d.kind_of(i), count))
    log("phantoms: %d training volumes in %.0fs" % (len(data), time.time() - started))

    model = LesionUNet3d()
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps, pct_start=0.15)
    rng = np.random.default_rng(np.random.SeedSequence([args.seed, 99]))
    model.train()
    t0 = time.time()
    running = 0.0
    for step in range(args.steps):
        x, t = draw_patches(rng, data, args.batch, args.patch)
        loss = loss_fn(model(x), t)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        running += float(loss)
        if (step + 1) % 50 == 0:
            log("step %d/%d  loss %.4f  %.0fs" % (step + 1, args.steps, running / 50, time.time() - t0))
            running = 0.0
    model.eval()
    del data

    os.makedirs(args.out, exist_ok=True)
    tmp_path = os.path.join(args.out, ".%s-model.pt" % FAMILY)
    torch.jit.script(model).save(tmp_path)
    strip_debug_records(tmp_path)
    with open(tmp_path, "rb") as f:
        blob = f.read()
    os.remove(tmp_path)
    sha256 = hashlib.sha256(blob).hexdigest()

    # Validation through the saved file, as the worker will run it.
    for kind in phantom3d.KINDS:
        entry = os.path.join(args.out, "%s-%s" % (FAMILY, kind))
        os.makedirs(os.path.join(entry, "1"), exist_ok=True)
        with open(os.path.join(entry, "1", "model.pt"), "wb") as f:
            f.write(blob)
    scripted = torch.jit.load(os.path.join(args.out, "%s-ct" % FAMILY, "1", "model.pt"))
    with torch.no_grad():
        probe = torch.randn(1, 1, *ROI, generator=torch.Generator().manual_seed(1))
        if not torch.allclose(scripted(probe), model(probe), atol=1e-4):
            raise SystemExit("reloaded TorchScript model disagrees with the trained model")
    # Each entry's threshold is the one (0.30-0.70, step 0.05) that gives its
    # kind the best mean Dice on the validation phantoms.
    cases = {k: [] for k in phantom3d.KINDS}
    for i in range(args.validation_count):
        kind = phantom3d.kind_of(i)
        ph = phantom3d.generate(phantom3d.phantom_rng(args.seed, SPLIT_VALIDATION, i), kind,
                                lesion_count=(i // 3) % 4)
        prob, _ = contract3d.predict_volume(scripted, ph.voxels, ph.spacing, config_for(kind))
        cases[kind].append((prob[0], ph.labels))
    thresholds, results = {}, {}
    for kind in phantom3d.KINDS:
        best = None
        for th in np.round(np.arange(0.30, 0.701, 0.05), 2):
            dices = [2.0 * ((p >= th) & (t > 0)).sum() / ((p >= th).sum() + (t > 0).sum())
                     for p, t in cases[kind] if t.any()]
            score = float(np.mean(dices)) if dices else 0.0
            if best is None or score > best[0] + 1e-9:
                best = (score, float(th))
        thresholds[kind] = best[1]
        results[kind] = [evaluate3d.lesion_metrics((p >= best[1]).astype(np.uint8), t) for p, t in cases[kind]]
    for kind in phantom3d.KINDS:
        s = evaluate3d.summarise(results[kind])
        entry = os.path.join(args.out, "%s-%s" % (FAMILY, kind))
        with open(os.path.join(entry, "model.yaml"), "w") as f:
            f.write(YAML_TEMPLATE.format(
                name="%s-%s" % (FAMILY, kind), modality_text=MODALITY_TEXT[kind],
                channels="-".join(str(c) for c in CHANNELS), params="{:,}".format(params),
                sz=SPACING[0], sy=SPACING[1], sx=SPACING[2], intensity=intensity_yaml(kind),
                rd=ROI[0], rh=ROI[1], rw=ROI[2], threshold=thresholds[kind], modality=phantom3d.MODALITY[kind],
                seed=args.seed, train_volumes=args.train_count, steps=args.steps, sha256=sha256,
                val_volumes=s["volumes"], dice=s["dice"] or 0.0, sens=s["sensitivity"] or 0.0,
                fp=s["false_positives_per_volume"] or 0.0))
        log("validation %s (threshold %.2f): %s" % (kind, thresholds[kind], s))
    log("model.pt sha256 %s (%d bytes, %d parameters); %.0fs total" % (
        sha256, len(blob), params, time.time() - started))


if __name__ == "__main__":
    main()
