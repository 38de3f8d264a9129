#!/usr/bin/python3
"""Reference numbers for the worker's volume operations, computed with numpy
only, independently of LibTorch.

Writes volume_reference.txt next to this file; volume_ops_test.cc reads it.
Run again (with Debian's python3-numpy) after changing a case here:

    python3 tests/unit/inference/torch/volume_reference.py

Every record is a name, the number of dimensions, the dimensions and then the
values, whitespace-separated, in C (row-major) order.

The conventions reproduced are PyTorch's interpolate (trilinear and nearest,
align_corners=False, output size given) and MONAI's sliding_window_inference
(symmetric zero padding up to the ROI, dense_patch_slices window starts,
gaussian importance map with sigma = roi * sigma_scale, weighted sum divided
by the summed weights).
"""
import math
import os

import numpy as np


def test_volume(shape):
    """A deterministic volume with no symmetry, identical in the C++ test."""
    z, y, x = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij")
    return np.sin(0.7 * z + 0.3 * y * y) + 0.05 * x * (x - 1.5) + 0.1 * z * y


def conv_weights():
    """A fixed 3x3x3 convolution, 1 channel in, 2 out, as in the C++ test."""
    w = np.zeros((2, 1, 3, 3, 3))
    for k in range(2):
        for a in range(3):
            for b in range(3):
                for c in range(3):
                    w[k, 0, a, b, c] = (((k + 1) * (a * 9 + b * 3 + c)) % 7 - 3) / 10.0
    bias = np.array([0.0, 0.1])
    return w, bias


def conv3d(x, w, bias):
    """Cross-correlation with zero padding 1, as torch's conv3d: x [C,D,H,W]."""
    c, d, h, ww = x.shape
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (1, 1)))
    out = np.zeros((w.shape[0], d, h, ww))
    for k in range(w.shape[0]):
        out[k] += bias[k]
        for ci in range(c):
            for a in range(3):
                for b in range(3):
                    for cc in range(3):
                        out[k] += w[k, ci, a, b, cc] * xp[ci, a:a + d, b:b + h, cc:cc + ww]
    return out


def linear_axis(v, axis, out_n):
    n = v.shape[axis]
    if n == out_n:
        return v
    scale = n / out_n
    src = np.maximum((np.arange(out_n) + 0.5) * scale - 0.5, 0.0)
    i0 = np.floor(src).astype(int)
    i1 = np.minimum(i0 + 1, n - 1)
    lam = src - i0
    a = np.take(v, i0, axis=axis)
    b = np.take(v, i1, axis=axis)
    shape = [1] * v.ndim
    shape[axis] = out_n
    lam = lam.reshape(shape)
    return a * (1 - lam) + b * lam


def trilinear(v, size):
    for axis in range(3):
        v = linear_axis(v, axis, size[axis])
    return v


def nearest(v, size):
    for axis in range(3):
        n = v.shape[axis]
        if n == size[axis]:
            continue
        idx = np.minimum(np.floor(np.arange(size[axis]) * (n / size[axis])).astype(int), n - 1)
        v = np.take(v, idx, axis=axis)
    return v


def importance_map(roi, sigma_scale):
    m = np.ones(roi)
    for i, n in enumerate(roi):
        sigma = n * sigma_scale
        x = np.arange(n) - (n - 1) / 2.0
        g = np.exp(x * x / (-2.0 * sigma * sigma))
        shape = [1, 1, 1]
        shape[i] = n
        m = m * g.reshape(shape)
    return np.maximum(m, m[m > 0].min())


def window_starts(size, roi, overlap):
    starts = []
    for n, r in zip(size, roi):
        interval = r if r == n else max(int(r * (1 - overlap)), 1)
        count = 1
        for d in range(int(math.ceil(n / interval))):
            if d * interval + r >= n:
                count = d + 1
                break
        starts.append([k * interval - max(k * interval + r - n, 0) for k in range(count)])
    return starts


def sliding_window(x, roi, overlap, blending, sigma_scale, predict):
    """x is [C, D, H, W]; returns [K, D, H, W]."""
    size = x.shape[1:]
    pads = []
    for n, r in zip(size, roi):
        diff = max(r - n, 0)
        pads.append((diff // 2, diff - diff // 2))
    xp = np.pad(x, [(0, 0)] + pads)
    psize = xp.shape[1:]
    roi = [min(r, n) for r, n in zip(roi, psize)]
    imp = importance_map(roi, sigma_scale) if blending == "gaussian" else np.ones(roi)
    total = None
    weight = np.zeros(psize)
    s0, s1, s2 = window_starts(psize, roi, overlap)
    for d in s0:
        for h in s1:
            for w in s2:
                region = (slice(d, d + roi[0]), slice(h, h + roi[1]), slice(w, w + roi[2]))
                out = predict(xp[(slice(None),) + region])
                if total is None:
                    total = np.zeros((out.shape[0],) + tuple(psize))
                total[(slice(None),) + region] += out * imp
                weight[region] += imp
    blended = total / weight
    return blended[:, pads[0][0]:pads[0][0] + size[0], pads[1][0]:pads[1][0] + size[1],
                   pads[2][0]:pads[2][0] + size[2]]


def record(out, name, array):
    array = np.asarray(array, dtype=np.float64)
    out.write("%s %d %s\n" % (name, array.ndim, " ".join(str(n) for n in array.shape)))
    out.write(" ".join("%.9g" % v for v in array.ravel()) + "\n")


def main():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "volume_reference.txt")
    w, bias = conv_weights()
    predict = lambda window: conv3d(window, w, bias)  # noqa: E731
    with open(path, "w") as out:
        v = test_volume((3, 4, 5))
        record(out, "resample_input", v)
        record(out, "trilinear_5_3_8", trilinear(v, (5, 3, 8)))
        record(out, "nearest_5_3_8", nearest(v, (5, 3, 8)))
        record(out, "importance_4_5_6", importance_map((4, 5, 6), 0.125))
        big = test_volume((6, 7, 9))
        record(out, "window_input", big)
        record(out, "conv_whole", predict(big[None]))
        record(out, "window_gaussian_4_4_4_o05", sliding_window(big[None], (4, 4, 4), 0.5, "gaussian", 0.125, predict))
        record(out, "window_constant_5_3_4_o025",
               sliding_window(big[None], (5, 3, 4), 0.25, "constant", 0.125, predict))
        small = test_volume((3, 5, 2))
        record(out, "small_input", small)
        record(out, "window_padded_4_4_4",
               sliding_window(small[None], (4, 4, 4), 0.25, "gaussian", 0.25, predict))


if __name__ == "__main__":
    main()
