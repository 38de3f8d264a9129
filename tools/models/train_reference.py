#!/usr/bin/python3
"""Trains the reference nodule detector on synthetic phantoms and writes its repository entry.

  train_reference.py --out REPO_DIR [--seed 20261122] [--train-count N] [--epochs E]

Writes REPO_DIR/synthetic-nodule-demo/1/model.pt (TorchScript, CPU, float32)
and REPO_DIR/synthetic-nodule-demo/model.yaml. The model is for demonstration
and testing of secondread only: it has only ever seen synthetic phantoms, is
not a medical device and must not be used clinically.

The same seed, counts and PyTorch build give the same model.pt, byte for
byte: every phantom has its own seed derived from (seed, split, index),
training runs with deterministic algorithms on a fixed number of CPU threads,
the script runs with a fixed Python hash seed (TorchScript's generated code
lists module constants in set order), and the saved archive carries no
debug records (they hold source file paths).
"""
import argparse
import math
import multiprocessing
import os
import sys
import time
import zipfile

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import contract  # noqa: E402
import phantom  # noqa: E402

MODEL_NAME = "synthetic-nodule-demo"
INPUT_SIZE = 256
MEAN, STD = 0.5, 0.25
SPLIT_TRAIN, SPLIT_VALIDATION = 1, 2
# Held-out sets use SPLIT_HELDOUT so that they never repeat a training phantom
# even when they are made with the training seed.
SPLIT_HELDOUT = 3


def phantom_rng(seed, split, index):
    return np.random.default_rng(np.random.SeedSequence([seed, split, index]))


def _make_one(job):
    seed, split, index, size = job
    rng = phantom_rng(seed, split, index)
    # Alternate labels so every split is balanced whatever its length.
    lesion = index % 2 == 1
    pixels, info = phantom.generate(rng, size=size, lesion=lesion)
    x = contract.preprocess(pixels, INPUT_SIZE, INPUT_SIZE, MEAN, STD)[0, 0].numpy()
    if info is not None:
        scale_r = INPUT_SIZE / pixels.shape[0]
        scale_c = INPUT_SIZE / pixels.shape[1]
        info = {
            "row": (info["row"] + 0.5) * scale_r - 0.5,
            "col": (info["col"] + 0.5) * scale_c - 0.5,
            "radius": info["radius"] * math.sqrt(scale_r * scale_c),
        }
    return x.astype(np.float32), info


def make_split(seed, split, count, size=INPUT_SIZE, processes=2):
    """Returns (inputs [N,1,256,256] float32 tensor, labels [N], lesion list)."""
    jobs = [(seed, split, i, size) for i in range(count)]
    with multiprocessing.get_context("fork").Pool(processes, initializer=torch.set_num_threads,
                                                  initargs=(1,)) as pool:
        results = pool.map(_make_one, jobs, chunksize=16)
    inputs = torch.from_numpy(np.stack([r[0] for r in results]))[:, None]
    lesions = [r[1] for r in results]
    labels = torch.tensor([0.0 if l is None else 1.0 for l in lesions])
    return inputs, labels, lesions


def _conv(cin, cout, stride=1, dilation=1):
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class NoduleNet(nn.Module):
    """Fully convolutional detector: a 1-channel logit map at 1/8 resolution.

    The image score is a log-sum-exp (smooth maximum) of that map, so the
    score can only be high where some cell is high, and the heatmap's peak is
    where the evidence for the score lies.
    """

    def __init__(self, sharpness: float = 5.0):
        super().__init__()
        self.features = nn.Sequential(
            # A 4x4 stride-4 stem: the smallest nodule is 16 px across, so
            # full-resolution layers would cost most of the compute and add
            # little.
            nn.Sequential(nn.Conv2d(1, 24, 4, stride=4, bias=False), nn.BatchNorm2d(24), nn.ReLU(inplace=True)),
            _conv(24, 32),
            _conv(32, 48, stride=2),
            _conv(48, 48),
            # Dilated layers widen the view to ~130 px so a nodule can be told
            # apart from a rib crossing or a vessel by its surroundings.
            _conv(48, 48, dilation=2),
            _conv(48, 48, dilation=4),
        )
        self.head = nn.Conv2d(48, 1, 1)
        self.sharpness = sharpness

    def forward(self, x):
        heatmap = self.head(self.features(x))
        flat = heatmap.flatten(2)
        r = self.sharpness
        scores = (torch.logsumexp(r * flat, dim=2) - math.log(flat.shape[2])) / r
        return scores, heatmap


