"""Prepare: turn a plate of stitched well images into the tile file that training reads.

Two streaming passes, as in the original study:

1. Every image is labelled (from its stains, or from the plate's truth) and tiled, in
   ``workers`` parallel processes, and appended in plate order to an intermediate HDF5 file in
   whole 1000-tile chunks together with each tile's class counts.
2. The tiles holding more than one class are split by well (or image), about 90:10, and copied
   into the final file: training tiles first, then validation tiles, each in a seeded random
   order that shuffles random groups of ``shuffle_chunks`` source chunks together, so that every
   read and write is of whole chunks.

Memory is bounded by a few images per worker and ``shuffle_chunks`` chunks; only the per-tile
metadata (44 bytes a tile) grows with the plate.

The command line is :mod:`livedead.prepare`.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import sys
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from threadpoolctl import threadpool_limits

from livedead import CLASS_NAMES
from livedead.data.labels import labels_from_stains
from livedead.data.plates import PLATE_CHANNELS, Plate, PlateImage, TiffLayout, open_plate
from livedead.data.scale import NucleusScale, estimate_diameter
from livedead.data.synthetic import PlateSpec, generate_plate
from livedead.data.tilefile import FORMAT, ChunkAppender, copy_groups, fingerprint, tile_rows
from livedead.data.tiling import class_counts, tile_image, tile_starts
from livedead.errors import LivedeadError, atomic_path, remove_stale_temporaries


@dataclass
class PrepareConfig:
    """Settings of one prepare run; ``conf/prepare.yaml`` takes its keys and defaults from here."""

    tile: int = 160
    stride: int = 80
    chunk: int = 1000
    """Tiles per HDF5 chunk."""
    labels: str = "stains"
    """``stains``: segment Hoechst/Draq7 (the study's way); ``truth``: the plate's ``/truth/labels``."""
    split_by: str = "well"
    """``well`` or ``image``: validation holds out whole wells (or images)."""
    val_fraction: float = 0.1
    seed: int = 0
    channels: list[str] = field(default_factory=lambda: list(PLATE_CHANNELS))
    """Channel order of TIFFs, or of an HDF5 plate without ``attrs["channels"]``."""
    tiff: TiffLayout = field(default_factory=TiffLayout)
    stains: dict[str, Any] = field(default_factory=dict)
    """:func:`livedead.data.labels.segment_channel` options (threshold, min_snr, local, min_area, ...)."""
    diameter: Any = "auto"
    """The nucleus diameter in px, or ``auto``: measured in each image's Hoechst channel."""
    pixel_size_um: float | None = None
    """The pixel size, if the plate does not record it (with ``nucleus_diameter_um``)."""
    nucleus_diameter_um: float | None = None
    """The nucleus diameter in micrometres: with a pixel size, it fixes ``diameter``."""
    checksum: bool = True
    """Write HDF5's fletcher32 checksums, so damage to the file is found when it is read. HDF5 verifies
    them at about 1 GB/s on one core: the loader then delivers fewer tiles per second (README,
    benchmarks), still far more than training takes in."""
    keep_intermediate: bool = False
    """Keep ``<output>.all.h5``: every tile, before the multi-class filter."""
    workers: int | None = None
    """Processes that label and tile images in parallel; None: one per CPU this process may use.
    The output is the same whatever the number (images are stored in plate order)."""
    shuffle_chunks: int = 4
    """The final order shuffles the tiles of random groups of this many intermediate chunks together,
    so that the store reads and writes whole chunks; each batch then mixes tiles of this many random
    parts of the plate. Memory: this many chunks (77 MB each for 1000 uint16 tiles of 160x160)."""
    progress: bool = True

    def validate(self) -> None:
        if self.chunk < 1:
            raise LivedeadError(f"config key 'chunk': expected >= 1, found {self.chunk}")
        if self.workers is not None and self.workers < 1:
            raise LivedeadError(f"config key 'workers': expected >= 1 (or null: the CPU count), found {self.workers}")
        if self.shuffle_chunks < 1:
            raise LivedeadError(f"config key 'shuffle_chunks': expected >= 1, found {self.shuffle_chunks}")
        if self.labels not in ("stains", "truth"):
            raise LivedeadError(f"config key 'labels': expected 'stains' or 'truth', found {self.labels!r}")
        if self.split_by not in ("well", "image"):
            raise LivedeadError(f"config key 'split_by': expected 'well' or 'image', found {self.split_by!r}")
        if not 0.0 < self.val_fraction < 1.0:
            raise LivedeadError(f"config key 'val_fraction': expected in (0, 1), found {self.val_fraction}")
        tile_starts(self.tile, self.tile, self.stride)  # validates tile > 0 and stride > 0
        self.scale.fixed(self.pixel_size_um or 1.0)  # validates the diameter settings

    @property
    def scale(self) -> NucleusScale:
        return NucleusScale(self.diameter, self.pixel_size_um, self.nucleus_diameter_um)


@dataclass
class PrepareSummary:
    tiles_seen: int
    tiles_kept: int
    n_train: int
    val_units: list[str]
    class_fractions: dict[str, float]
    bytes_written: int
    seconds: float
    diameters: list[float] = field(default_factory=list)
    """The nucleus diameter (px) each stain-labelled image was segmented with."""
    labelling_seconds: float = 0.0
    """Time spent labelling images, summed over the processes (the rest is tiling and storing)."""


def _image_tiles(
    image: PlateImage, cfg: PrepareConfig, source: Path, diameter: float | None
) -> tuple[dict[str, np.ndarray], float | None, float]:
    """Label one image and cut it and its labels into tiles, with class counts and origins; the
    nucleus diameter (px) the stains were segmented with (None for truth labels or no nuclei); and
    the seconds labelling took. Runs in a worker process when ``cfg.workers`` > 1."""
    if image.error:
        raise LivedeadError(image.error)
    start = time.perf_counter()
    if cfg.labels == "truth":
        if image.truth is None:
            raise LivedeadError(f"{source}: config labels=truth, but the plate has no '/truth/labels'")
        lab = image.truth
    else:
        hoechst, draq7 = image.channels["hoechst"], image.channels["draq7"]
        diameter = diameter or estimate_diameter(hoechst) or estimate_diameter(draq7)
        lab = labels_from_stains(hoechst, draq7, diameter=diameter, **cfg.stains)
    labelling = time.perf_counter() - start
    tiles, origins = tile_image(image.channels["brightfield"], cfg.tile, cfg.stride)
    lab_tiles, _ = tile_image(lab, cfg.tile, cfg.stride)
    n = len(tiles)
    return (
        {
            "images": tiles[:, None],
            "labels": lab_tiles,
            "class_counts": class_counts(lab_tiles, len(CLASS_NAMES)),
            "origin": np.column_stack([np.full(n, image.well), np.full(n, image.time), origins]).astype(np.int32),
        },
        diameter if cfg.labels == "stains" else None,
        labelling,
    )


def worker_count(workers: int | None) -> int:
    """``workers``, or the CPUs this process may run on (its affinity, which a batch scheduler sets)."""
    if workers is not None:
        return workers
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def labelled_tiles(
    images: Iterator[PlateImage], cfg: PrepareConfig, source: Path, diameter: float | None, workers: int
) -> Iterator[tuple[dict[str, np.ndarray], float | None, float]]:
    """:func:`_image_tiles` of every image, in plate order, over ``workers`` processes.

    This process reads the images and stores the tiles; the workers label and tile. At most
    one image per worker waits besides those being worked on, so memory stays at a few images
    per worker. On Linux the workers are forked, as DataLoader workers are: they use only numpy,
    SciPy and scikit-image, never a lock of this process's other threads (progress bar, torch),
    and a fork starts them without importing the calling script again, as spawn would (for
    ``train.py``, Lightning and torch: seconds per worker). Elsewhere: the platform's default.
    Each worker's BLAS runs one thread: two workers of two BLAS threads each on two cores took
    twice as long per image as one process.
    """
    if workers == 1:
        for image in images:
            yield _image_tiles(image, cfg, source, diameter)
        return
    context = multiprocessing.get_context("fork" if sys.platform == "linux" else None)
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=threadpool_limits, initargs=(1,))
    pending: deque[Future] = deque()
    try:
        for image in images:
            pending.append(pool.submit(_image_tiles, image, cfg, source, diameter))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def choose_split(units: np.ndarray, n_units: int, val_fraction: float, seed: int, unit_names: list[str]) -> np.ndarray:
    """Boolean mask over units that go to validation: seeded random units until ``val_fraction``.

    Whole wells (or images) go to one side only, because neighbouring tiles overlap by half and a
    tile-level split would leak validation pixels into training.
    """
    per_unit = np.bincount(units, minlength=n_units)
    present = np.flatnonzero(per_unit)
    if len(present) < 2:
        raise LivedeadError(
            f"config key 'split_by': expected tiles from at least 2 {unit_names[0].split()[0]}s "
            f"to split train from validation, found {len(present)}"
        )
    rng = np.random.default_rng(seed)
    val = np.zeros(n_units, bool)
    total = per_unit.sum()
    for u in rng.permutation(present)[:-1]:  # the last unit always stays for training
        val[u] = True
        if per_unit[val].sum() >= val_fraction * total:
            break
    return val


