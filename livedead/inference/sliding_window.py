"""Whole-image prediction: sliding windows over a stitched well image, blended into one probability map.

Two ways to cover an image, both batched, with memory bounded by the batch and the image:

* ``blend`` (the default, as nnU-Net and MONAI): windows of the training tile size overlap by
  ``overlap``; each window's class probabilities are weighted by a Gaussian importance map
  (sigma = window / 8) or a constant, summed, and divided by the summed weights.
* ``crop``: larger windows (3 tiles by default) overlap by twice ``margin``; only each
  window's centre, the margin cropped off, is kept. Every pixel is computed about 1.5 times
  instead of about four times, and the margin keeps window edges out of the result.

``batch_size`` counts tile-sized windows, so larger windows go through the network in
proportionally smaller batches and memory stays bounded by the same number of pixels. The
network runs in channels-last memory format, which halves the cost of its convolutions on a CPU.

The image is normalised as the checkpoint records, once for the whole image, except per-tile
``percentile`` normalisation, which scales each window between its own percentiles, as training
scaled each tile: a day's dim and bright regions then reach the network as they did in training.

Optional flip test-time augmentation averages the identity, horizontal, vertical and double flips.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from livedead.data.tiling import tile_starts
from livedead.data.transforms import Normalization, normalize_
from livedead.errors import LivedeadError
from livedead.model.checkpoint import load_network


@dataclass
class LoadedModel:
    """A trained network with what it needs to see images as it did in training."""

    net: nn.Module
    class_names: list[str]
    normalization: Normalization
    tile: int
    divisor: int
    foreground_threshold: float | None = None
    """P(nucleus) above which a pixel is counted as nucleus, calibrated on the validation split
    (None for checkpoints written before the calibration: counting then uses the argmax)."""
    net_spec: dict[str, Any] | None = None
    """How to rebuild the network (its ``_target_`` and arguments), as the checkpoint records it."""
    pixel_size_um: float | None = None
    """The pixel size it was trained at (None: unknown), to which ``predict`` rescales images."""

    def normalize(self, image: np.ndarray) -> torch.Tensor:
        """A raw (H, W) image as float32 network input, normalised as in training; the image itself is left
        as it is (a float32 image would share its memory with the tensor normalised in place)."""
        x = torch.tensor(image, dtype=torch.float32)[None, None]
        return normalize_(x, self.normalization)[0, 0]


def load_model(ckpt: str | Path, device: str | torch.device = "cpu", tile: int = 160) -> LoadedModel:
    """Rebuild the network of a livedead checkpoint, whatever its class, and load its weights."""
    net, record = load_network(ckpt)
    assert record.normalization is not None  # load_network refuses a checkpoint without
    # channels-last: oneDNN's convolutions run about twice as fast in it on a CPU (and GPUs favour it too)
    net.to(device, memory_format=torch.channels_last)
    divisor = int(getattr(net, "size_divisor", 1))
    normalization = Normalization.from_dict(record.normalization)
    return LoadedModel(
        net, record.class_names, normalization, tile, divisor, record.foreground_threshold, record.net,
        record.pixel_size_um,
    )  # fmt: skip


def gaussian_map(size: int, sigma_scale: float = 1 / 8) -> np.ndarray:
    """nnU-Net's importance map: a Gaussian centred on the window, sigma = size * sigma_scale, max 1."""
    centre = (size - 1) / 2
    x = np.arange(size, dtype=np.float64)
    g = np.exp(-((x - centre) ** 2) / (2 * (size * sigma_scale) ** 2))
    w = np.outer(g, g)
    w /= w.max()
    return np.maximum(w, w[w > 0].min()).astype(np.float32)


@torch.no_grad()
def _probs(net: nn.Module, batch: torch.Tensor, tta: bool) -> torch.Tensor:
    batch = batch.contiguous(memory_format=torch.channels_last)
    if not tta:
        return net(batch).softmax(1)
    out = torch.zeros(0)
    for dims in ((), (-1,), (-2,), (-2, -1)):
        p = net(batch.flip(dims) if dims else batch).softmax(1)
        p = p.flip(dims) if dims else p
        out = p if out.numel() == 0 else out + p
    return out / 4


def predict_image(
    model: LoadedModel,
    image: np.ndarray,
    mode: str = "blend",
    overlap: float = 0.5,
    blending: str = "gaussian",
    window: int | None = None,
    margin: int = 32,
    batch_size: int = 16,
    tta: bool = False,
    device: str | torch.device = "cpu",
    on_batch: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Class probabilities (C, H, W) float32 for one raw (H, W) image.

    ``on_batch(done, total)`` hears of each batch of windows (a viewer's progress bar; it may raise to stop)."""
    h, w = image.shape
    tile = model.tile
    if h < tile or w < tile:
        raise LivedeadError(f"image of {h}x{w} px: expected at least one {tile}x{tile} tile")
    # per-tile percentiles are each window's own, as training scaled each tile; other modes scale the image once
    per_window = model.normalization.mode == "percentile"
    x = torch.tensor(image, dtype=torch.float32) if per_window else model.normalize(image)
    if mode == "blend":
        if not 0 <= overlap < 1:
            raise LivedeadError(f"config key 'overlap': expected in [0, 1), found {overlap}")
        size = window or tile
        stride = max(1, round(size * (1 - overlap)))
        weight = gaussian_map(size) if blending == "gaussian" else np.ones((size, size), np.float32)
        keep = None
    elif mode == "crop":
        size = window or 3 * tile
        size = min(size, h - h % model.divisor, w - w % model.divisor)
        if size < tile or 2 * margin >= size:
            raise LivedeadError(f"config key 'window': expected {tile} <= window and 2*margin < window, found {size}")
        stride = size - 2 * margin
        weight, keep = None, margin
    else:
        raise LivedeadError(f"config key 'mode': expected 'blend' or 'crop', found {mode!r}")
    if size % model.divisor:
        raise LivedeadError(f"config key 'window': expected a multiple of {model.divisor}, found {size}")
    per_batch = max(1, batch_size * tile * tile // (size * size))  # batch_size counts tile-sized windows
    ys, xs = tile_starts(h, size, stride), tile_starts(w, size, stride)
    corners = [(y, x0) for y in ys for x0 in xs]
    n_classes = len(model.class_names)
    out = np.zeros((n_classes, h, w), np.float32)
    norm = np.zeros((h, w), np.float32) if weight is not None else None
    for a in range(0, len(corners), per_batch):
        group = corners[a : a + per_batch]
        batch = torch.stack([x[y : y + size, x0 : x0 + size] for y, x0 in group])[:, None].to(device)
        if per_window:
            batch = normalize_(batch, model.normalization)
        probs = _probs(model.net, batch, tta).float().cpu().numpy()
        for (y, x0), p in zip(group, probs, strict=True):
            if weight is not None:
                out[:, y : y + size, x0 : x0 + size] += p * weight
                norm[y : y + size, x0 : x0 + size] += weight
            else:
                # keep the centre; at the image border keep the window out to the edge
                t = 0 if y == 0 else keep
                lft = 0 if x0 == 0 else keep
                b = size if y + size == h else size - keep
                r = size if x0 + size == w else size - keep
                out[:, y + t : y + b, x0 + lft : x0 + r] = p[:, t:b, lft:r]
        if on_batch is not None:
            on_batch(a + len(group), len(corners))
    if norm is not None:
        out /= norm
    return out
