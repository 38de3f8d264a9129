#!/usr/bin/python3
"""Writes a held-out set of synthetic phantoms as raw pixel files plus a manifest.

  make_heldout.py --out DIR --count N [--seed S] [--size 256] [--cols C]

DIR/img_00000.raw ... are little-endian uint16, rows x cols, row-major, no
header; rows is --size and cols is --cols (default: square). DIR/manifest.json lists them:

  {"images": [{"file": "img_00000.raw", "rows": R, "cols": C, "dtype": "uint16",
               "label": 0|1, "lesion": {"row": .., "col": .., "radius": ..} | null}, ...]}

Lesion coordinates are in pixels of that image, with the centre of the
top-left pixel at (0, 0). Odd-numbered images carry a nodule, so about half are
positive. Phantoms come from a split that training never uses, so any seed
(the training seed included) gives images the model has not seen.
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import phantom  # noqa: E402

DEFAULT_SEED = 4242
# Matches SPLIT_HELDOUT in train_reference.py; repeated here so this script
# does not need PyTorch.
SPLIT_HELDOUT = 3


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--size", type=int, default=256, help="rows")
    ap.add_argument("--cols", type=int, default=None, help="columns (default: --size)")
    args = ap.parse_args()

    os.makedirs(args.out, exist_ok=True)
    images = []
    for i in range(args.count):
        rng = np.random.default_rng(np.random.SeedSequence([args.seed, SPLIT_HELDOUT, i]))
        lesion = i % 2 == 1
        pixels, info = phantom.generate(rng, size=args.size, lesion=lesion, cols=args.cols)
        name = "img_%05d.raw" % i
        with open(os.path.join(args.out, name), "wb") as f:
            f.write(pixels.astype("<u2").tobytes())
        images.append({
            "file": name,
            "rows": int(pixels.shape[0]),
            "cols": int(pixels.shape[1]),
            "dtype": "uint16",
            "label": 1 if lesion else 0,
            "lesion": info,
        })
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump({"images": images}, f, indent=1)
        f.write("\n")
    print("wrote %d images (%d with a nodule) to %s" % (len(images), sum(im["label"] for im in images), args.out))


if __name__ == "__main__":
    main()
