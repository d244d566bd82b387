"""The LightningDataModule that streams chunk-aligned batches from an HDF5 tile file.

It reads the files written by :mod:`livedead.prepare` and any HDF5 file in the original
study's layout: ``/images`` (N, 1, H, W) uint8, uint16 or float32 and ``/labels`` (N, H, W)
integer classes (names configurable); ``/class_counts`` and ``/origin`` are optional,
compression (gzip, lzf) and chunking are free.

The read path, which decides how fast everything runs:

* a batch is one or two slices inside one chunk (:mod:`livedead.batching`), read with
  ``read_direct`` into a small ring of reused buffers: no fancy indexing, no per-sample
  collate, no fresh allocation (and its page faults) per batch;
* a compressed file is read a whole chunk at a time and the chunk serves all of its batches,
  in chunk-major order, so no chunk is decompressed twice;
* each worker opens the file lazily; no handle is open when workers fork;
* labels stay uint8 and images in their source dtype until they reach the device, where
  normalisation and augmentation run on the whole batch (:meth:`on_after_batch_transfer`).

The tensors of a batch live in reused buffers (that reuse is what keeps page faults out of the
read path): code that keeps a batch beyond the next few must ``clone()`` it.

Everything that can be checked before training is checked in :meth:`setup`, and value checks
run on every batch read; both fail with one line naming the file and dataset.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader, Dataset, get_worker_info

from livedead.batching import Batch, ChunkBatchSampler, Slice, chunk_segments
from livedead.errors import LivedeadError, atomic_path
from livedead.prepare import prepare_synthetic

NORMALIZE_MODES = ("dataset", "percentile", "none")
CACHE_VERSION = 1
OUTPUT_RING = 3  # normalised batches alive at once: the one in use, its backward, one spare


@dataclass
class TileFileInfo:
    """What :meth:`TileDataModule.setup` learns about a tile file, before any training."""

    path: Path
    n: int
    height: int
    width: int
    dtype: np.dtype
    chunk: int
    compressed: bool
    class_counts: np.ndarray  # (N, C) per tile
    train_ranges: list[Slice]
    val_ranges: list[Slice]
    split_note: str


def _h5_open(path: Path) -> h5py.File:
    if not path.exists():
        raise LivedeadError(f"{path}: tile file not found (config key 'data.path')")
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise LivedeadError(f"{path}: expected a readable HDF5 tile file, found {err}") from None


def normalize_(x: torch.Tensor, normalization: dict[str, Any]) -> torch.Tensor:
    """In place: float32 pixels (B, 1, H, W) to network input, as :meth:`TileDataModule.normalization`
    records it (checkpoints store that record, so inference normalises exactly as training did)."""
    mode = normalization["mode"]
    if mode == "dataset":
        return x.mul_(1.0 / normalization["std"]).add_(-normalization["mean"] / normalization["std"])
    if mode == "percentile":
        flat = x.flatten(1)
        flat = flat[:, :: max(1, flat.shape[1] // 4_000_000)]  # torch.quantile's input limit; tiles stay exact
        lo_p, hi_p = normalization["percentiles"]
        q = torch.quantile(flat, torch.tensor([lo_p / 100, hi_p / 100], device=x.device), dim=1)
        lo, hi = q[0].view(-1, 1, 1, 1), q[1].view(-1, 1, 1, 1)
        return x.sub_(lo).div_((hi - lo).clamp_min(1e-6))
    return x


class FileCache:
    """Derived data kept beside a tile file (``<file>.livedead-cache.npz``), keyed to its size and mtime.

    If the folder is read-only the values are only kept in memory.
    """

    def __init__(self, path: Path) -> None:
        st = path.stat()
        self.key = f"{CACHE_VERSION}:{st.st_size}:{st.st_mtime_ns}"
        self.path = path.with_name(path.name + ".livedead-cache.npz")
        self.data: dict[str, np.ndarray] = {}
        if self.path.exists():
            try:
                with np.load(self.path, allow_pickle=False) as z:
                    if str(z["key"]) == self.key:
                        self.data = {k: z[k] for k in z.files if k != "key"}
            except (OSError, ValueError, KeyError):
                self.data = {}

    def get(self, name: str) -> np.ndarray | None:
        return self.data.get(name)

    def put(self, name: str, value: np.ndarray) -> None:
        self.data[name] = value
        try:
            with atomic_path(self.path) as tmp, open(tmp, "wb") as f:
                np.savez(f, key=np.array(self.key), **self.data)
        except OSError as err:
            rank_zero_info(f"livedead: cannot write the cache {self.path} ({err}); keeping it in memory")


def _count_classes(labels: h5py.Dataset, num_classes: int, chunk: int) -> np.ndarray:
    """One streaming pass over the labels: class counts per tile."""
    counts = np.zeros((labels.shape[0], num_classes), np.int64)
    buf = np.empty((chunk, *labels.shape[1:]), labels.dtype)
    for a in range(0, labels.shape[0], chunk):
        b = min(a + chunk, labels.shape[0])
        labels.read_direct(buf, np.s_[a:b], np.s_[: b - a])
        flat = buf[: b - a].reshape(b - a, -1)
        _check_labels(flat, num_classes, labels, a, b)
        for c in range(num_classes):
            counts[:, c][a:b] = np.count_nonzero(flat == c, axis=1)
    return counts


def _check_labels(flat: np.ndarray, num_classes: int, ds: h5py.Dataset, a: int, b: int) -> None:
    lo, hi = int(flat.min()), int(flat.max())
    if lo < 0 or hi >= num_classes:
        raise LivedeadError(
            f"{ds.file.filename}: dataset '{ds.name}': expected classes 0..{num_classes - 1}, "
            f"found {hi if hi >= num_classes else lo} in tiles {a}..{b - 1}"
        )


def inspect_tile_file(
    path: Path,
    images_key: str,
    labels_key: str,
    counts_key: str,
    num_classes: int,
    batch_size: int,
    val_fraction: float,
    seed: int,
) -> TileFileInfo:
    """Validate a tile file's structure and work out its chunking, class counts and split."""
    with _h5_open(path) as f:
        for key in (images_key, labels_key):
            if key not in f:
                raise LivedeadError(f"{path}: dataset '/{key}' not found (found {sorted(f.keys())})")
        images, labels = f[images_key], f[labels_key]
        if images.ndim != 4 or images.shape[1] != 1:
            raise LivedeadError(f"{path}: dataset '/{images_key}': expected (N, 1, H, W), found shape {images.shape}")
        if labels.ndim != 3:
            raise LivedeadError(f"{path}: dataset '/{labels_key}': expected (N, H, W), found shape {labels.shape}")
        if images.shape[0] != labels.shape[0] or images.shape[2:] != labels.shape[1:]:
            raise LivedeadError(
                f"{path}: datasets '/{images_key}' {images.shape} and '/{labels_key}' {labels.shape} "
                "disagree in N, H or W"
            )
        if images.dtype not in (np.uint8, np.uint16, np.float32):
            raise LivedeadError(
                f"{path}: dataset '/{images_key}': expected uint8, uint16 or float32, found {images.dtype}"
            )
        if not np.issubdtype(labels.dtype, np.integer):
            raise LivedeadError(f"{path}: dataset '/{labels_key}': expected integer classes, found {labels.dtype}")
        n = images.shape[0]
        if n == 0:
            raise LivedeadError(f"{path}: dataset '/{images_key}': expected tiles, found an empty dataset")
        if n < batch_size:
            raise LivedeadError(
                f"{path}: dataset '/{images_key}': expected at least one batch of {batch_size} tiles, found {n} "
                "(config key 'data.batch_size')"
            )
        chunk = images.chunks[0] if images.chunks else n
        if images.chunks and batch_size > chunk:
            raise LivedeadError(
                f"{path}: config key 'data.batch_size': expected <= the file's chunk of {chunk} tiles, "
                f"found {batch_size} (a batch never crosses a chunk)"
            )
        compressed = images.compression is not None or labels.compression is not None
        declared = f.attrs.get("n_train")
        if counts_key in f and f[counts_key].shape == (n, num_classes):
            counts = f[counts_key][:]
        else:
            cache = FileCache(path)
            counts = cache.get(f"class_counts_{labels_key}")
            if counts is None:
                rank_zero_info(f"livedead: counting classes in {path}:/{labels_key} (cached for next time)")
                counts = _count_classes(labels, num_classes, chunk)
                cache.put(f"class_counts_{labels_key}", counts)

    if (counts.sum(axis=0) > 0).sum() < 2:
        raise LivedeadError(
            f"{path}: dataset '/{labels_key}': expected at least two classes over all tiles, "
            f"found only class {int(np.argmax(counts.sum(axis=0)))}"
        )
    if declared is not None and 0 < int(declared) < n:
        n_train = int(declared)
        train, val = [(0, n_train)], [(n_train, n)]
        note = f"declared by the file: tiles [0, {n_train}) train, [{n_train}, {n}) validate"
    else:
        train, val, note = _batch_split(n, chunk, batch_size, val_fraction, seed)
    return TileFileInfo(
        path, n, images.shape[2], images.shape[3], images.dtype, chunk, compressed, counts, train, val, note
    )


