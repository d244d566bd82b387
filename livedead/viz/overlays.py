"""Overlays of predictions on the input, as RGB arrays (no matplotlib, so inference draws them too).

Training overlays follow the original study: the input in grey, true positives in green, and
errors (false positives or false negatives) in red for Cy5 and in blue for DAPI. Prediction
overlays show the counted nuclei: live green, dead red.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from skimage.segmentation import find_boundaries

GREEN, RED, BLUE = (np.array(c, np.float32) for c in ((0.1, 0.9, 0.1), (1.0, 0.1, 0.1), (0.15, 0.35, 1.0)))


GREY_PERCENTILES = (1, 99)


def to_grey(image: np.ndarray, levels: tuple[float, float] | None = None) -> np.ndarray:
    """Scale an image to [0, 1] between ``levels``, by default its 1st and 99th percentiles.

    >>> to_grey(np.arange(101.0))[[0, 1, 50, 99, 100]].round(2).tolist()
    [0.0, 0.0, 0.5, 1.0, 1.0]
    """
    lo, hi = levels if levels is not None else np.percentile(image, GREY_PERCENTILES)
    return np.clip((image - lo) / max(hi - lo, 1e-6), 0, 1).astype(np.float32)


def grey_levels(bands: Iterable[np.ndarray], total_px: int, sample_px: int = 16_000_000) -> tuple[float, float]:
    """The levels :func:`to_grey` takes by default, of an image of ``total_px`` pixels given a band of rows at
    a time.

    Pixels of 8 or 16 bits are counted in a histogram, from which the percentiles are exactly numpy's
    (linear interpolation); other pixels are sampled (every few, so as to keep ``sample_px``), and
    exact when the sample is all of them.

    >>> x = np.random.default_rng(0).integers(0, 4000, (300, 200)).astype(np.uint16)
    >>> grey_levels([x[:120], x[120:]], x.size) == tuple(np.percentile(x, GREY_PERCENTILES))
    True
    """
    counts, low, sample = np.zeros(0, np.int64), 0, []
    step = max(1, -(-total_px // sample_px))
    for band in bands:
        if np.issubdtype(band.dtype, np.integer) and band.dtype.itemsize <= 2:
            lo = int(band.min()) if band.size else low
            if counts.size and lo < low:  # the histogram starts at the smallest value seen
                counts = np.concatenate([np.zeros(low - lo, np.int64), counts])
            low = lo if not counts.size else min(lo, low)
            found = np.bincount((band.astype(np.int64) - low).ravel())
            counts = np.pad(counts, (0, max(0, found.size - counts.size)))
            counts[: found.size] += found
        else:
            sample.append(np.asarray(band).ravel()[::step])
    if sample:
        lo, hi = np.percentile(np.concatenate(sample), GREY_PERCENTILES)
        return float(lo), float(hi)
    return _histogram_percentile(counts, low, GREY_PERCENTILES[0]), _histogram_percentile(
        counts, low, GREY_PERCENTILES[1]
    )


def _histogram_percentile(counts: np.ndarray, low: int, q: float) -> float:
    """numpy's ``percentile`` (linear method, as its ``_lerp`` computes it) of the values whose histogram,
    from the value ``low``, is ``counts``."""
    n = int(counts.sum())
    cum = np.cumsum(counts)
    index = np.float64(q) / 100 * (n - 1)
    below = np.floor(index)
    gamma = index - below
    a = np.float64(np.searchsorted(cum, int(below), side="right") + low)
    b = np.float64(np.searchsorted(cum, min(int(below) + 1, n - 1), side="right") + low)
    diff = b - a
    return float(b - diff * (1 - gamma) if gamma >= 0.5 else a + diff * gamma)


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
    classes = np.zeros(len(dead) + 1, np.uint8)
    classes[1:] = np.where(dead, 2, 1)
    return outlined(image, outlines(instances, classes[instances]))


OUTLINE_COLOURS = np.array([(0, 0, 0), (0.1, 0.9, 0.1), (1.0, 0.15, 0.15)], np.float32)
"""The outline of a live (1) and of a dead (2) nucleus."""


def outlines(instances: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """The class (1 live, 2 dead) of each nucleus's inner boundary pixels, 0 elsewhere (uint8). Rows at a
    band's edges need the row beyond: give one more above and below, and keep the middle."""
    return np.where(find_boundaries(instances, mode="inner"), classes, 0).astype(np.uint8)


def outlined(image: np.ndarray, edges: np.ndarray, levels: tuple[float, float] | None = None) -> np.ndarray:
    """uint8 RGB of an image (or a band of its rows, with the whole image's ``levels``) in grey, with the
    outlines of :func:`outlines` drawn in their colours."""
    rgb = np.repeat(to_grey(image, levels)[..., None], 3, axis=-1)
    edge = edges > 0
    rgb[edge] = OUTLINE_COLOURS[edges[edge]]
    return (rgb * 255).astype(np.uint8)