def prepare(source: str | Path, output: str | Path, cfg: PrepareConfig) -> PrepareSummary:
    """Run both passes over the plate at ``source``; write ``output`` atomically and return what was done.

    With ``keep_intermediate``, the first pass's file is kept, and a rerun (after a kill in the
    second pass, or with other split settings) reuses it if it is complete and was made from the
    same plate with the same tiling and labelling settings: checked, not assumed.
    """
    cfg.validate()
    start = time.perf_counter()
    source, output = Path(source), Path(output)
    plate, images = open_plate(source, cfg.channels, cfg.tiff)
    plate.require("brightfield", *(("hoechst", "draq7") if cfg.labels == "stains" else ()))
    for axis, size in zip(("height", "width"), plate.shape, strict=True):
        if cfg.tile > size:
            raise LivedeadError(f"config key 'tile': expected <= image {axis} {size} px of {source}, found {cfg.tile}")
    output.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(output)
    intermediate = output.with_name(output.stem + ".all.h5")
    remove_stale_temporaries(intermediate)
    recipe = _recipe(source, cfg)
    with Progress(disable=not cfg.progress) as bar:
        if not cfg.keep_intermediate:
            with atomic_path(intermediate, keep=False) as tmp:
                _tile_pass(tmp, plate, images, cfg, recipe, bar)
                summary = _write_final(tmp, output, plate, cfg, bar)
        else:
            if _reusable(intermediate, recipe):
                bar.console.print(f"reusing {intermediate}: complete, and made from this plate with these settings")
            else:
                with atomic_path(intermediate) as tmp:
                    _tile_pass(tmp, plate, images, cfg, recipe, bar)
            summary = _write_final(intermediate, output, plate, cfg, bar)
    summary.seconds = time.perf_counter() - start
    return summary


