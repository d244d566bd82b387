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

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from livedead.data.tiling import tile_starts
from livedead.data.transforms import Normalization, normalize_
from livedead.errors import LivedeadError
from livedead.model.checkpoint import load_network


class ImageRows(Protocol):
    """An image that can be read a band of rows at a time: a numpy array, np.memmap, zarr array, h5py dataset."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    def __getitem__(self, key: Any) -> Any: ...


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
    image: ImageRows,
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
    """Class probabilities (C, H, W) float32 for one raw (H, W) image: :func:`predict_bands` in one band."""
    ((_, probs),) = predict_bands(model, image, image.shape[0], mode, overlap, blending, window, margin,
                                  batch_size, tta, device, on_batch)  # fmt: skip
    return probs


def predict_bands(
    model: LoadedModel,
    image: ImageRows,
    rows: int,
    mode: str = "blend",
    overlap: float = 0.5,
    blending: str = "gaussian",
    window: int | None = None,
    margin: int = 32,
    batch_size: int = 16,
    tta: bool = False,
    device: str | torch.device = "cpu",
    on_batch: Callable[[int, int], None] | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Class probabilities of a raw (H, W) image in bands of ``rows`` rows, top to bottom: (first row, (C, rows, W)).

    ``image`` is anything that slices as ``image[y0:y1]`` (a numpy array, a memory-mapped TIFF, a
    zarr array, an h5py dataset): it is read a window's height at a time, and only the rows that
    windows still add to are held, so memory is bounded by the batch and a band, not the image.
    The windows, their batches and the order their probabilities are summed in are those of the
    whole image, so the bands put together are the one-band result, bit for bit. ``on_batch(done,
    total)`` hears of each batch of windows (a viewer's progress bar; it may raise to stop).
    """
    h, w = image.shape
    tile = model.tile
    if h < tile or w < tile:
        raise LivedeadError(f"image of {h}x{w} px: expected at least one {tile}x{tile} tile")
    # per-tile percentiles are each window's own, as training scaled each tile: bands need nothing more
    per_window = model.normalization.mode == "percentile"
    if mode == "blend":
        if not 0 <= overlap < 1:
            raise LivedeadError(f"config key 'overlap': expected in [0, 1), found {overlap}")
        size = window or tile
        stride = max(1, round(size * (1 - overlap)))
        weight = gaussian_map(size) if blending == "gaussian" else np.ones((size, size), np.float32)
        keep = 0
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
    corners = [(int(y), int(x0)) for y in ys for x0 in xs]
    band = _Band(len(model.class_names), w, min(rows, h) + size, weight is not None)
    seen = _Rows(model, image)
    for a in range(0, len(corners), per_batch):
        group = corners[a : a + per_batch]
        x = seen.rows(group[0][0], group[-1][0] + size)
        batch = torch.stack([x[y - seen.start : y - seen.start + size, x0 : x0 + size] for y, x0 in group])[:, None]
        if per_window:
            batch = normalize_(batch, model.normalization)
        probs = _probs(model.net, batch.to(device), tta).float().cpu().numpy()
        for (y, x0), p in zip(group, probs, strict=True):
            if weight is not None:
                band.add(y, x0, p * weight, weight)
            else:
                # keep the centre; at the image border keep the window out to the edge
                t = 0 if y == 0 else keep
                lft = 0 if x0 == 0 else keep
                b = size if y + size == h else size - keep
                r = size if x0 + size == w else size - keep
                band.put(y + t, x0 + lft, p[:, t:b, lft:r])
        if on_batch is not None:
            on_batch(a + len(group), len(corners))
        done = corners[a + per_batch][0] if a + per_batch < len(corners) else h  # later windows start lower
        while band.start + rows <= done or (done == h and band.start < h):
            yield band.start, band.take(min(rows, h - band.start))


class _Rows:
    """The rows of an image that the next windows need, read as they are reached: normalised, or raw for a
    model normalised by each window's percentiles (:func:`predict_bands` scales its windows)."""

    def __init__(self, model: LoadedModel, image: ImageRows) -> None:
        self.model, self.image = model, image
        self.raw = model.normalization.mode == "percentile"
        self.start, self.x = 0, torch.zeros((0, image.shape[1]))

    def rows(self, y0: int, y1: int) -> torch.Tensor:
        """Rows from ``y0`` (which never decreases) to at least ``y1``; row ``y0`` is the tensor's first."""
        end = self.start + self.x.shape[0]
        self.x = self.x[y0 - self.start :] if y0 < end else self.x[:0]
        self.start, end = y0, max(end, y0)
        if y1 > end:
            pixels = np.asarray(self.image[end:y1])
            if np.issubdtype(pixels.dtype, np.floating) and not np.isfinite(pixels).all():
                bad = int(np.count_nonzero(~np.isfinite(pixels)))
                raise LivedeadError(f"rows {end} to {y1}: expected finite pixels, found {bad} NaN or infinite")
            rows = torch.tensor(pixels, dtype=torch.float32) if self.raw else self.model.normalize(pixels)
            self.x = torch.cat([self.x, rows])
        return self.x


class _Band:
    """The rows that windows are still adding to: summed probabilities and weights from row ``start``."""

    def __init__(self, classes: int, width: int, capacity: int, weighted: bool) -> None:
        self.start = 0
        self.out = np.zeros((classes, capacity, width), np.float32)
        self.norm = np.zeros((capacity, width), np.float32) if weighted else None

    def _room(self, y1: int) -> None:
        if y1 - self.start > self.out.shape[1]:  # a window reaches past the buffer: grow it
            grow = y1 - self.start - self.out.shape[1]
            self.out = np.concatenate([self.out, np.zeros((self.out.shape[0], grow, self.out.shape[2]), np.float32)], 1)
            if self.norm is not None:
                self.norm = np.concatenate([self.norm, np.zeros((grow, self.norm.shape[1]), np.float32)])

    def add(self, y: int, x0: int, p: np.ndarray, weight: np.ndarray) -> None:
        assert self.norm is not None
        size_y, size_x = weight.shape
        self._room(y + size_y)
        r = y - self.start
        self.out[:, r : r + size_y, x0 : x0 + size_x] += p
        self.norm[r : r + size_y, x0 : x0 + size_x] += weight

    def put(self, y: int, x0: int, p: np.ndarray) -> None:
        self._room(y + p.shape[1])
        r = y - self.start
        self.out[:, r : r + p.shape[1], x0 : x0 + p.shape[2]] = p

    def take(self, n: int) -> np.ndarray:
        """The first ``n`` rows, finished (divided by their weights); the buffer moves on by ``n`` rows."""
        done = self.out[:, :n].copy()
        if self.norm is not None:
            done /= self.norm[:n]
        _shift_rows(self.out, n)
        if self.norm is not None:
            _shift_rows(self.norm, n)
        self.start += n
        return done


def _shift_rows(buffer: np.ndarray, n: int) -> None:
    """Move a buffer's rows (its axis -2) up by ``n`` in place, zeros below: in blocks of ``n`` rows, whose
    sources and destinations never overlap, so no second buffer is made."""
    rows = buffer.shape[-2]
    for y in range(0, rows - n, n):
        end = min(y + n, rows - n)
        buffer[..., y:end, :] = buffer[..., y + n : end + n, :]
    buffer[..., max(0, rows - n) :, :] = 0