def cell_targets(lesions, cells):
    """[N,1,cells,cells] target: 1 for heatmap cells whose centre lies in the lesion."""
    target = torch.zeros(len(lesions), 1, cells, cells)
    centres = torch.tensor([contract.cell_centre(i, cells, INPUT_SIZE) for i in range(cells)])
    for n, info in enumerate(lesions):
        if info is None:
            continue
        d2 = (centres[:, None] - info["row"]) ** 2 + (centres[None, :] - info["col"]) ** 2
        inside = d2 <= info["radius"] ** 2
        if not bool(inside.any()):
            inside = d2 == d2.min()
        target[n, 0] = inside.float()
    return target


def predict(model, inputs, batch=64):
    scores, maps = [], []
    model.eval()
    with torch.no_grad():
        for i in range(0, len(inputs), batch):
            s, m = model(inputs[i:i + batch])
            scores.append(torch.sigmoid(s[:, 0]))
            maps.append(torch.sigmoid(m[:, 0]))
    return torch.cat(scores).numpy(), torch.cat(maps).numpy()


def auc(scores, labels):
    """Area under the ROC curve (Mann-Whitney, ties counted as half)."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels) > 0.5
    pos, neg = scores[labels], scores[~labels]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


def operating_point(scores, labels, threshold):
    """Sensitivity and specificity when 'positive' means score >= threshold, as in the worker."""
    labels = np.asarray(labels) > 0.5
    called = np.asarray(scores) >= threshold
    sens = float((called & labels).sum() / max(1, labels.sum()))
    spec = float((~called & ~labels).sum() / max(1, (~labels).sum()))
    return sens, spec


def youden_threshold(scores, labels):
    """Threshold (3 decimals) that maximises sensitivity + specificity - 1.

    Candidates are the 3-decimal values themselves, so the published threshold
    is exactly the one whose operating point is reported. Among equally good
    candidates the middle one is taken, to keep a margin on both sides.
    """
    candidates = np.round(np.arange(1, 1000) / 1000.0, 3)
    j = np.array([sum(operating_point(scores, labels, t)) - 1.0 for t in candidates])
    best = j >= j.max() - 1e-12
    first = int(np.argmax(best))
    # Only the contiguous run holding the first best value, so the middle is
    # itself one of the best.
    last = first
    while last + 1 < len(best) and best[last + 1]:
        last += 1
    return float(candidates[(first + last) // 2]), float(j.max())


def localization(scores, maps, lesions, threshold, rows=INPUT_SIZE, cols=INPUT_SIZE):
    """Fraction of true positives whose heatmap peak falls inside the lesion."""
    hits = total = 0
    for s, m, info in zip(scores, maps, lesions):
        if info is None or s < threshold:
            continue
        total += 1
        r, c = contract.heatmap_peak(m, rows, cols)
        if (r - info["row"]) ** 2 + (c - info["col"]) ** 2 <= info["radius"] ** 2:
            hits += 1
    return hits / total if total else float("nan")


def train(model, inputs, labels, lesions, epochs, seed, log):
    # Eval mode, so that a one-image probe does not disturb BatchNorm statistics.
    model.eval()
    with torch.no_grad():
        cells = model(inputs[:1])[1].shape[-1]
    targets = cell_targets(lesions, cells)
    gen = torch.Generator().manual_seed(seed)
    batch = 32
    steps = epochs * math.ceil(len(inputs) / batch)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.15)
    # Lesion cells are a few in a thousand; weight them so the map learns them.
    cell_pos_weight = torch.tensor(20.0)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(inputs), generator=gen)
        t0 = time.time()
        total = 0.0
        for i in range(0, len(order), batch):
            idx = order[i:i + batch]
            scores, heatmap = model(inputs[idx])
            loss_img = F.binary_cross_entropy_with_logits(scores[:, 0], labels[idx])
            loss_map = F.binary_cross_entropy_with_logits(heatmap, targets[idx], pos_weight=cell_pos_weight)
            loss = loss_img + loss_map
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss) * len(idx)
        log("epoch %d/%d  loss %.4f  %.0fs" % (epoch + 1, epochs, total / len(inputs), time.time() - t0))


YAML_TEMPLATE = """\
name: {name}
description: >-
  Reference lesion detector trained on synthetic chest-radiograph phantoms
  (tools/models/phantom.py): a small fully convolutional network whose image
  score is a smooth maximum of a {cells}x{cells} nodule heatmap.
intended_use: >-
  For demonstration and testing of secondread only. Trained on synthetic phantoms; not a medical device; not for clinical use.
platform: torchscript
input:
  channels: 1
  height: {size}
  width: {size}
  scaling: minmax
  mean: [{mean}]
  std: [{std}]
output:
  scores_activation: sigmoid
  heatmap: true
  heatmap_activation: sigmoid
  labels:
    - name: nodule
      code: {{scheme: SCT, value: "27925004", meaning: "Nodule"}}
      threshold: {threshold:.3f}
