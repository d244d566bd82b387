"""The HDF5 tile file: the one place that writes, reads and checks its format.

Layout of a tile file (format ``livedead-tiles/1``); every dataset is chunked ``(chunk, ...)``
along the tile axis, 1000 by default:

* ``/images`` (N, 1, T, T): raw transmitted-light pixels in the source dtype (normalised at load).
* ``/labels`` (N, T, T) uint8: 0 background, 1 DAPI, 2 Cy5.
* ``/class_counts`` (N, 3) int64: pixels of each class in each tile.
* ``/origin`` (N, 4) int32: well, time point, y, x of the tile's top-left corner in its image.

In the final file the first ``attrs["n_train"]`` tiles are the training split and the rest the
validation split, each in a seeded random order, so that every split is one contiguous range.
The file's attributes are :class:`TileAttrs` (``val_units`` names the wells or images held out);
prepare's kept first pass, ``<output>.all.h5``, has the same datasets and :class:`FirstPassAttrs`.
Its chunks carry HDF5's ``fletcher32`` checksum, so damage to the file (a bad disk, a broken
copy over the network) is found when a chunk is read, instead of training on it silently.

Training also reads any HDF5 file in the original study's layout: ``/images`` (N, 1, H, W)
uint8, uint16 or float32 and ``/labels`` (N, H, W) integer classes (names configurable);
``/class_counts`` and ``/origin`` are optional, compression (gzip, lzf) and chunking are free.
:func:`inspect_tile_file` checks such a file and works out what training needs to know of it;
derived data (class counts of files without them, normalisation statistics) is cached beside it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from livedead.data.sampler import Slice, chunk_segments
from livedead.errors import LivedeadError
from livedead.files import atomic_path

FORMAT = "livedead-tiles/1"
DATASETS = ("images", "labels", "class_counts", "origin")
IMAGE_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))
"""The pixel types training reads (``/images``); prepare stores a plate's pixels as they are, so only these."""
CACHE_VERSION = 1
log = logging.getLogger(__name__)


class DamagedChunk(Exception):
    """A read of tiles failed: a chunk whose checksum does not match, or that HDF5 cannot decode."""

    def __init__(self, path: Any, dataset: str, a: int, b: int, err: OSError) -> None:
        reason = str(err).split("(", 1)[-1].rstrip(")") if "(" in str(err) else str(err)
        super().__init__(f"{path}: dataset '{dataset}': damaged data in tiles {a}..{b - 1} ({reason})")

    def one_line(self) -> LivedeadError:
        return LivedeadError(f"{self} (data.on_bad_chunk=skip trains without it)")


def check_classes(labels: np.ndarray, num_classes: int, where: str, tiles: Slice | None = None) -> None:
    """The one check of label values, wherever labels enter; ``where`` names the file and dataset."""
    if labels.size == 0:
        return
    hi = int(labels.max())
    lo = int(labels.min()) if np.issubdtype(labels.dtype, np.signedinteger) else 0
    if lo < 0 or hi >= num_classes:
        at = f" in tiles {tiles[0]}..{tiles[1] - 1}" if tiles else ""
        raise LivedeadError(
            f"{where}: expected classes 0..{num_classes - 1}, found {hi if hi >= num_classes else lo}{at}"
        )


class ChunkAppender:
    """Append rows to resizable datasets, writing only whole chunk-aligned blocks.

    A partial-chunk write to a chunk that is not in HDF5's cache is a read-modify-write of the
    whole chunk; buffering one chunk and writing it whole avoids that, and bounds memory to one
    chunk per dataset whatever the number of rows.
    """

    def __init__(
        self, f: h5py.File, rows: dict[str, tuple[tuple[int, ...], np.dtype]], chunk: int, checksum: bool = False
    ) -> None:
        self.chunk = chunk
        self.n = 0
        self.fill = 0
        self.datasets = {
            name: f.create_dataset(
                name, (0, *shape), dtype, maxshape=(None, *shape), chunks=(chunk, *shape), fletcher32=checksum
            )
            for name, (shape, dtype) in rows.items()
        }
        self.buffers = {name: np.empty((chunk, *shape), dtype) for name, (shape, dtype) in rows.items()}

    def append(self, **arrays: np.ndarray) -> None:
        self.gather({name: (arr, None) for name, arr in arrays.items()})

    def gather(self, sources: dict[str, tuple[np.ndarray, np.ndarray | None]]) -> None:
        """Append, for each dataset, rows ``rows`` of its array (all rows where ``rows`` is None), taken
        straight into the chunk buffers: no gathered copy in between."""
        first, first_rows = next(iter(sources.values()))
        total = len(first) if first_rows is None else len(first_rows)
        done = 0
        while done < total:
            take = min(self.chunk - self.fill, total - done)
            for name, (arr, idx) in sources.items():
                out = self.buffers[name][self.fill : self.fill + take]
                if idx is None:
                    out[...] = arr[done : done + take]
                else:  # mode="clip": "raise" would gather into a temporary first (the indices are ours)
                    np.take(arr, idx[done : done + take], axis=0, out=out, mode="clip")
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


