"""The chunked HDF5 tile store: the file that training reads.

Layout of a tile file (format ``livedead-tiles/1``); every dataset is chunked ``(chunk, ...)``
along the tile axis, 1000 by default:

* ``/images`` (N, 1, T, T): raw transmitted-light pixels in the source dtype (normalised at load).
* ``/labels`` (N, T, T) uint8: 0 background, 1 DAPI, 2 Cy5.
* ``/class_counts`` (N, 3) int64: pixels of each class in each tile.
* ``/origin`` (N, 4) int32: well, time point, y, x of the tile's top-left corner in its image.

In the final file the first ``attrs["n_train"]`` tiles are the training split and the rest the
validation split, each in a seeded random order, so that every split is one contiguous range.
"""

from __future__ import annotations

from collections.abc import Callable

import h5py
import numpy as np

FORMAT = "livedead-tiles/1"
DATASETS = ("images", "labels", "class_counts", "origin")


class ChunkAppender:
    """Append rows to resizable datasets, writing only whole chunk-aligned blocks.

    A partial-chunk write to a chunk that is not in HDF5's cache is a read-modify-write of the
    whole chunk; buffering one chunk and writing it whole avoids that, and bounds memory to one
    chunk per dataset whatever the number of rows.
    """

    def __init__(self, f: h5py.File, rows: dict[str, tuple[tuple[int, ...], np.dtype]], chunk: int) -> None:
        self.chunk = chunk
        self.n = 0
        self.fill = 0
        self.datasets = {
            name: f.create_dataset(name, (0, *shape), dtype, maxshape=(None, *shape), chunks=(chunk, *shape))
            for name, (shape, dtype) in rows.items()
        }
        self.buffers = {name: np.empty((chunk, *shape), dtype) for name, (shape, dtype) in rows.items()}

    def append(self, **arrays: np.ndarray) -> None:
        total = len(next(iter(arrays.values())))
        done = 0
        while done < total:
            take = min(self.chunk - self.fill, total - done)
            for name, arr in arrays.items():
                self.buffers[name][self.fill : self.fill + take] = arr[done : done + take]
            self.fill += take
            done += take
            if self.fill == self.chunk:
                self.flush()

    def flush(self) -> None:
        if not self.fill:
            return
        end = self.n + self.fill
        for name, ds in self.datasets.items():
            ds.resize(end, axis=0)
            ds.write_direct(self.buffers[name], np.s_[: self.fill], np.s_[self.n : end])
        self.n = end
        self.fill = 0


def copy_in_order(
    src: h5py.File,
    dst: h5py.File,
    order: np.ndarray,
    chunk: int,
    on_chunk: Callable[[], None] | None = None,
) -> int:
    """Copy tiles ``order[0], order[1], ...`` of ``src`` into new chunked datasets of ``dst``.

    Streams one output chunk at a time: its source tiles are read in ascending order, with
    runs of neighbours coalesced into single slice reads (never h5py fancy indexing), then
    permuted in memory. Per-tile metadata (a few bytes a row) is read whole once instead.
    Returns the number of tiles written.
    """
    rows = {name: (src[name].shape[1:], src[name].dtype) for name in DATASETS}
    small = {name: src[name][:] for name, (shape, dtype) in rows.items() if np.prod(shape) * dtype.itemsize < 1024}
    large = {name: src[name] for name in DATASETS if name not in small}
    out = ChunkAppender(dst, rows, chunk)
    scratch = {name: np.empty((chunk, *ds.shape[1:]), ds.dtype) for name, ds in large.items()}
    for start in range(0, len(order), chunk):
        want = order[start : start + chunk]
        sorter = np.argsort(want, kind="stable")
        ranked = want[sorter]
        breaks = np.flatnonzero(np.diff(ranked) != 1) + 1
        for lo, hi in zip(np.r_[0, breaks], np.r_[breaks, len(ranked)], strict=True):
            a = int(ranked[lo])
            for name, ds in large.items():
                ds.read_direct(scratch[name], np.s_[a : a + hi - lo], np.s_[lo:hi])
        batch = {name: arr[want] for name, arr in small.items()}
        for name in large:
            batch[name] = np.empty_like(scratch[name][: len(want)])
            batch[name][sorter] = scratch[name][: len(want)]
        out.append(**batch)
        if on_chunk:
            on_chunk()
    out.flush()
    return out.n


def tile_rows(tile: int, dtype: np.dtype, num_classes: int) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Row shapes and dtypes of the four tile datasets."""
    return {
        "images": ((1, tile, tile), np.dtype(dtype)),
        "labels": ((tile, tile), np.dtype(np.uint8)),
        "class_counts": ((num_classes,), np.dtype(np.int64)),
        "origin": ((4,), np.dtype(np.int32)),
    }