def _tile_pass(
    path: Path, plate: Plate, images: Iterator[PlateImage], cfg: PrepareConfig, recipe: str, bar: Progress
) -> None:
    """The first pass: every image labelled and tiled into ``path``, in whole chunks."""
    fixed = cfg.scale.fixed(plate.pixel_size_um)
    diameters: list[float] = []
    with h5py.File(path, "w") as f:
        store = ChunkAppender(f, tile_rows(cfg.tile, plate.dtype, len(CLASS_NAMES)), cfg.chunk)
        workers = min(worker_count(cfg.workers), plate.n_images)
        task = bar.add_task(f"tiling images ({workers} processes)", total=plate.n_images)
        labelling = 0.0
        for arrays, diameter, seconds in labelled_tiles(images, cfg, plate.source, fixed, workers):
            store.append(**arrays)
            if diameter is not None:
                diameters.append(float(diameter))
            labelling += seconds
            bar.advance(task)
        store.flush()
        f.attrs["format"] = FORMAT + "+intermediate"
        f.attrs["recipe"] = recipe
        f.attrs["diameters"] = np.asarray(diameters, np.float64)
        f.attrs["labelling_seconds"] = labelling
        f.attrs["complete"] = True  # written last: a file cut off before this is not reused


def _recipe(source: Path, cfg: PrepareConfig) -> str:
    """What the first pass's file depends on: the plate's fingerprint and the tiling and labelling settings."""
    settings = asdict(cfg)
    for key in ("split_by", "val_fraction", "seed", "checksum", "shuffle_chunks", "keep_intermediate", "workers"):
        settings.pop(key)
    settings.pop("progress")
    if source.is_dir():
        files = sorted((p.name, p.stat().st_size) for p in source.iterdir() if p.is_file())
        plate = hashlib.sha1(json.dumps(files).encode()).hexdigest()
    else:
        plate = json.dumps(fingerprint(source), sort_keys=True)
    return json.dumps({"plate": plate, "settings": settings}, sort_keys=True, default=str)


def _reusable(intermediate: Path, recipe: str) -> bool:
    if not intermediate.exists():
        return False
    try:
        with h5py.File(intermediate, "r") as f:
            return bool(f.attrs.get("complete")) and f.attrs.get("recipe") == recipe
    except OSError:
        return False