def tile_rows(tile: int, dtype: np.dtype, num_classes: int) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Row shapes and dtypes of the four tile datasets."""
    return {
        "images": ((1, tile, tile), np.dtype(dtype)),
        "labels": ((tile, tile), np.dtype(np.uint8)),
        "class_counts": ((num_classes,), np.dtype(np.int64)),
        "origin": ((4,), np.dtype(np.int32)),
    }


@contextmanager
def create_tile_file(path: Path) -> Iterator[h5py.File]:
    """A new tile file open for writing, written under a temporary name and renamed into place when whole."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        yield f


@dataclass
class TileAttrs:
    """The attributes prepare gives a tile file: how it was tiled, split and labelled, and from what.

    Files in the study's layout have none of them; a livedead file written before an attribute
    existed reads it as its default."""

    tile: int
    stride: int
    chunk: int
    n_train: int
    n_val: int
    split_by: str
    split_seed: int
    val_fraction: float
    val_units: list[str]
    """The units held out for validation: ``well W03`` (split by well) or ``image W03/t2``."""
    wells: list[str]
    source: str
    labels_source: str
    tiles_seen: int
    nucleus_diameter_px: float
    nucleus_diameter_setting: str
    class_names: list[str] = field(default_factory=list)
    pixel_size_um: float | None = None
    """The plate's pixel size (its metadata, or prepare's ``pixel_size_um``): the scale the model learns,
    which checkpoints record so that ``predict`` can rescale images of another. None: unknown."""
    format: str = FORMAT
    format_version: int = 1

    def write(self, f: h5py.File) -> None:
        """The attributes; an unknown one is left out (HDF5 has no None), not written as a guess."""
        f.attrs.update({k: v for k, v in asdict(self).items() if v is not None})

    @property
    def held_out_wells(self) -> list[str]:
        """The wells held out for validation (none where the split was by image)."""
        return [u.removeprefix("well ") for u in self.val_units if u.startswith("well ")]


def read_tile_attrs(path: Path) -> TileAttrs | None:
    """A tile file's :class:`TileAttrs`; None for a file that prepare did not write (no ``format``)."""
    with open_tile_file(path) as f:
        return _tile_attrs(f)


def _tile_attrs(f: h5py.File) -> TileAttrs | None:
    a = f.attrs
    if a.get("format") != FORMAT:
        return None
    return TileAttrs(
        tile=int(a.get("tile", 0)),
        stride=int(a.get("stride", 0)),
        chunk=int(a.get("chunk", 0)),
        n_train=int(a.get("n_train", 0)),
        n_val=int(a.get("n_val", 0)),
        split_by=str(a.get("split_by", "")),
        split_seed=int(a.get("split_seed", 0)),
        val_fraction=float(a.get("val_fraction", math.nan)),
        val_units=[str(u) for u in a.get("val_units", [])],
        wells=[str(w) for w in a.get("wells", [])],
        source=str(a.get("source", "")),
        labels_source=str(a.get("labels_source", "")),
        tiles_seen=int(a.get("tiles_seen", 0)),
        nucleus_diameter_px=float(a.get("nucleus_diameter_px", math.nan)),
        nucleus_diameter_setting=str(a.get("nucleus_diameter_setting", "")),
        class_names=[str(c) for c in a.get("class_names", [])],
        pixel_size_um=float(a["pixel_size_um"]) if "pixel_size_um" in a else None,
        format_version=int(a.get("format_version", 1)),
    )


@dataclass
class FirstPassAttrs:
    """The attributes of prepare's kept first pass (``<output>.all.h5``): what it was made from, and
    ``complete``, written last, so that a file cut off before the end is never reused."""

    recipe: str
    """The plate's fingerprint and the tiling and labelling settings, as JSON."""
    diameters: list[float]
    labelling_seconds: float
    format: str = FORMAT + "+intermediate"
    complete: bool = True

    def write(self, f: h5py.File) -> None:
        f.attrs.update({**asdict(self), "diameters": np.asarray(self.diameters, np.float64)})


def read_first_pass(f: h5py.File) -> FirstPassAttrs | None:
    """The attributes of an open first-pass file; None if it is not a complete one."""
    a = f.attrs
    if not a.get("complete") or "recipe" not in a:
        return None
    return FirstPassAttrs(
        str(a["recipe"]), [float(d) for d in a.get("diameters", [])], float(a.get("labelling_seconds", 0.0))
    )


