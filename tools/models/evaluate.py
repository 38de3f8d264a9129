#!/usr/bin/python3
"""Reference evaluation of a heatmap model on a held-out set from make_heldout.py.

  evaluate.py --model REPO_DIR/synthetic-nodule-demo --heldout DIR

Runs MODEL/<latest version>/model.pt with the worker's preprocessing
(contract.py) and prints JSON: AUC, sensitivity and specificity at the
model.yaml threshold (positive means score >= threshold, as in the worker),
and localization: the fraction of true positives whose heatmap peak cell
centre, mapped to image pixels, lies inside the lesion circle. The C++
worker's results on the same set should match these to within float rounding.
"""
import argparse
import json
import os
import re
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import contract  # noqa: E402
import train_reference  # noqa: E402


def read_config(path):
    """The few model.yaml fields evaluation needs."""
    with open(path) as f:
        text = f.read()
    try:
        import yaml
    except ImportError:
        yaml = None
    if yaml is not None:
        doc = yaml.safe_load(text)
        inp = doc["input"]
        return {
            "height": int(inp["height"]),
            "width": int(inp["width"]),
            "mean": float(inp["mean"][0]),
            "std": float(inp["std"][0]),
            "threshold": float(doc["output"]["labels"][0]["threshold"]),
            "latest": int(doc.get("version_policy", {}).get("latest", 1)),
        }

    # Without PyYAML, rely on the fixed layout train_reference.py writes.
    def field(name):
        m = re.search(r"^\s*%s:\s*\[?([0-9.eE+-]+)" % name, text, re.M)
        if not m:
            raise SystemExit("%s: no %s" % (path, name))
        return m.group(1)
    return {
        "height": int(field("height")),
        "width": int(field("width")),
        "mean": float(field("mean")),
        "std": float(field("std")),
        "threshold": float(field("threshold")),
        "latest": int(field("latest")),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="model directory holding model.yaml")
    ap.add_argument("--heldout", required=True, help="directory holding manifest.json")
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()

    torch.set_num_threads(2)
    cfg = read_config(os.path.join(args.model, "model.yaml"))
    model = torch.jit.load(os.path.join(args.model, str(cfg["latest"]), "model.pt"), map_location="cpu")
    model.eval()
    with open(os.path.join(args.heldout, "manifest.json")) as f:
        images = json.load(f)["images"]

    scores, peaks = [], []
    for start in range(0, len(images), args.batch):
        chunk = images[start:start + args.batch]
        batch = []
        for im in chunk:
            if im["dtype"] != "uint16":
                raise SystemExit("%s: unsupported dtype %s" % (im["file"], im["dtype"]))
            pixels = np.fromfile(os.path.join(args.heldout, im["file"]), dtype="<u2")
            pixels = pixels.reshape(im["rows"], im["cols"])
            batch.append(contract.preprocess(pixels, cfg["height"], cfg["width"], cfg["mean"], cfg["std"]))
        with torch.no_grad():
            s, h = model(torch.cat(batch))
        s = torch.sigmoid(s[:, 0]).numpy()
        h = torch.sigmoid(h[:, 0]).numpy()
        for im, si, hi in zip(chunk, s, h):
            scores.append(float(si))
            peaks.append(contract.heatmap_peak(hi, im["rows"], im["cols"]))

    labels = np.array([im["label"] for im in images])
    threshold = cfg["threshold"]
    sens, spec = train_reference.operating_point(scores, labels, threshold)
    tp = localized = 0
    for im, s, (r, c) in zip(images, scores, peaks):
        if im["label"] != 1 or s < threshold:
            continue
        tp += 1
        les = im["lesion"]
        if (r - les["row"]) ** 2 + (c - les["col"]) ** 2 <= les["radius"] ** 2:
            localized += 1
    result = {
        "images": len(images),
        "positives": int(labels.sum()),
        "threshold": threshold,
        "auc": round(train_reference.auc(scores, labels), 6),
        "sensitivity": round(sens, 6),
        "specificity": round(spec, 6),
        "true_positives": tp,
        "localized": localized,
        "localization": round(localized / tp, 6) if tp else None,
        "heatmap": list(h.shape[1:]),
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
