"""Overlays of predictions on the input, as RGB arrays (no matplotlib, so inference draws them too).

Training overlays follow the original study: the input in grey, true positives in green, and
errors (false positives or false negatives) in red for Cy5 and in blue for DAPI. Prediction
overlays show the counted nuclei: live green, dead red.
"""

from __future__ import annotations

import numpy as np
import torch
from skimage.segmentation import find_boundaries

GREEN, RED, BLUE = (np.array(c, np.float32) for c in ((0.1, 0.9, 0.1), (1.0, 0.1, 0.1), (0.15, 0.35, 1.0)))


def to_grey(image: np.ndarray) -> np.ndarray:
    """Scale an image to [0, 1] between its 1st and 99th percentiles.

    >>> to_grey(np.arange(101.0))[[0, 1, 50, 99, 100]].round(2).tolist()
    [0.0, 0.0, 0.5, 1.0, 1.0]
    """
    lo, hi = np.percentile(image, (1, 99))
    return np.clip((image - lo) / max(hi - lo, 1e-6), 0, 1).astype(np.float32)


def overlay(image: np.ndarray, label: np.ndarray, pred: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """RGB float overlay (H, W, 3) of one tile: TP green, Cy5 errors red, DAPI errors blue."""
    rgb = np.repeat(to_grey(image)[..., None], 3, axis=-1)
    wrong = pred != label
    cy5_err = wrong & ((label == 2) | (pred == 2))
    dapi_err = wrong & ~cy5_err & ((label == 1) | (pred == 1))
    for mask, colour in ((~wrong & (label > 0), GREEN), (cy5_err, RED), (dapi_err, BLUE)):
        rgb[mask] = (1 - alpha) * rgb[mask] + alpha * colour
    return rgb


def overlay_grid(
    images: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray,
    preds: torch.Tensor | np.ndarray,
    cols: int = 4,
) -> np.ndarray:
    """Overlays of several tiles as one uint8 (H, W, 3) grid with 2 px white gutters."""
    images, labels, preds = (np.asarray(x.cpu() if isinstance(x, torch.Tensor) else x) for x in (images, labels, preds))
    n, h, w = labels.shape
    cols = min(cols, n)
    rows = -(-n // cols)
    gap = 2
    grid = np.ones((rows * (h + gap) - gap, cols * (w + gap) - gap, 3), np.float32)
    for i in range(n):
        r, c = divmod(i, cols)
        grid[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = overlay(
            images[i], labels[i], preds[i]
        )
    return (grid * 255).round().astype(np.uint8)


def nuclei_overlay(image: np.ndarray, instances: np.ndarray, dead: np.ndarray) -> np.ndarray:
    """uint8 RGB of an image in grey with each counted nucleus outlined, green live and red dead,
    so that splits and merges show at a glance."""
    rgb = np.repeat(to_grey(image)[..., None], 3, axis=-1)
    edge = find_boundaries(instances, mode="inner")
    colour = np.zeros((len(dead) + 1, 3), np.float32)
    colour[1:] = np.where(dead[:, None], (1.0, 0.15, 0.15), (0.1, 0.9, 0.1))
    rgb[edge] = colour[instances[edge]]
    return (rgb * 255).astype(np.uint8)
