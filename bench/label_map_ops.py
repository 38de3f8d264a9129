#!/usr/bin/python3
"""The worker's last step of a volume read, old form against new, in one run.

    bench/label_map_ops.py [D H W] [THREADS]     (defaults 300 512 512, 2)

A probability model's output back on a D x H x W source grid, as
inference/torch/torch_backend.cc finishes it: the label map from the
threshold, the probability map as bytes in the source's orientation, and the
lesion voxel count. Each step runs the same ATen calls, from Python's
LibTorch (the same Debian build as the worker's), in the form the worker had
before the label map was taken in bytes (the baseline) and in today's form;
best of two runs each. The outputs must be equal.
"""
import sys
import time

import torch

D, H, W = (int(v) for v in sys.argv[1:4]) if len(sys.argv) >= 4 else (300, 512, 512)
torch.set_num_threads(int(sys.argv[4]) if len(sys.argv) >= 5 else 2)
torch.manual_seed(0)
probs = torch.rand(1, 1, D, H, W)
t = torch.tensor([0.5]).view(1, 1, 1, 1, 1)


def best_of_two(f):
    best, out = 1e9, None
    for _ in range(2):
        s = time.perf_counter()
        out = f()
        best = min(best, time.perf_counter() - s)
    return best, out


def undo(v):  # a reorientation as UndoReorient does it: flip, permute, copy
    return v.flip([3]).permute(0, 1, 2, 4, 3).contiguous()


def label_before():
    eligible = torch.where(probs >= t, probs, torch.full_like(probs, -1.0))
    best, index = eligible.max(1, keepdim=True)
    return torch.where(best >= 0, index + 1, torch.zeros_like(index)).to(torch.uint8)


def bytes_now():
    p = probs.clone()  # the worker owns its map; the clone is not timed
    s = time.perf_counter()
    p.mul_(255).round_().clamp_(0, 255)
    return undo(p.to(torch.uint8)), time.perf_counter() - s


rows = []
a_t, a = best_of_two(label_before)
b_t, b = best_of_two(lambda: probs.ge(t).to(torch.uint8))
rows.append(("label map", a_t, b_t, torch.equal(a, b)))
c_t, c = best_of_two(lambda: undo(probs).mul(255).round().clamp(0, 255).to(torch.uint8))
runs = [bytes_now() for _ in range(2)]
rows.append(("probability bytes", c_t, min(r[1] for r in runs), torch.equal(c, runs[0][0])))
e_t, e = best_of_two(lambda: torch.bincount(b.flatten().long(), minlength=2)[1].item())
f_t, f = best_of_two(lambda: torch.count_nonzero(b.eq(1)).item())
rows.append(("lesion voxel count", e_t, f_t, e == f))
print("%d x %d x %d, %d threads, LibTorch %s" % (D, H, W, torch.get_num_threads(), torch.__version__))
print("%-20s %10s %10s %8s %s" % ("step", "before s", "now s", "ratio", "equal"))
for name, old, new, equal in rows:
    print("%-20s %10.2f %10.2f %8.1f %s" % (name, old, new, old / new, equal))
tot_old, tot_new = sum(r[1] for r in rows), sum(r[2] for r in rows)
print("%-20s %10.2f %10.2f %8.1f" % ("total", tot_old, tot_new, tot_old / tot_new))
sys.exit(0 if all(r[3] for r in rows) else 1)