applicability:
  modalities: [CR, DX]
  body_parts: [CHEST]
  sop_classes: ["1.2.840.10008.5.1.4.1.1.1", "1.2.840.10008.5.1.4.1.1.1.1", "1.2.840.10008.5.1.4.1.1.1.1.1"]
max_batch_size: 32
dynamic_batching:
  max_queue_delay_us: 2000
  preferred_batch_sizes: [8, 16, 32]
  max_queue_size: 512
  priority_levels: 2
instance_group:
  kind: cpu
  count: 1
precision: fp32
version_policy:
  latest: 1
training:
  seed: {seed}
  script: tools/models/train_reference.py
  train_images: {train_images}
  validation: {{auc: {auc:.4f}, sensitivity: {sens:.4f}, specificity: {spec:.4f}, localization: {loc:.4f}}}
"""


def strip_debug_records(path):
    """Rewrites a TorchScript archive without its *.debug_pkl records.

    Those records map generated code back to source lines, including the
    absolute paths of the files it came from; loading does not need them.
    Record data stays 64-byte aligned, as PyTorch writes it.
    """
    with zipfile.ZipFile(path) as src:
        records = [(info, src.read(info)) for info in src.infolist() if not info.filename.endswith(".debug_pkl")]
    tmp = path + ".tmp"
    with open(tmp, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as dst:
        for info, data in records:
            out = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            # Local header: 30 bytes + name + extra; pad the extra field
            # (header id 0x4246, "FB", as PyTorch does) to align the data.
            start = f.tell() + 30 + len(info.filename.encode()) + 4
            pad = -start % 64
            out.extra = b"FB" + pad.to_bytes(2, "little") + b"Z" * pad
            out.compress_type = zipfile.ZIP_STORED
            dst.writestr(out, data)
    os.replace(tmp, path)


def main():
    # TorchScript's generated code depends on set iteration order; a fixed
    # hash seed makes the saved model reproducible byte for byte.
    if os.environ.get("PYTHONHASHSEED") != "0":
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable] + sys.argv)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="model repository directory")
    ap.add_argument("--seed", type=int, default=20261122)
    ap.add_argument("--train-count", type=int, default=3000)
    ap.add_argument("--validation-count", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=6)
    args = ap.parse_args()

    def log(msg):
        print(msg, flush=True)

    started = time.time()
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(2)

    t0 = time.time()
    train_x, train_y, train_lesions = make_split(args.seed, SPLIT_TRAIN, args.train_count)
    val_x, val_y, val_lesions = make_split(args.seed, SPLIT_VALIDATION, args.validation_count)
    log("phantoms: %d training, %d validation in %.0fs" % (len(train_x), len(val_x), time.time() - t0))

    model = NoduleNet()
    train(model, train_x, train_y, train_lesions, args.epochs, args.seed, log)
    model.eval()

    scores, maps = predict(model, val_x)
    threshold, j = youden_threshold(scores, val_y.numpy())
    sens, spec = operating_point(scores, val_y.numpy(), threshold)
    val_auc = auc(scores, val_y.numpy())
    loc = localization(scores, maps, val_lesions, threshold)
    log("validation: auc %.4f  threshold %.3f (Youden J %.4f)  sensitivity %.4f  specificity %.4f  "
        "localization %.4f" % (val_auc, threshold, j, sens, spec, loc))

    entry = os.path.join(args.out, MODEL_NAME)
    os.makedirs(os.path.join(entry, "1"), exist_ok=True)
    scripted = torch.jit.script(model)
    model_path = os.path.join(entry, "1", "model.pt")
    scripted.save(model_path)
    strip_debug_records(model_path)

    # The saved file, not the in-memory module, is what the worker will run.
    reloaded = torch.jit.load(model_path)
    with torch.no_grad():
        a = model(val_x[:8])
        b = reloaded(val_x[:8])
    if not all(torch.allclose(p, q, atol=1e-5) for p, q in zip(a, b)):
        raise SystemExit("reloaded TorchScript model disagrees with the trained model")

    with open(os.path.join(entry, "model.yaml"), "w") as f:
        f.write(YAML_TEMPLATE.format(
            name=MODEL_NAME, cells=maps.shape[-1], size=INPUT_SIZE, mean=MEAN, std=STD,
            threshold=threshold, seed=args.seed, train_images=args.train_count,
            auc=val_auc, sens=sens, spec=spec, loc=loc))
    log("wrote %s (%d bytes) in %.0fs total" % (model_path, os.path.getsize(model_path), time.time() - started))


if __name__ == "__main__":
    main()
