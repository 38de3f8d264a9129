"""The volume contract between secondread's inference worker and a volume model.

This module is the executable specification of the worker's volume math:
training, the reference evaluation and the tests call these functions, so a
model is judged on exactly what the worker will do. Every step is written
with plain PyTorch operations that LibTorch also has.

Input: modality values (HU, SUV, MR units) as float32 [D, H, W] in the
model's orientation (LPS: W along +x, H along +y, D along +z; the worker
reorients other series first), with spacing (z, y, x) mm.

1. Resample to the model's spacing: size n -> max(1, round(n * s / t)) per
   axis (t = 0 keeps the axis), `F.interpolate` trilinear with
   align_corners=False (the outer edges of the grid stay put), or nearest;
   nothing when the size is unchanged.
2. Intensity transform, statistics per volume:
   window: (x - (c - w/2)) / w clamped to [0, 1];
   range / suv_range: (x - low) / (high - low), clamped when clip;
   zscore: (x - mean) / std over all voxels (or the nonzero ones), std
   computed with N in the denominator; 0 everywhere when std is 0.
3. Sliding window (MONAI's sliding_window_inference): pad every axis
   smaller than the ROI with zeros, (diff // 2) before and the rest after;
   windows start every int(roi * (1 - overlap)) voxels (at least 1; the
   whole axis when it equals the ROI), the last pulled back to end at the
   edge; the network runs on sw_batch_size windows at a time; outputs
   (logits) are blended as sum(out * w) / sum(w) with w the importance map:
   a separable gaussian, sigma = roi * sigma_scale per axis, centred at
   (roi - 1) / 2, divided by its maximum (or all ones for constant); the
   padding is cropped off.
4. Activation: probabilities -> sigmoid per channel; label_map -> softmax
   over channels (channel 0 background).
5. Resample back (resample_back true): the probabilities, trilinear with
   align_corners=False, to the source size.
6. Label map: probabilities -> label k+1 where channel k is the largest
   probability at or above its label's threshold, else 0; label_map ->
   argmax.

Lesions are 26-connected components of a label's voxels
(`connected_components`).
"""
import re

import numpy as np
import torch
import torch.nn.functional as F


# ---------------------------------------------------------------- model.yaml

def _scalar(text):
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    if text in ("true", "false"):
        return text == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _flow(text):
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        inner = text[1:-1].strip()
        return [_scalar(p) for p in _split(inner)] if inner else []
    if text.startswith("{") and text.endswith("}"):
        out = {}
        for part in _split(text[1:-1]):
            k, _, v = part.partition(":")
            out[k.strip()] = _scalar(v)
        return out
    return _scalar(text)


def _split(text):
    parts, depth, cur, quote = [], 0, "", None
    for ch in text:
        if quote:
            cur += ch
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
            cur += ch
        elif ch in "[{":
            depth += 1
            cur += ch
        elif ch in "]}":
            depth -= 1
            cur += ch
        elif ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur)
    return parts


def parse_yaml(text, pyyaml=True):
    """The YAML subset model.yaml files use: block mappings and lists, flow
    lists and mappings of scalars, folded (>-) strings and comments. PyYAML
    (not a dependency) is used instead when it is installed, unless pyyaml is
    false."""
    if pyyaml:
        try:
            import yaml
            return yaml.safe_load(text)
        except ImportError:
            pass
    lines = []
    for raw in text.splitlines():
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        lines.append((len(raw) - len(raw.lstrip(" ")), raw.strip()))
    pos = 0

    def block(indent):
        nonlocal pos
        if pos < len(lines) and lines[pos][1].startswith("- "):
            out = []
            while pos < len(lines) and lines[pos][0] == indent and lines[pos][1].startswith("- "):
                ind, content = lines[pos]
                # A list item: re-read its content as a mapping at the item's inner indent.
                lines[pos] = (ind + 2, content[2:])
                out.append(block(ind + 2))
            return out
        out = {}
        while pos < len(lines) and lines[pos][0] == indent:
            content = lines[pos][1]
            m = re.match(r"^([A-Za-z0-9_.-]+):\s*(.*)$", content)
            if not m:
                return _flow(content) if not out else out
            key, rest = m.group(1), m.group(2)
            pos += 1
            if rest in (">-", ">", "|", "|-"):
                texts = []
                while pos < len(lines) and lines[pos][0] > indent:
                    texts.append(lines[pos][1])
                    pos += 1
                out[key] = " ".join(texts)
            elif rest == "":
                out[key] = block(lines[pos][0]) if pos < len(lines) and lines[pos][0] > indent else None
            else:
                out[key] = _flow(rest)
        return out

    return block(lines[0][0] if lines else 0)


