#!/usr/bin/python3
"""Writes a held-out set of synthetic 3D phantoms as raw volumes plus a manifest.

  make_heldout3d.py --out DIR --count N [--seed S] [--kinds ct,mr,pet]

Volume i is of kind kinds[i % len(kinds)] and holds 0-3 lesions
(i // len(kinds) % 4 of them, fewer when the anatomy has no room), so every
kind gets volumes with 0, 1, 2 and 3 lesions. DIR/vol_00000.raw ... are
little-endian float32 [D, H, W], C order (W fastest), no header: HU for ct,
arbitrary units for mr, SUV for pet. DIR/vol_00000_labels.raw are uint8 of
the same shape: 0 background, k lesion k. DIR/manifest.json:

  {"volumes": [{"file": "vol_00000.raw", "labels": "vol_00000_labels.raw",
                "kind": "ct", "modality": "CT", "units": "HU",
                "shape": [D, H, W], "spacing": [z, y, x], "dtype": "float32",
                "labels_dtype": "uint8", "orientation": "LPS",
                "origin": [0, 0, 0], "direction": [1,0,0, 0,1,0, 0,0,1],
                "lesions": [{"id": 1, "shape": "sphere"|"ellipsoid",
                             "host": "liver"|"lung"|"soft",
                             "centre_mm": [z, y, x], "centre_voxel": [k, j, i],
                             "radii_mm": [a, b, c], "axes": [[z, y, x] x 3],
                             "radius_mm": major, "value": .., "background": ..,
                             "voxels": n}, ...]}, ...]}

Positions are (z, y, x) mm from the centre of the first voxel; direction
lists the row (W), column (H) and slice (D) cosines in LPS. Volumes come from
a split that training never draws from, so any seed (the training seed
included) gives volumes the model has not seen.
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import phantom3d  # noqa: E402

DEFAULT_SEED = 5151
# Matches SPLIT_HELDOUT in train_volume_reference.py; repeated here so this
# script does not need PyTorch.
SPLIT_HELDOUT = 3
UNITS = {"ct": "HU", "mr": "arbitrary", "pet": "SUVbw"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--kinds", default="ct,mr,pet", help="comma-separated subset of ct, mr, pet")
    args = ap.parse_args()
    kinds = [k for k in args.kinds.split(",") if k]
    for k in kinds:
        if k not in phantom3d.KINDS:
            raise SystemExit("unknown kind %r" % k)

    os.makedirs(args.out, exist_ok=True)
    volumes = []
    for i in range(args.count):
        kind = kinds[i % len(kinds)]
        count = (i // len(kinds)) % 4
        ph = phantom3d.generate(phantom3d.phantom_rng(args.seed, SPLIT_HELDOUT, i), kind, lesion_count=count)
        name = "vol_%05d.raw" % i
        lname = "vol_%05d_labels.raw" % i
        with open(os.path.join(args.out, name), "wb") as f:
            f.write(ph.voxels.astype("<f4").tobytes())
        with open(os.path.join(args.out, lname), "wb") as f:
            f.write(ph.labels.astype(np.uint8).tobytes())
        volumes.append({
            "file": name,
            "labels": lname,
            "kind": kind,
            "modality": phantom3d.MODALITY[kind],
            "units": UNITS[kind],
            "shape": list(ph.voxels.shape),
            "spacing": [round(s, 6) for s in ph.spacing],
            "dtype": "float32",
            "labels_dtype": "uint8",
            "orientation": "LPS",
            "origin": [0.0, 0.0, 0.0],
            "direction": [1, 0, 0, 0, 1, 0, 0, 0, 1],
            "lesions": ph.lesions,
        })
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump({"seed": args.seed, "volumes": volumes}, f, indent=1)
        f.write("\n")
    print("wrote %d volumes (%d lesions) to %s" % (len(volumes), sum(len(v["lesions"]) for v in volumes), args.out))


if __name__ == "__main__":
    main()