def reusable_first_pass(path: Path, recipe: str) -> bool:
    """Whether ``path`` is a complete first pass made with ``recipe`` (an unreadable file is not)."""
    if not path.exists():
        return False
    try:
        with h5py.File(path, "r") as f:
            found = read_first_pass(f)
    except OSError:
        return False
    return found is not None and found.recipe == recipe


# -- reading: what training needs to know of a tile file ------------------------------------------
@dataclass
class TileFileInfo:
    """What :func:`inspect_tile_file` learns about a tile file, before any training."""

    path: Path
    n: int
    height: int
    width: int
    dtype: np.dtype
    chunk: int
    compressed: bool
    """Compressed or checksummed: chunks are read whole, each once (the filters work on whole chunks)."""
    class_counts: np.ndarray  # (N, C) per tile
    train_ranges: list[Slice]
    val_ranges: list[Slice]
    split_note: str
    held_out_wells: list[str] = field(default_factory=list)
    """The wells prepare held out for validation (:attr:`TileAttrs.held_out_wells`); none for other files."""
    pixel_size_um: float | None = None
    """The pixel size the tiles were cut at (:attr:`TileAttrs.pixel_size_um`); None where unknown."""


def fingerprint(path: Path, span: int = 1 << 20) -> dict[str, Any]:
    """Size and hashes of the first and last MiB of a file: a checkpoint's record of the data it read.

    A file replaced or truncated while a run was paused differs in one of them; a copy of the same
    file (another mtime, another machine) does not.
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = hashlib.sha1(f.read(span)).hexdigest()
        f.seek(max(0, size - span))
        tail = hashlib.sha1(f.read(span)).hexdigest()
    return {"size": size, "head_sha1": head, "tail_sha1": tail}


def open_tile_file(path: Path) -> h5py.File:
    """Open a tile file for reading, or one line saying why it cannot be."""
    if not path.exists():
        raise LivedeadError(f"{path}: tile file not found (config key 'data.path')")
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise LivedeadError(f"{path}: expected a readable HDF5 tile file, found {err}") from None


@dataclass
class TileView:
    """A tile file's tiles for viewing (napari): its datasets, read lazily from the open file, and its attributes."""

    file: h5py.File
    images: h5py.Dataset
    """(N, 1, T, T) raw pixels."""
    labels: h5py.Dataset
    """(N, T, T) classes."""
    attrs: TileAttrs | None


def view_tile_file(path: Path, images_key: str = "images", labels_key: str = "labels") -> TileView:
    """A tile file opened read-only for a viewer, which reads the tiles it shows; one line if it is not one.

    The file stays open as long as the view (h5py closes it with its last reference)."""
    f = open_tile_file(path)
    missing = [k for k in (images_key, labels_key) if k not in f]
    if missing:
        found = sorted(f.keys())
        f.close()
        raise LivedeadError(f"{path}: expected a tile file with /{images_key} and /{labels_key}, found {found}")
    images, labels = f[images_key], f[labels_key]
    if images.ndim != 4 or images.shape[1] != 1 or labels.shape != (images.shape[0], *images.shape[2:]):
        f.close()
        raise LivedeadError(
            f"{path}: expected images (N, 1, H, W) and labels (N, H, W), found {images.shape} and {labels.shape}"
        )
    return TileView(f, images, labels, _tile_attrs(f))


