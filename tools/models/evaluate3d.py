#!/usr/bin/python3
"""Reference evaluation of volume segmentation models on a make_heldout3d.py set.

  evaluate3d.py --model REPO/synthetic-lesion3d-ct [--model ...] --heldout DIR
                [--min-dice 0.8] [--min-sensitivity 0.9] [--report FILE]
                [--control none|shuffle-weights|zero-weights|shift] [--shift N]

Each model runs MODEL/<latest version>/model.pt through the worker's volume
pipeline (contract3d.py) on the held-out volumes of its modality
(applicability.modalities: CT -> ct, MR -> mr, PT -> pet), and is scored on
the source grid against the ground-truth label map:

- Dice of the lesion voxels (any label) per volume with lesions, and the
  mean over those volumes;
- lesion-level sensitivity: a ground-truth lesion is detected when a
  predicted 26-connected component overlaps it or has its centroid inside
  it;
- false positives per volume: predicted components that overlap no lesion
  and whose centroid lies in none.

Prints JSON (per model, per volume and overall) and exits 1 when any model's
mean Dice is under --min-dice or its sensitivity under --min-sensitivity.

Negative controls, which must fail the gate: shuffle-weights permutes the
values inside every parameter tensor (seeded), zero-weights sets them all to
zero, shift moves every predicted label map by --shift voxels along W and H.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import contract3d  # noqa: E402

KIND_OF_MODALITY = {"CT": "ct", "MR": "mr", "PT": "pet"}


def lesion_metrics(pred, truth):
    """Scores one volume: pred and truth are label maps on the same grid."""
    p = pred > 0
    t = truth > 0
    inter = int((p & t).sum())
    denom = int(p.sum()) + int(t.sum())
    dice = (2.0 * inter / denom) if t.any() else None
    comps, n = contract3d.connected_components(p)
    lesion_ids = [int(v) for v in np.unique(truth) if v != 0]
    detected = set()
    false_pos = 0
    if n:
        idx = np.nonzero(comps)
        cid = comps[idx]
        counts = np.bincount(cid, minlength=n + 1)
        centroids = [np.bincount(cid, weights=idx[a], minlength=n + 1) / np.maximum(counts, 1) for a in range(3)]
        over = truth[idx]
        for c in range(1, n + 1):
            hit = set(int(v) for v in np.unique(over[cid == c]) if v != 0)
            centre = tuple(int(np.clip(np.floor(centroids[a][c] + 0.5), 0, truth.shape[a] - 1)) for a in range(3))
            inside = int(truth[centre])
            if inside:
                hit.add(inside)
            if hit:
                detected |= hit
            else:
                false_pos += 1
    return {
        "dice": None if dice is None else round(dice, 6),
        "lesions": len(lesion_ids),
        "detected": len(detected & set(lesion_ids)),
        "false_positives": false_pos,
        "predicted_voxels": int(p.sum()),
        "truth_voxels": int(t.sum()),
    }


def summarise(rows):
    dices = [r["dice"] for r in rows if r["dice"] is not None]
    lesions = sum(r["lesions"] for r in rows)
    detected = sum(r["detected"] for r in rows)
    fps = sum(r["false_positives"] for r in rows)
    return {
        "volumes": len(rows),
        "volumes_with_lesions": len(dices),
        "dice": round(float(np.mean(dices)), 6) if dices else None,
        "dice_min": round(float(np.min(dices)), 6) if dices else None,
        "lesions": lesions,
        "detected": detected,
        "sensitivity": round(detected / lesions, 6) if lesions else None,
        "false_positives": fps,
        "false_positives_per_volume": round(fps / len(rows), 6) if rows else None,
    }


def load_volume(heldout, vol):
    shape = tuple(vol["shape"])
    voxels = np.fromfile(os.path.join(heldout, vol["file"]), dtype="<f4").reshape(shape)
    truth = np.fromfile(os.path.join(heldout, vol["labels"]), dtype=np.uint8).reshape(shape)
    return voxels, truth


def apply_control(model, control):
    if control in ("shuffle-weights", "zero-weights"):
        gen = torch.Generator().manual_seed(7)
        with torch.no_grad():
            for p in model.parameters():
                if control == "zero-weights":
                    p.zero_()
                else:
                    flat = p.reshape(-1)
                    p.copy_(flat[torch.randperm(flat.numel(), generator=gen)].reshape(p.shape))
    return model


def shift_labels(labels, n):
    out = np.zeros_like(labels)
    if n <= 0:
        return labels
    out[:, n:, n:] = labels[:, :-n, :-n]
    return out


def evaluate_model(model_dir, heldout, volumes, control="none", shift=8, log=None):
    cfg = contract3d.read_config(os.path.join(model_dir, "model.yaml"))
    kinds = {KIND_OF_MODALITY[m] for m in cfg["modalities"] if m in KIND_OF_MODALITY}
    model = torch.jit.load(os.path.join(model_dir, str(cfg["latest"]), "model.pt"), map_location="cpu")
    model.eval()
    model = apply_control(model, control)
    rows = []
    for vol in volumes:
        if kinds and vol["kind"] not in kinds:
            continue
        t0 = time.time()
        voxels, truth = load_volume(heldout, vol)
        _, pred = contract3d.predict_volume(model, voxels, vol["spacing"], cfg)
        if control == "shift":
            pred = shift_labels(pred, shift)
        row = {"file": vol["file"], "kind": vol["kind"]}
        row.update(lesion_metrics(pred, truth))
        row["seconds"] = round(time.time() - t0, 2)
        rows.append(row)
        if log:
            log("%s %s dice %s detected %d/%d fp %d %.1fs" % (
                cfg["name"], vol["file"], row["dice"], row["detected"], row["lesions"], row["false_positives"],
                row["seconds"]))
    return cfg, rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", required=True, help="model directory holding model.yaml")
    ap.add_argument("--heldout", required=True, help="directory holding manifest.json")
    ap.add_argument("--min-dice", type=float, default=0.8)
    ap.add_argument("--min-sensitivity", type=float, default=0.9)
    ap.add_argument("--control", choices=["none", "shuffle-weights", "zero-weights", "shift"], default="none")
    ap.add_argument("--shift", type=int, default=8, help="voxels, with --control shift")
    ap.add_argument("--report", help="also write the JSON here")
    ap.add_argument("--verbose", action="store_true", help="log each volume to stderr")
    args = ap.parse_args()

    torch.set_num_threads(1)
    with open(os.path.join(args.heldout, "manifest.json")) as f:
        volumes = json.load(f)["volumes"]

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    result = {"control": args.control, "min_dice": args.min_dice, "min_sensitivity": args.min_sensitivity,
              "models": {}}
    all_rows = []
    failures = []
    for model_dir in args.model:
        cfg, rows = evaluate_model(model_dir, args.heldout, volumes, args.control, args.shift,
                                   log if args.verbose else None)
        summary = summarise(rows)
        result["models"][cfg["name"]] = {"summary": summary, "volumes": rows}
        all_rows += rows
        if not rows:
            failures.append("%s: no held-out volume of its modality" % cfg["name"])
            continue
        if summary["dice"] is None or summary["dice"] < args.min_dice:
            failures.append("%s: mean Dice %s under %.2f" % (cfg["name"], summary["dice"], args.min_dice))
        if summary["sensitivity"] is None or summary["sensitivity"] < args.min_sensitivity:
            failures.append("%s: sensitivity %s under %.2f" % (cfg["name"], summary["sensitivity"],
                                                              args.min_sensitivity))
    result["overall"] = summarise(all_rows)
    result["passed"] = not failures
    result["failures"] = failures
    text = json.dumps(result, indent=1)
    print(text)
    if args.report:
        with open(args.report, "w") as f:
            f.write(text + "\n")
    if failures:
        for msg in failures:
            log("gate: " + msg)
        sys.exit(1)


if __name__ == "__main__":
    main()
