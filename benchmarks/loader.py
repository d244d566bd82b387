"""Benchmark: the datamodule's read path against the loader a user writes first and the disk's limit.

Builds a tile file of at least 20,000 tiles (uint16, chunks of 1000; realistic content from a
synthetic plate), warms the page cache, and measures in one run, in tiles per second:

1. ``loader``: this datamodule over one training epoch, on what the training step receives
   (after the transfer hook and normalisation; augmentation off), best of 0 and 2 workers;
   the epoch after a warm-up epoch, since workers persist across epochs in training;
2. ``naive``: a ``Dataset`` indexing h5py once per sample, ``DataLoader(shuffle=True,
   batch_size=100)``, best of 0 and 2 workers;
3. ``limit``: one sequential pass of contiguous 1000-tile slices into a reused buffer.

``workers_vs_inline`` is the datamodule's rate with 2 workers over its rate with none, on the raw
file. Then the same on an lzf-compressed copy; the datamodule on a copy with HDF5's fletcher32 checksums
(as ``prepare`` writes them), as the checksums' cost against the raw file; and the datamodule's peak
memory growth on the full file and on a file half its size (it must not grow with N).

    python benchmarks/loader.py [--tiles 20000]
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch
from _common import RssSampler
from torch.utils.data import DataLoader, Dataset

from livedead.data.datamodule import TileDataModule
from livedead.data.preparation import PrepareConfig, prepare
from livedead.plates.synthetic import PlateSpec, generate_plate


def build(path: Path, source: Path, n: int, compression: str | None, checksum: bool = False) -> None:
    """Repeat the tiles of a prepared synthetic plate until the file holds ``n`` tiles."""
    with h5py.File(source) as src, h5py.File(path, "w") as dst:
        data = {name: src[name][:] for name in ("images", "labels")}
        out = {
            name: dst.create_dataset(
                name,
                (n, *x.shape[1:]),
                x.dtype,
                chunks=(1000, *x.shape[1:]),
                compression=compression,
                fletcher32=checksum,
            )
            for name, x in data.items()
        }
        dst.create_dataset("class_counts", data=np.resize(src["class_counts"][:], (n, 3)))
        for a in range(0, n, 1000):
            idx = np.arange(a, min(a + 1000, n)) % len(data["images"])
            for name, x in data.items():
                out[name][a : a + len(idx)] = x[idx]
        dst.attrs["n_train"] = n - 1000


def rate_limit(path: Path) -> float:
    with h5py.File(path) as f:
        images, labels = f["images"], f["labels"]
        bi = np.empty((1000, *images.shape[1:]), images.dtype)
        bl = np.empty((1000, *labels.shape[1:]), labels.dtype)
        n = images.shape[0]
        start = time.perf_counter()
        for a in range(0, n, 1000):
            b = min(a + 1000, n)
            images.read_direct(bi, np.s_[a:b], np.s_[: b - a])
            labels.read_direct(bl, np.s_[a:b], np.s_[: b - a])
        return n / (time.perf_counter() - start)


def rate_datamodule(path: Path, workers: int) -> tuple[float, int]:
    """Steady-state tiles/s of one training epoch, after a warm-up epoch (persistent workers, as in
    training), and the peak growth of resident memory over both epochs."""
    with RssSampler() as sampler:
        dm = TileDataModule(path, batch_size=100, num_workers=workers, augment=False, persistent_workers=True)
        dm.setup("fit")
        loader = dm.train_dataloader()
        for epoch in range(2):
            loader.sampler.set_epoch(epoch)
            start = time.perf_counter()
            n = 0
            for batch in loader:
                n += len(dm.on_after_batch_transfer(batch, 0)["image"])
            seconds = time.perf_counter() - start
    return n / seconds, sampler.growth


class NaiveTiles(Dataset):
    """What one writes first: open the file, index one sample, convert it."""

    def __init__(self, path: Path, n: int) -> None:
        self.path, self.n, self.file = path, n, None

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.file is None:
            self.file = h5py.File(self.path, "r")
        image = torch.from_numpy(self.file["images"][i].astype(np.float32))
        label = torch.from_numpy(self.file["labels"][i].astype(np.int64))
        return (image - 2000.0) / 300.0, label


def rate_naive(path: Path, workers: int, max_tiles: int, max_seconds: float = 20.0) -> float:
    """Tiles/s over at most ``max_tiles`` tiles or ``max_seconds`` (per-sample reads of a compressed
    file decompress a whole chunk each, so a full epoch would take hours)."""
    with h5py.File(path) as f:
        n = f["images"].shape[0] - 1000
    loader = DataLoader(NaiveTiles(path, n), batch_size=100, shuffle=True, num_workers=workers)
    start = time.perf_counter()
    seen = 0
    for image, _ in loader:
        seen += len(image)
        if seen >= max_tiles or time.perf_counter() - start > max_seconds:
            break
    return seen / (time.perf_counter() - start)


def measure(path: Path, label: str, naive_tiles: int) -> dict[str, float]:
    limit = rate_limit(path)  # also warms the page cache
    limit = max(limit, rate_limit(path))
    loaders = {w: rate_datamodule(path, w) for w in (0, 2)}
    naive = {w: rate_naive(path, w, naive_tiles) for w in (0, 2)}
    best = max(loaders.values(), key=lambda r: r[0])
    print(f"[{label}] limit (sequential 1000-tile slices): {limit:10,.0f} tiles/s")
    for w, (r, peak) in loaders.items():
        print(
            f"[{label}] datamodule, {w} workers:            {r:10,.0f} tiles/s   peak RSS growth {peak / 1e6:6.1f} MB"
        )
    for w, r in naive.items():
        print(f"[{label}] naive per-sample h5py, {w} workers:  {r:10,.0f} tiles/s")
    rates = {"limit": limit, "loader": best[0], "naive": max(naive.values())}
    return rates | {"inline": loaders[0][0], "workers": loaders[2][0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=20_000)
    parser.add_argument("--naive-tiles", type=int, default=5_000, help="tiles the naive loader reads (it is slow)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        plate = generate_plate(tmp / "plate.h5", PlateSpec(wells=4, timepoints=6), progress=False)
        prepare(plate, tmp / "tiles.h5", PrepareConfig(progress=False))
        raw, lzf, half = tmp / "raw.h5", tmp / "lzf.h5", tmp / "half.h5"
        build(raw, tmp / "tiles.h5", args.tiles, None)
        build(lzf, tmp / "tiles.h5", args.tiles, "lzf")
        build(half, tmp / "tiles.h5", args.tiles // 2, None)
        print(
            f"file: {args.tiles:,} tiles of 160x160 uint16, chunks of 1000, "
            f"{raw.stat().st_size / 1e9:.2f} GB raw, {lzf.stat().st_size / 1e9:.2f} GB lzf"
        )
        r = measure(raw, "raw", args.naive_tiles)
        z = measure(lzf, "lzf", args.naive_tiles)
        summed = tmp / "fletcher32.h5"
        build(summed, tmp / "tiles.h5", args.tiles, None, checksum=True)
        rate_limit(summed)  # warms the page cache
        checksummed = max(rate_datamodule(summed, w)[0] for w in (0, 2))
        print(f"[fletcher32] datamodule, best of 0 and 2 workers: {checksummed:10,.0f} tiles/s")
        # each in a fresh process, so that neither reuses memory the other freed
        with multiprocessing.get_context("spawn").Pool(1, maxtasksperchild=1) as pool:
            _, peak_half = pool.apply(rate_datamodule, (half, 0))
            _, peak_full = pool.apply(rate_datamodule, (raw, 0))
        print(
            f"peak RSS growth, 0 workers, fresh processes: {peak_half / 1e6:.1f} MB at N={args.tiles // 2:,}, "
            f"{peak_full / 1e6:.1f} MB at N={args.tiles:,}"
        )
        print(
            f"RESULT loader_vs_naive={r['loader'] / r['naive']:.1f} loader_vs_limit={r['loader'] / r['limit']:.2f} "
            f"lzf_loader_vs_naive={z['loader'] / z['naive']:.1f} checksum_cost={1 - checksummed / r['loader']:.3f} "
            f"workers_vs_inline={r['workers'] / r['inline']:.2f}"
        )


if __name__ == "__main__":
    main()