class FileCache:
    """Derived data kept beside a tile file (``<file>.livedead-cache.npz``), keyed to its size and mtime.

    If the folder is read-only, or its disk full, the values are only kept in memory.
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
        except (OSError, LivedeadError) as err:  # atomic_path turns a full disk into LivedeadError
            log.info("livedead: cannot write the cache %s (%s); keeping it in memory", self.path, err)


def count_classes(labels: h5py.Dataset, num_classes: int, chunk: int, on_bad_chunk: str = "error") -> np.ndarray:
    """One streaming pass over the labels: class counts per tile (none for a damaged chunk left out)."""
    counts = np.zeros((labels.shape[0], num_classes), np.int64)
    buf = np.empty((chunk, *labels.shape[1:]), labels.dtype)
    for a in range(0, labels.shape[0], chunk):
        b = min(a + chunk, labels.shape[0])
        try:
            labels.read_direct(buf, np.s_[a:b], np.s_[: b - a])
        except OSError as err:
            if on_bad_chunk == "skip":
                continue
            raise DamagedChunk(labels.file.filename, labels.name, a, b, err).one_line() from None
        flat = buf[: b - a].reshape(b - a, -1)
        check_classes(flat, num_classes, f"{labels.file.filename}: dataset '{labels.name}'", (a, b))
        for c in range(num_classes):
            counts[:, c][a:b] = np.count_nonzero(flat == c, axis=1)
    return counts


def inspect_tile_file(
    path: Path,
    images_key: str,
    labels_key: str,
    counts_key: str,
    num_classes: int,
    batch_size: int,
    val_fraction: float,
    seed: int,
    on_count: Callable[[str], None] = log.info,
    on_bad_chunk: str = "error",
) -> TileFileInfo:
    """Validate a tile file's structure and work out its chunking, class counts and split.

    ``on_count`` hears of the one slow case: a file without class counts, counted (and cached) here.
    """
    with open_tile_file(path) as f:
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
        if images.dtype not in IMAGE_DTYPES:
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
        compressed = any(ds.compression is not None or ds.fletcher32 for ds in (images, labels))
        attrs = _tile_attrs(f)
        declared = attrs.n_train if attrs is not None else f.attrs.get("n_train")
        if counts_key in f and f[counts_key].shape == (n, num_classes):
            counts = f[counts_key][:]
        else:
            cache = FileCache(path)
            counts = cache.get(f"class_counts_{labels_key}")
            if counts is None:
                on_count(f"livedead: counting classes in {path}:/{labels_key} (cached for next time)")
                counts = count_classes(labels, num_classes, chunk, on_bad_chunk)
                cache.put(f"class_counts_{labels_key}", counts)

    if (counts.sum(axis=0) > 0).sum() < 2:
        raise LivedeadError(
            f"{path}: dataset '/{labels_key}': expected at least two classes over all tiles, "
            f"found only class {int(np.argmax(counts.sum(axis=0)))}"
        )
    if declared is not None and not 0 < int(declared) < n:
        raise LivedeadError(
            f"{path}: attribute 'n_train': expected a split of the file's {n} tiles (0 < n_train < {n}), "
            f"found {int(declared)}"
        )
    if declared is not None:
        n_train = int(declared)
        train, val = [(0, n_train)], [(n_train, n)]
        note = f"declared by the file: tiles [0, {n_train}) train, [{n_train}, {n}) validate"
    else:
        train, val, note = batch_split(n, chunk, batch_size, val_fraction, seed)
    held_out = attrs.held_out_wells if attrs is not None else []
    pixel_size = attrs.pixel_size_um if attrs is not None else None
    return TileFileInfo(
        path, n, images.shape[2], images.shape[3], images.dtype, chunk, compressed, counts, train, val, note,
        held_out, pixel_size,
    )  # fmt: skip


def batch_split(
    n: int, chunk: int, batch_size: int, val_fraction: float, seed: int
) -> tuple[list[Slice], list[Slice], str]:
    """Whole batches, about ``val_fraction`` of them, to validation: fixed by the seed (the study's split)."""
    blocks = [
        (a, min(a + batch_size, stop)) for start, stop in chunk_segments([(0, n)], chunk)
        for a in range(start, stop, batch_size)
    ]  # fmt: skip
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


def _merge(ranges: list[Slice]) -> list[Slice]:
    out: list[Slice] = []
    for a, b in ranges:
        if out and out[-1][1] == a:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def image_statistics(
    path: Path, images_key: str, ranges: list[Slice], chunk: int, max_tiles: int, on_bad_chunk: str = "error"
) -> tuple[float, float]:
    """Mean and standard deviation of the images in ``ranges`` (cached beside the file).

    At most ``max_tiles`` tiles are read, in whole chunks spread evenly over the ranges; a damaged
    chunk is one line, or left out with ``on_bad_chunk="skip"``.
    """
    cache = FileCache(path)
    split = json.dumps([images_key, ranges, max_tiles])
    key = "stats_" + hashlib.sha1(split.encode()).hexdigest()[:16]
    cached = cache.get(key)
    if cached is not None:
        return float(cached[0]), float(cached[1])
    segments = chunk_segments(ranges, chunk)
    want = max(1, math.ceil(max_tiles / chunk))
    picks = [segments[i] for i in np.linspace(0, len(segments) - 1, min(want, len(segments))).astype(int)]
    total = total_sq = count = 0.0
    with open_tile_file(path) as f:
        ds = f[images_key]
        for start, stop in dict.fromkeys(picks):
            for a in range(start, stop, 100):  # 100 tiles at a time: bounded float64 temporaries
                try:
                    x = ds[a : min(a + 100, stop)].astype(np.float64)
                except OSError as err:
                    if on_bad_chunk == "skip":
                        continue
                    raise DamagedChunk(path, ds.name, a, min(a + 100, stop), err).one_line() from None
                total += x.sum()
                total_sq += np.square(x).sum()
                count += x.size
    if not count:
        raise LivedeadError(f"{path}: dataset '/{images_key}': no readable training tiles for the statistics")
    mean = float(total / count)  # plain floats: they go into checkpoints, loaded with weights_only=True
    std = math.sqrt(max(float(total_sq / count) - mean * mean, 1e-12))
    cache.put(key, np.array([mean, std]))
    return mean, std