def shuffled_groups(tiles: np.ndarray, chunk: int, group: int, rng: np.random.Generator) -> list[np.ndarray]:
    """A seeded random order of ``tiles`` (intermediate-file indices) that is read in whole chunks.

    The source chunks are dealt into random groups of ``group``; each group's tiles are shuffled
    together, and the groups follow each other. A batch of the final file then mixes tiles of
    ``group`` random parts of the plate, and the store reads each source chunk once.
    """
    ids = rng.permutation(np.unique(tiles // chunk))
    of_tile = tiles // chunk
    return [rng.permutation(tiles[np.isin(of_tile, ids[g : g + group])]) for g in range(0, len(ids), group)]


def _write_final(all_tiles: Path, output: Path, plate: Plate, cfg: PrepareConfig, bar: Progress) -> PrepareSummary:
    source, wells = plate.source, plate.wells
    with h5py.File(all_tiles, "r") as src:
        diameters = [float(d) for d in src.attrs["diameters"]]
        labelling = float(src.attrs.get("labelling_seconds", 0.0))
        counts = src["class_counts"][:]
        origin = src["origin"][:]
        seen = len(counts)
        keep = np.flatnonzero((counts > 0).sum(axis=1) > 1)
        if not len(keep):
            raise LivedeadError(
                f"{source}: expected tiles holding more than one class, found none in {seen} tiles "
                f"(labels={cfg.labels}; check the stain channels)"
            )
        if cfg.split_by == "well":
            units = origin[keep, 0].astype(np.int64)
            names = [f"well {w}" for w in wells]
        else:
            units = origin[keep, 0].astype(np.int64) * plate.timepoints + origin[keep, 1]
            names = [f"image {w}/t{t}" for w in wells for t in range(plate.timepoints)]
        val_units = choose_split(units, len(names), cfg.val_fraction, cfg.seed, names)
        is_val = val_units[units]
        rng = np.random.default_rng([cfg.seed, 1])
        groups = [*shuffled_groups(keep[~is_val], cfg.chunk, cfg.shuffle_chunks, rng)]
        n_train = sum(map(len, groups))
        groups += shuffled_groups(keep[is_val], cfg.chunk, cfg.shuffle_chunks, rng)
        kept_counts = counts[keep].sum(axis=0)

        with atomic_path(output) as tmp, h5py.File(tmp, "w") as dst:
            task = bar.add_task("writing kept tiles", total=len(groups))
            copy_groups(src, dst, groups, cfg.checksum, on_group=lambda: bar.advance(task))
            dst.attrs.update(
                {
                    "format": FORMAT,
                    "format_version": 1,
                    "tile": cfg.tile,
                    "stride": cfg.stride,
                    "chunk": cfg.chunk,
                    "class_names": list(CLASS_NAMES),
                    "n_train": n_train,
                    "n_val": len(keep) - n_train,
                    "split_by": cfg.split_by,
                    "split_seed": cfg.seed,
                    "val_fraction": cfg.val_fraction,
                    "val_units": [n for n, v in zip(names, val_units, strict=True) if v],
                    "wells": list(wells),
                    "source": str(source.resolve()),
                    "labels_source": cfg.labels,
                    "tiles_seen": seen,
                    "nucleus_diameter_px": float(np.median(diameters)) if diameters else float("nan"),
                    "nucleus_diameter_setting": str(cfg.scale.fixed(plate.pixel_size_um) or cfg.diameter),
                }
            )
    return PrepareSummary(
        tiles_seen=seen,
        tiles_kept=len(keep),
        n_train=n_train,
        val_units=[n for n, v in zip(names, val_units, strict=True) if v],
        class_fractions={name: float(c / kept_counts.sum()) for name, c in zip(CLASS_NAMES, kept_counts, strict=True)},
        bytes_written=output.stat().st_size,
        seconds=0.0,
        diameters=diameters,
        labelling_seconds=labelling,
    )


def prepare_synthetic(
    tiles: str | Path, spec: dict[str, Any], progress: bool = True, workers: int | None = None
) -> Path:
    """Generate a synthetic plate beside ``tiles`` (``plate-<name>.h5``) and prepare it into ``tiles``.

    The embedded default data: a fresh clone trains on it with no data of its own. The plate is
    kept, since it carries the truth that counting is evaluated against.
    """
    tiles = Path(tiles)
    plate = tiles.with_name(tiles.name.replace("tiles", "plate", 1) if "tiles" in tiles.name else f"plate-{tiles.name}")
    if not plate.exists():
        generate_plate(plate, PlateSpec(**spec), progress=progress)
    summary = prepare(plate, tiles, PrepareConfig(progress=progress, workers=workers))
    print_summary(summary, tiles)
    return tiles


def print_summary(summary: PrepareSummary, output: Path, console: Console | None = None) -> None:
    table = Table(title=f"prepared {output}", show_header=False)
    table.add_row("tiles seen", f"{summary.tiles_seen:,}")
    kept = summary.tiles_kept / max(summary.tiles_seen, 1)
    table.add_row("tiles kept (>1 class)", f"{summary.tiles_kept:,} ({kept:.1%})")
    table.add_row("train / val tiles", f"{summary.n_train:,} / {summary.tiles_kept - summary.n_train:,}")
    table.add_row("validation", ", ".join(summary.val_units))
    table.add_row("class fractions", "  ".join(f"{k} {v:.3f}" for k, v in summary.class_fractions.items()))
    if summary.diameters:
        d = np.asarray(summary.diameters)
        table.add_row(
            "nucleus diameter", f"{np.median(d):.1f} px (median; {d.min():.1f}-{d.max():.1f} over {len(d)} images)"
        )
    table.add_row("bytes written", f"{summary.bytes_written / 1e6:,.1f} MB")
    table.add_row("time", f"{summary.seconds:.1f} s")
    (console or Console()).print(table)