def _batch_split(
    n: int, chunk: int, batch_size: int, val_fraction: float, seed: int
) -> tuple[list[Slice], list[Slice], str]:
    """Whole batches, about ``val_fraction`` of them, to validation: fixed by the seed (the study's split)."""
    blocks = [b[0] for seg in chunk_segments([(0, n)], chunk) for b in _fixed_batches(seg, batch_size)]
    n_val = max(1, round(val_fraction * len(blocks)))
    if n_val >= len(blocks):
        raise LivedeadError(
            f"tile file: expected more than {n_val} batches of {batch_size} to split train from validation, "
            f"found {len(blocks)}"
        )
    is_val = np.zeros(len(blocks), bool)
    is_val[np.random.default_rng(seed).choice(len(blocks), n_val, replace=False)] = True
    train = [blk for blk, v in zip(blocks, is_val, strict=True) if not v]
    val = [blk for blk, v in zip(blocks, is_val, strict=True) if v]
    note = f"{len(val)} of {len(blocks)} batches of {batch_size} validate, chosen with seed {seed}"
    return _merge(train), _merge(val), note


def _fixed_batches(seg: Slice, batch_size: int) -> list[Batch]:
    return [((a, min(a + batch_size, seg[1])),) for a in range(seg[0], seg[1], batch_size)]