def read_config(path):
    """The volume fields of a model.yaml as a flat dict with defaults filled in."""
    with open(path) as f:
        doc = parse_yaml(f.read())
    inp = doc["input"]
    if inp.get("kind") != "volume":
        raise ValueError("%s: input.kind is not volume" % path)
    sw = doc["sliding_window"]
    out = doc["output"]
    inten = inp.get("intensity", {"kind": "none"})
    return {
        "name": doc["name"],
        "axes": inp.get("axes", "DHW"),
        "orientation": inp.get("orientation", "LPS"),
        "spacing": [float(s) for s in inp.get("spacing", [0, 0, 0])],
        "interpolation": inp.get("interpolation", "linear"),
        "intensity": dict(inten),
        "roi": [int(r) for r in sw["roi"]],
        "overlap": float(sw.get("overlap", 0.25)),
        "blending": sw.get("blending", "gaussian"),
        "sigma_scale": float(sw.get("sigma_scale", 0.125)),
        "sw_batch_size": int(sw.get("batch_size", 1)),
        "output": out.get("kind", "label_map"),
        "resample_back": bool(out.get("resample_back", True)),
        "labels": out["labels"],
        "thresholds": [float(label["threshold"]) for label in out["labels"]],
        "modalities": doc.get("applicability", {}).get("modalities", []),
        "latest": int(doc.get("version_policy", {}).get("latest", 1)),
    }


# ---------------------------------------------------------------- the steps

def resampled_size(size, spacing, target):
    return [n if t == 0 else max(1, int(round(n * s / t))) for n, s, t in zip(size, spacing, target)]


def resample(x, size, mode="linear"):
    """[N, C, D, H, W] float tensor to spatial `size`."""
    size = [int(s) for s in size]
    if list(x.shape[2:]) == size:
        return x
    if mode == "nearest":
        return F.interpolate(x, size=size, mode="nearest")
    return F.interpolate(x, size=size, mode="trilinear", align_corners=False)


def apply_intensity(x, intensity):
    kind = intensity.get("kind", "none")
    if kind == "none":
        return x
    if kind == "window":
        c, w = float(intensity["center"]), float(intensity["width"])
        return ((x - (c - w / 2)) / w).clamp(0.0, 1.0)
    if kind in ("range", "suv_range"):
        lo, hi = float(intensity["low"]), float(intensity["high"])
        y = (x - lo) / (hi - lo)
        return y.clamp(0.0, 1.0) if intensity.get("clip", True) else y
    if kind == "zscore":
        sel = x[x != 0] if intensity.get("over", "all") == "nonzero" else x.reshape(-1)
        if sel.numel() == 0:
            return torch.zeros_like(x)
        sel = sel.double()
        mean = sel.mean()
        std = sel.std(unbiased=False)
        if float(std) == 0.0:
            return torch.zeros_like(x)
        return ((x.double() - mean) / std).float()
    raise ValueError("unknown intensity kind %r" % kind)


def importance_map(roi, blending="gaussian", sigma_scale=0.125):
    """[d, h, w] float32 weights for one window."""
    if blending == "constant":
        return torch.ones(roi)
    out = torch.ones(1)
    for i, n in enumerate(roi):
        sigma = max(n * sigma_scale, 1e-5)
        t = torch.arange(n, dtype=torch.float64) - (n - 1) / 2.0
        g = torch.exp(-(t * t) / (2.0 * sigma * sigma))
        out = out.unsqueeze(-1) * g.reshape((1,) * i + (n,))
    out = out.reshape(roi)
    out = out / out.max()
    return out.float().clamp_min(float(out[out > 0].min()))


def window_starts(size, roi, overlap):
    starts = []
    for n, r in zip(size, roi):
        step = r if r == n else max(int(r * (1 - overlap)), 1)
        axis = []
        idx = 0
        while True:
            s = idx * step
            s -= max(s + r - n, 0)
            axis.append(s)
            if idx * step + r >= n:
                break
            idx += 1
        starts.append(axis)
    return starts


