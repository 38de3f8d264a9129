"""The input and output contract between secondread's inference worker and a model.

The worker implements this same preprocessing in C++. Training and the
reference evaluation call these functions so that the committed model is
judged on exactly what the worker will feed it.
"""
import numpy as np
import torch
import torch.nn.functional as F


def preprocess(pixels, height=256, width=256, mean=0.5, std=0.25):
    """Stored pixel values (2-D array) -> float32 tensor [1, 1, height, width].

    Min-max scaling per image, then area resampling when shrinking (neither
    axis grows), bilinear (align_corners=False) otherwise, and none at the
    model's own size.
    """
    x = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32))
    lo, hi = x.min(), x.max()
    if hi > lo:
        x = (x - lo) / (hi - lo)
    else:
        x = torch.zeros_like(x)
    x = x[None, None]
    rows, cols = x.shape[2], x.shape[3]
    if (rows, cols) != (height, width):
        if rows >= height and cols >= width:
            x = F.interpolate(x, size=(height, width), mode="area")
        else:
            x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)
    return (x - mean) / std


def cell_centre(index, cells, pixels):
    """Pixel-index coordinate of the centre of heatmap cell `index` along one axis.

    Cell i covers [i * pixels / cells, (i + 1) * pixels / cells) in edge
    coordinates; subtracting 0.5 converts to pixel-index coordinates, where the
    centre of the first pixel is 0.
    """
    return (index + 0.5) * pixels / cells - 0.5


def heatmap_peak(heatmap, rows, cols):
    """Argmax of a 2-D heatmap, mapped to (row, col) in the original image."""
    h, w = heatmap.shape
    flat = int(np.argmax(heatmap))
    i, j = divmod(flat, w)
    return cell_centre(i, h, rows), cell_centre(j, w, cols)