def _merge(ranges: list[Slice]) -> list[Slice]:
    out: list[Slice] = []
    for a, b in ranges:
        if out and out[-1][1] == a:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


class TileBatches(Dataset):
    """Map-style dataset whose index is a whole batch (a tuple of slices); returns a dict of tensors.

    The returned tensors live in a small ring of reused buffers. The ring is longer than the
    number of batches that can be in flight (DataLoader's prefetch, Lightning's one-batch
    look-ahead, the batch in use), so a batch is never overwritten while still in use.
    """

    def __init__(
        self,
        info: TileFileInfo,
        images_key: str,
        labels_key: str,
        num_classes: int,
        max_batch: int,
        ring: int,
    ) -> None:
        self.path = info.path
        self.images_key, self.labels_key = images_key, labels_key
        self.num_classes = num_classes
        self.max_batch = max_batch
        self.ring = ring
        self.chunk = info.chunk
        self.compressed = info.compressed
        self.float_images = info.dtype == np.float32
        self.n = info.n
        self._file: h5py.File | None = None
        self._datasets: tuple[h5py.Dataset, h5py.Dataset] | None = None
        self._buffers: list[dict[str, np.ndarray]] = []
        self._tensors: list[dict[str, torch.Tensor]] = []
        self._next = 0
        self._chunk_id = -1
        self._chunk_data: dict[str, np.ndarray] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_file=None, _datasets=None, _buffers=[], _tensors=[], _chunk_data={}, _chunk_id=-1)
        return state

    def _open(self) -> None:
        self._file = h5py.File(self.path, "r")
        images, labels = self._file[self.images_key], self._file[self.labels_key]
        self._datasets = (images, labels)  # looked up once: a lookup per batch costs as much as a read
        shapes = {
            "image": ((self.max_batch, *images.shape[1:]), images.dtype),
            "label": ((self.max_batch, *labels.shape[1:]), np.dtype(np.uint8)),
            "index": ((self.max_batch,), np.dtype(np.int64)),
        }
        # In a worker the buffers live in shared memory: a batch then crosses to the main process
        # as a handle, not as a fresh copy (whose page faults would cost more than the read).
        shared = get_worker_info() is not None
        self._tensors = []
        for _ in range(self.ring):
            entry = {k: torch.from_numpy(np.empty(shape, dtype)) for k, (shape, dtype) in shapes.items()}
            self._tensors.append({k: t.share_memory_() if shared else t for k, t in entry.items()})
        self._buffers = [{k: t.numpy() for k, t in entry.items()} for entry in self._tensors]
        if self.compressed:
            self._chunk_data = {
                "image": np.empty((self.chunk, *images.shape[1:]), images.dtype),
                "label": np.empty((self.chunk, *labels.shape[1:]), labels.dtype),
            }

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file = self._datasets = None

    def __getitem__(self, batch: Batch) -> dict[str, torch.Tensor]:
        if self._file is None:
            self._open()
        assert self._file is not None
        slot = self._next
        buf = self._buffers[slot]
        self._next = (slot + 1) % self.ring
        images, labels = self._datasets
        n = 0
        for a, b in batch:
            dest = np.s_[n : n + b - a]
            if self.compressed:
                self._load_chunk(a // self.chunk, images, labels)
                base = self._chunk_id * self.chunk
                buf["image"][dest] = self._chunk_data["image"][a - base : b - base]
                buf["label"][dest] = self._chunk_data["label"][a - base : b - base]
            else:
                # into a contiguous view of the buffer: no destination selection to build
                images.read_direct(buf["image"][dest], np.s_[a:b])
                if labels.dtype == np.uint8:
                    labels.read_direct(buf["label"][dest], np.s_[a:b])
                else:
                    buf["label"][dest] = labels[a:b]
            buf["index"][dest] = np.arange(a, b)
            n += b - a
        self._check_values(buf, n, batch)
        return {k: t[:n] for k, t in self._tensors[slot].items()}

    def _load_chunk(self, chunk_id: int, images: h5py.Dataset, labels: h5py.Dataset) -> None:
        if chunk_id == self._chunk_id:
            return
        a = chunk_id * self.chunk
        b = min(a + self.chunk, self.n)
        images.read_direct(self._chunk_data["image"], np.s_[a:b], np.s_[: b - a])
        labels.read_direct(self._chunk_data["label"], np.s_[a:b], np.s_[: b - a])
        self._chunk_id = chunk_id

    def _check_values(self, buf: dict[str, np.ndarray], n: int, batch: Batch) -> None:
        a, b = batch[0][0], batch[-1][1]
        if int(buf["label"][:n].max()) >= self.num_classes:
            raise LivedeadError(
                f"{self.path}: dataset '/{self.labels_key}': expected classes 0..{self.num_classes - 1}, "
                f"found {int(buf['label'][:n].max())} in tiles {a}..{b - 1}"
            )
        if self.float_images and not np.isfinite(buf["image"][:n]).all():
            raise LivedeadError(
                f"{self.path}: dataset '/{self.images_key}': expected finite values, "
                f"found NaN or Inf in tiles {a}..{b - 1}"
            )


def dihedral_augment(
    image: torch.Tensor, label: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random flips and 90-degree rotations per tile, identical for image and label, on the whole batch."""
    k = torch.randint(0, 8, (image.shape[0],), generator=generator, device="cpu").to(image.device)
    image, label = image.clone(), label.clone()
    for g in range(1, 8):
        idx = (k == g).nonzero().squeeze(1)
        if idx.numel() == 0:
            continue
        im, lab = image[idx], label[idx]
        if g >= 4:
            im, lab = im.flip(-1), lab.flip(-1)
        im, lab = torch.rot90(im, g % 4, (-2, -1)), torch.rot90(lab, g % 4, (-2, -1))
        image[idx], label[idx] = im, lab
    return image, label


class TileDataModule(L.LightningDataModule):
    """Chunk-aligned HDF5 batches for training and validation (see the module docstring).

    Args:
        path: the tile file.
        batch_size: tiles per batch; at most the file's chunk length.
        images_key, labels_key, class_counts_key: dataset names.
        num_classes: label classes (0 background, 1 DAPI, 2 Cy5).
        val_fraction, seed: the split for files that do not declare ``attrs["n_train"]``, and the
            seed of the per-epoch batch order.
        normalize: ``dataset`` (mean and std of the training split, cached beside the file),
            ``percentile`` (each tile scaled between its own low and high percentiles) or ``none``.
        percentiles: the low and high percentiles of ``percentile`` mode.
        stats_tiles: at most this many training tiles, in whole chunks spread over the split,
            estimate the ``dataset`` statistics.
        augment: random flips and 90-degree rotations of training batches.
        num_workers, prefetch_factor, persistent_workers, pin_memory: DataLoader settings;
            ``pin_memory=None`` pins only when CUDA is available.
        synthetic: a :class:`livedead.synthetic.PlateSpec` as a dict: if ``path`` does not exist,
            :meth:`prepare_data` generates that plate and prepares it into ``path`` (cached).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        batch_size: int = 100,
        images_key: str = "images",
        labels_key: str = "labels",
        class_counts_key: str = "class_counts",
        num_classes: int = 3,
        val_fraction: float = 0.1,
        seed: int = 0,
        normalize: str = "dataset",
        percentiles: tuple[float, float] = (1.0, 99.0),
        stats_tiles: int = 20_000,
        augment: bool = True,
        num_workers: int = 2,
        prefetch_factor: int = 4,
        persistent_workers: bool = True,
        pin_memory: bool | None = None,
        synthetic: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if normalize not in NORMALIZE_MODES:
            raise LivedeadError(f"config key 'data.normalize': expected one of {NORMALIZE_MODES}, found {normalize!r}")
        if batch_size < 1:
            raise LivedeadError(f"config key 'data.batch_size': expected >= 1, found {batch_size}")
        self.save_hyperparameters(logger=False)
        self.hparams.path = str(path)  # plain types only: checkpoints load with weights_only=True
        self.hparams.percentiles = list(percentiles)
        self.path = Path(path)
        self.info: TileFileInfo | None = None
        self.mean = 0.0
        self.std = 1.0
        self._outputs: dict[tuple[torch.device, torch.Size], list[torch.Tensor]] = {}  # see normalize()
        self._output_slot = 0

    # -- setup ---------------------------------------------------------------------------
    def prepare_data(self) -> None:
        if self.hparams.synthetic is not None and not self.path.exists():
            rank_zero_info(f"livedead: generating the synthetic plate for {self.path} (first use; cached)")
            prepare_synthetic(self.path, dict(self.hparams.synthetic))

    def setup(self, stage: str | None = None) -> None:
        if self.info is not None:
            return
        hp = self.hparams
        self.info = inspect_tile_file(
            self.path,
            hp.images_key,
            hp.labels_key,
            hp.class_counts_key,
            hp.num_classes,
            hp.batch_size,
            hp.val_fraction,
            hp.seed,
        )
        if hp.normalize == "dataset":
            self.mean, self.std = self._dataset_stats()
        dataset = self._dataset()
        for ranges in (self.info.train_ranges, self.info.val_ranges):
            first = ranges[0][0]
            dataset[((first, min(first + hp.batch_size, ranges[0][1])),)]  # value checks before any worker starts
        dataset.close()  # no handle may be open when the workers fork
        rank_zero_info(
            f"livedead: {self.path}: {self.info.n:,} tiles of {self.info.height}x{self.info.width} "
            f"{self.info.dtype}, chunks of {self.info.chunk}{' (compressed)' if self.info.compressed else ''}; "
            f"split {self.info.split_note}"
        )

    def _dataset_stats(self) -> tuple[float, float]:
        assert self.info is not None
        cache = FileCache(self.path)
        split = json.dumps([self.hparams.images_key, self.info.train_ranges, self.hparams.stats_tiles])
        key = "stats_" + hashlib.sha1(split.encode()).hexdigest()[:16]
        cached = cache.get(key)
        if cached is not None:
            return float(cached[0]), float(cached[1])
        segments = chunk_segments(self.info.train_ranges, self.info.chunk)
        want = max(1, math.ceil(self.hparams.stats_tiles / self.info.chunk))
        picks = [segments[i] for i in np.linspace(0, len(segments) - 1, min(want, len(segments))).astype(int)]
        total = total_sq = count = 0.0
        with _h5_open(self.path) as f:
            ds = f[self.hparams.images_key]
            for start, stop in dict.fromkeys(picks):
                for a in range(start, stop, 100):  # 100 tiles at a time: bounded float64 temporaries
                    x = ds[a : min(a + 100, stop)].astype(np.float64)
                    total += x.sum()
                    total_sq += np.square(x).sum()
                    count += x.size
        mean = float(total / count)  # plain floats: they go into checkpoints, loaded with weights_only=True
        std = math.sqrt(max(float(total_sq / count) - mean * mean, 1e-12))
        cache.put(key, np.array([mean, std]))
        return mean, std

    def _dataset(self) -> TileBatches:
        assert self.info is not None
        hp = self.hparams
        ring = (hp.prefetch_factor if hp.num_workers > 0 else 0) + 4
        return TileBatches(self.info, hp.images_key, hp.labels_key, hp.num_classes, hp.batch_size, ring)

    # -- loaders -------------------------------------------------------------------------
    @property
    def train_class_counts(self) -> np.ndarray:
        """Pixels of each class over the training split (for class weights)."""
        assert self.info is not None, "call setup() first"
        return sum((self.info.class_counts[a:b].sum(axis=0) for a, b in self.info.train_ranges), 0)

    def normalization(self) -> dict[str, Any]:
        """How raw pixels become network input; stored in checkpoints so inference does the same."""
        return {
            "mode": self.hparams.normalize,
            "mean": float(self.mean),
            "std": float(self.std),
            "percentiles": list(self.hparams.percentiles),
        }

    def overlay_tiles(self, k: int) -> dict[str, torch.Tensor]:
        """``k`` fixed validation tiles that hold both stains, spread over the split, normalised.

        The same tiles every epoch, so that the overlays show the model learning on them. They are
        spread evenly over the two-stain tiles rather than the richest ones, which would be the
        same place at neighbouring time points.
        """
        assert self.info is not None, "call setup() first"
        val = np.concatenate([np.arange(a, b) for a, b in self.info.val_ranges])
        counts = self.info.class_counts[val]
        both = np.minimum(counts[:, 1], counts[:, 2]) if counts.shape[1] > 2 else counts[:, 1:].sum(1)
        candidates = val[both > 0] if (both > 0).sum() >= k else val[np.argsort(-both, kind="stable")[:k]]
        picked = np.unique(candidates[np.linspace(0, len(candidates) - 1, min(k, len(candidates))).astype(int)])
        dataset = self._dataset()
        parts = [dataset[((int(i), int(i) + 1),)] for i in picked]
        dataset.close()
        image = torch.cat([p["image"] for p in parts])
        return {"image": self.normalize(image), "label": torch.cat([p["label"] for p in parts]).clone()}

    def _loader(self, ranges: list[Slice], shuffle: bool) -> DataLoader:
        assert self.info is not None
        hp = self.hparams
        sampler = ChunkBatchSampler(
            chunk_segments(ranges, self.info.chunk),
            hp.batch_size,
            shuffle=shuffle,
            seed=hp.seed,
            chunk_major=self.info.compressed,
            num_workers=hp.num_workers,
        )
        workers = hp.num_workers > 0
        return DataLoader(
            self._dataset(),
            batch_size=None,
            sampler=sampler,
            num_workers=hp.num_workers,
            persistent_workers=hp.persistent_workers and workers,
            prefetch_factor=hp.prefetch_factor if workers else None,
            pin_memory=torch.cuda.is_available() if hp.pin_memory is None else hp.pin_memory,
        )

    def train_dataloader(self) -> DataLoader:
        assert self.info is not None, "call setup() first"
        return self._loader(self.info.train_ranges, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        assert self.info is not None, "call setup() first"
        return self._loader(self.info.val_ranges, shuffle=False)

    # -- on the device -------------------------------------------------------------------
    def normalize(self, image: torch.Tensor, reuse: bool = False) -> torch.Tensor:
        """Raw pixels to float32 network input, on whatever device the batch is on.

        ``reuse`` writes into a small ring of preallocated outputs instead of a fresh tensor: on
        the CPU the page faults of a fresh 10 MB allocation cost ten times the arithmetic. Only
        the per-batch path uses it; a batch is consumed long before its slot comes round again.
        """
        return normalize_(self._output(image) if reuse else image.to(torch.float32), self.normalization())

    def _output(self, image: torch.Tensor) -> torch.Tensor:
        key = (image.device, image.shape[1:])
        if key not in self._outputs:
            shape = (self.hparams.batch_size, *image.shape[1:])
            self._outputs[key] = [torch.empty(shape, device=image.device) for _ in range(OUTPUT_RING)]
        self._output_slot = (self._output_slot + 1) % OUTPUT_RING
        return self._outputs[key][self._output_slot][: image.shape[0]].copy_(image)

    def on_after_batch_transfer(self, batch: dict[str, torch.Tensor], dataloader_idx: int) -> dict[str, torch.Tensor]:
        image = self.normalize(batch["image"], reuse=True)
        label = batch["label"]
        trainer = self.trainer
        if self.hparams.augment and trainer is not None and trainer.training:
            image, label = dihedral_augment(image, label)
        return {"image": image, "label": label, "index": batch["index"]}