def padding_for(size, roi):
    pads = []
    for n, r in zip(size, roi):
        diff = max(r - n, 0)
        pads.append((diff // 2, diff - diff // 2))
    return pads


def sliding_window(x, roi, overlap, predict, blending="gaussian", sigma_scale=0.125, batch_size=1):
    """Runs predict over windows of x [1, C, D, H, W]; returns blended [1, K, D, H, W]."""
    size = list(x.shape[2:])
    pads = padding_for(size, roi)
    if any(p != (0, 0) for p in pads):
        flat = []
        for before, after in reversed(pads):
            flat += [before, after]
        x = F.pad(x, flat, mode="constant", value=0.0)
    padded = list(x.shape[2:])
    starts = window_starts(padded, roi, overlap)
    weight = importance_map(roi, blending, sigma_scale).to(x.dtype)
    windows = [(a, b, c) for a in starts[0] for b in starts[1] for c in starts[2]]
    out = None
    norm = torch.zeros([1, 1] + padded, dtype=x.dtype)
    for i in range(0, len(windows), batch_size):
        chunk = windows[i:i + batch_size]
        batch = torch.cat([x[:, :, a:a + roi[0], b:b + roi[1], c:c + roi[2]] for a, b, c in chunk])
        y = predict(batch)
        if out is None:
            out = torch.zeros([1, y.shape[1]] + padded, dtype=y.dtype)
        for j, (a, b, c) in enumerate(chunk):
            out[0, :, a:a + roi[0], b:b + roi[1], c:c + roi[2]] += y[j] * weight
            norm[0, :, a:a + roi[0], b:b + roi[1], c:c + roi[2]] += weight
    out = out / norm
    (d0, _), (h0, _), (w0, _) = pads
    return out[:, :, d0:d0 + size[0], h0:h0 + size[1], w0:w0 + size[2]]


def preprocess(voxels, spacing, cfg):
    """float32 [D, H, W] source -> the model's input [1, 1, d, h, w]."""
    x = torch.from_numpy(np.ascontiguousarray(voxels, dtype=np.float32))[None, None]
    size = resampled_size(list(voxels.shape), spacing, cfg["spacing"])
    x = resample(x, size, cfg["interpolation"])
    return apply_intensity(x, cfg["intensity"])


def predict_volume(model, voxels, spacing, cfg):
    """Returns (probabilities [K, D, H, W] float32 numpy, label map uint8 [D, H, W]).

    `model` is a callable on [B, 1, d, h, w]; probabilities are on the source
    grid when resample_back is true, else on the model grid.
    """
    x = preprocess(voxels, spacing, cfg)

    def predict(batch):
        with torch.no_grad():
            return model(batch)

    logits = sliding_window(x, cfg["roi"], cfg["overlap"], predict, cfg["blending"], cfg["sigma_scale"],
                            cfg["sw_batch_size"])
    if cfg["output"] == "probabilities":
        prob = torch.sigmoid(logits)
    else:
        prob = torch.softmax(logits, dim=1)
    if cfg["resample_back"]:
        prob = resample(prob, list(voxels.shape), "linear")
    prob = prob[0]
    return prob.numpy(), labels_from(prob, cfg)


def labels_from(prob, cfg):
    """Label map (uint8 numpy) from [K, D, H, W] probabilities."""
    if cfg["output"] == "probabilities":
        th = torch.tensor(cfg["thresholds"], dtype=prob.dtype).reshape(-1, 1, 1, 1)
        masked = torch.where(prob >= th, prob, torch.full_like(prob, -1.0))
        best, idx = masked.max(dim=0)
        return torch.where(best >= 0, idx + 1, torch.zeros_like(idx)).to(torch.uint8).numpy()
    return prob.argmax(dim=0).to(torch.uint8).numpy()


def connected_components(mask):
    """26-connected components of a boolean [D, H, W] array.

    Returns (int32 ids, count), ids 1..count in order of each component's
    first voxel (C order), 0 outside. Max-pool propagation: each voxel takes
    the largest id among its 26 neighbours until nothing changes.
    """
    mask = np.asarray(mask, bool)
    ids = np.zeros(mask.shape, np.int32)
    if not mask.any():
        return ids, 0
    nz = np.nonzero(mask)
    lo = [int(a.min()) for a in nz]
    hi = [int(a.max()) + 1 for a in nz]
    sub = mask[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    m = torch.from_numpy(sub)[None, None]
    lab = torch.arange(1, sub.size + 1, dtype=torch.float64).reshape(m.shape) * m
    while True:
        nxt = F.max_pool3d(lab, 3, stride=1, padding=1) * m
        if torch.equal(nxt, lab):
            break
        lab = nxt
    lab = lab[0, 0].numpy()
    roots, inverse = np.unique(lab[sub], return_inverse=True)
    # Number components by their first voxel in C order.
    first = np.full(len(roots), np.iinfo(np.int64).max)
    np.minimum.at(first, inverse, np.arange(len(inverse)))
    order = np.argsort(first)
    rank = np.empty(len(roots), np.int32)
    rank[order] = np.arange(1, len(roots) + 1)
    out = np.zeros(sub.shape, np.int32)
    out[sub] = rank[inverse]
    ids[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = out
    return ids, len(roots)

