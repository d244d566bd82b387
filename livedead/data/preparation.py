"""Prepare: turn a plate of stitched well images into the tile file that training reads.

One streaming pass, planned before any pixel is read (:func:`plan_images`):

1. The images are split by well (or image), about 90:10, and each side's images are dealt, in a
   seeded random order, into groups of about ``shuffle_chunks`` 1000-tile chunks of tiles.
2. Group by group, training groups first, ``workers`` processes (:mod:`livedead.data.workers`)
   read, label (from the stains, or from the plate's truth) and tile the images; the tiles
   holding more than one class of each group are shuffled together and appended to the final
   file (:mod:`livedead.data.tilefile`) in whole chunks, while the workers label the next group.
   With ``keep_intermediate`` every tile also goes, with its class counts, into
   ``<output>.all.h5``, which a rerun with other split settings reuses.

Memory is bounded by a few images per worker and one group of tiles; only the plan and the
per-image nucleus diameters grow with the plate.

The command line is :mod:`livedead.prepare`.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from livedead import CLASS_NAMES
from livedead.data.tilefile import (
    DATASETS,
    IMAGE_DTYPES,
    ChunkAppender,
    FirstPassAttrs,
    TileAttrs,
    create_tile_file,
    fingerprint,
    open_tile_file,
    read_first_pass,
    reusable_first_pass,
    tile_rows,
)
from livedead.data.tiling import class_counts, tile_image, tile_starts
from livedead.data.workers import ImageTiles, labelled_tiles, worker_count
from livedead.errors import LivedeadError
from livedead.files import check_output, remove_stale_temporaries
from livedead.nuclei.labels import labels_from_stains
from livedead.nuclei.size import NucleusScale, image_sizes
from livedead.plates.platefile import PLATE_CHANNELS
from livedead.plates.sources import ImageReader, Plate, TiffLayout, open_plate
from livedead.plates.synthetic import PlateSpec, generate_plate


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
    val_wells: list[str] | None = None
    """These wells go to validation instead of a seeded random ``val_fraction`` of them (``split_by=well``):
    a plate whose wells share conditions in groups (the fields of one experiment day) is validated on
    whole groups, never on neighbours of its training wells."""
    channels: list[str] = field(default_factory=lambda: list(PLATE_CHANNELS))
    """Channel order of TIFFs, or of an HDF5 plate without ``attrs["channels"]``; a plate that names its
    channels is read by those names, and other ``channels`` than those (or this default) are refused."""
    tiff: TiffLayout = field(default_factory=TiffLayout)
    stains: dict[str, Any] = field(default_factory=dict)
    """:func:`livedead.nuclei.labels.segment_channel` options (threshold, min_snr, local, min_area, ...)."""
    diameter: Any = "auto"
    """The nucleus diameter in px (one size for every population), or ``auto``: each image's typical and
    largest population's sizes, measured in its Hoechst channel (else its dead stain)."""
    pixel_size_um: float | None = None
    """The pixel size, if the plate does not record it (with ``nucleus_diameter_um``); the tile file
    records it, and checkpoints after it, so that ``predict`` rescales images of another pixel size."""
    nucleus_diameter_um: float | None = None
    """The nucleus diameter in micrometres: with a pixel size, it fixes ``diameter``."""
    checksum: bool = True
    """Write HDF5's fletcher32 checksums, so damage to the file is found when it is read. HDF5 verifies
    them at about 1 GB/s on one core: the loader then delivers fewer tiles per second (README,
    benchmarks), still far more than training takes in."""
    keep_intermediate: bool = False
    """Keep ``<output>.all.h5``: every tile, before the multi-class filter; a rerun with other split
    settings (``split_by``, ``val_fraction``, ``val_wells``, ``seed``, ``shuffle_chunks``) reuses it instead
    of labelling."""
    workers: int | None = None
    """Processes that label and tile images in parallel; None: one per CPU this process may use.
    The output is the same whatever the number (the images are stored in the planned order)."""
    shuffle_chunks: int = 4
    """Tiles are shuffled within groups of random images holding about this many chunks of tiles, so
    that each group is written as soon as it is labelled, in whole chunks; a batch then mixes tiles
    of those images (2-3 full 2700x3600 wells, or every image of a small plate). Memory: one group
    (77 MB a chunk of 1000 uint16 tiles of 160x160)."""
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
        if self.val_wells is not None and self.split_by != "well":
            raise LivedeadError(f"config key 'val_wells': expected split_by=well, found split_by={self.split_by}")
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


def tiles_per_image(shape: tuple[int, ...], cfg: PrepareConfig) -> int:
    """Tiles of one image of ``shape`` (H, W), edge tiles included."""
    return len(tile_starts(shape[0], cfg.tile, cfg.stride)) * len(tile_starts(shape[1], cfg.tile, cfg.stride))


def image_tiles(
    reader: ImageReader,
    cfg: PrepareConfig,
    diameter: float | None,
    index: tuple[int, int],
    out: dict[str, np.ndarray] | None = None,
) -> ImageTiles:
    """Read, label and tile one image: its tiles and its labels' tiles, with class counts and origins;
    the nucleus diameter (px) the stains were segmented with (None for truth labels or no nuclei);
    and the seconds labelling took. The tiles go into the first rows of ``out`` where they fit
    (a worker's slot of shared memory), else into new arrays."""
    image, source = reader(index), reader.source
    if image.error:
        raise LivedeadError(image.error)
    start = time.perf_counter()
    if cfg.labels == "truth":
        if image.truth is None:
            raise LivedeadError(f"{source}: config labels=truth, but the plate has no '/truth/labels'")
        lab = image.truth
    else:
        hoechst, draq7 = image.channels["hoechst"], image.channels["draq7"]
        sizes = image_sizes(hoechst, draq7, diameter)
        diameter = sizes.typical if sizes is not None else None
        lab = labels_from_stains(hoechst, draq7, sizes=sizes, **cfg.stains)
    labelling = time.perf_counter() - start
    brightfield = image.channels["brightfield"]
    n = tiles_per_image(lab.shape, cfg)
    if out is None or len(out["images"]) < n:  # an image larger than the plate's first: its own arrays
        rows = tile_rows(cfg.tile, brightfield.dtype, len(CLASS_NAMES))
        out = {k: np.empty((n, *shape), dtype) for k, (shape, dtype) in rows.items()}
    arrays = {k: v[:n] for k, v in out.items()}
    _, origins = tile_image(brightfield, cfg.tile, cfg.stride, out=arrays["images"][:, 0])
    tile_image(lab, cfg.tile, cfg.stride, out=arrays["labels"])
    arrays["class_counts"][:] = class_counts(arrays["labels"], len(CLASS_NAMES))
    arrays["origin"][:] = np.column_stack([np.full(n, image.well), np.full(n, image.time), origins])
    return arrays, diameter if cfg.labels == "stains" else None, labelling


def choose_split(units: np.ndarray, n_units: int, val_fraction: float, seed: int, unit_names: list[str]) -> np.ndarray:
    """Boolean mask over units that go to validation: seeded random units until ``val_fraction`` of
    the images (``units``: the unit of each image).

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


def given_split(wells: list[str], val_wells: list[str]) -> np.ndarray:
    """Boolean mask over ``wells``: those named in ``val_wells`` (config key), which must be some, not all, of them."""
    unknown = sorted(set(val_wells) - set(wells))
    if unknown or not val_wells or set(val_wells) >= set(wells):
        found = f"unknown wells {unknown}" if unknown else f"{len(set(val_wells))} of the {len(wells)} wells"
        raise LivedeadError(
            f"config key 'val_wells': expected some, not all, of the plate's wells ({', '.join(wells[:8])}"
            f"{', ...' if len(wells) > 8 else ''}), found {found}"
        )
    return np.isin(np.array(wells), list(val_wells))


@dataclass
class Plan:
    """What prepare decides before it reads a pixel: the split, and the order the images go in."""

    groups: list[list[tuple[int, int]]]
    """Images (well, time point) whose kept tiles are shuffled together, training groups first."""
    n_train_groups: int
    val_units: list[str]

    @property
    def order(self) -> list[tuple[int, int]]:
        return [image for group in self.groups for image in group]


def plan_images(plate: Plate, cfg: PrepareConfig) -> Plan:
    """Split the plate's images by well (or image), about ``val_fraction`` of them to validation, and
    deal each side's images, in a seeded random order, into groups of about ``shuffle_chunks``
    chunks of tiles.

    Deciding this up front lets one pass label the images group by group and write each group's
    tiles, shuffled, into the final file as soon as the group is labelled: no second pass over an
    intermediate file, and the writing overlaps the labelling of the next group.
    """
    if cfg.split_by == "well":
        units = np.array([w for w, _ in plate.index])
        names = [f"well {w}" for w in plate.wells]
    else:
        units = np.array([w * plate.timepoints + t for w, t in plate.index])
        names = [f"image {w}/t{t}" for w in plate.wells for t in range(plate.timepoints)]
    if cfg.val_wells is not None:
        val_units = given_split(plate.wells, cfg.val_wells)
    else:
        val_units = choose_split(units, len(names), cfg.val_fraction, cfg.seed, names)
    size = max(1, round(cfg.shuffle_chunks * cfg.chunk / tiles_per_image(plate.shape, cfg)))
    rng = np.random.default_rng([cfg.seed, 1])
    sides = []
    for validation in (False, True):
        images = [plate.index[i] for i in np.flatnonzero(val_units[units] == validation)]
        images = [images[i] for i in rng.permutation(len(images))]
        sides.append([images[g : g + size] for g in range(0, len(images), size)])
    return Plan(sides[0] + sides[1], len(sides[0]), [n for n, v in zip(names, val_units, strict=True) if v])


def prepare(source: str | Path, output: str | Path, cfg: PrepareConfig) -> PrepareSummary:
    """Label and tile the plate at ``source`` into ``output``, written atomically; return what was done.

    With ``keep_intermediate``, every tile (before the multi-class filter) is also kept in
    ``<output>.all.h5``, and a rerun (with other split settings, say) reuses it instead of
    labelling again, if it is complete and was made from the same plate with the same tiling and
    labelling settings: checked, not assumed. Either way the output is the same.
    """
    cfg.validate()
    start = time.perf_counter()
    source, output = Path(source), Path(output)
    plate, _ = open_plate(source, cfg.channels, cfg.tiff)
    plate.require("brightfield", *(("hoechst", "draq7") if cfg.labels == "stains" else ()))
    if plate.dtype not in IMAGE_DTYPES:
        raise LivedeadError(
            f"{source}: expected uint8, uint16 or float32 pixels (what training reads), found {plate.dtype}; "
            "convert the plate to one of them"
        )
    for axis, size in zip(("height", "width"), plate.shape, strict=True):
        if cfg.tile > size:
            raise LivedeadError(f"config key 'tile': expected <= image {axis} {size} px of {source}, found {cfg.tile}")
    plan = plan_images(plate, cfg)
    intermediate = output.with_name(output.stem + ".all.h5")
    for path in (output, intermediate) if cfg.keep_intermediate else (output,):
        check_output(path, [source])
    remove_stale_temporaries(output)
    remove_stale_temporaries(intermediate)
    recipe = _recipe(source, cfg)
    rows = tile_rows(cfg.tile, plate.dtype, len(CLASS_NAMES))
    with Progress(disable=not cfg.progress) as bar, create_tile_file(output) as dst:
        final = ChunkAppender(dst, rows, cfg.chunk, checksum=cfg.checksum)
        if cfg.keep_intermediate and reusable_first_pass(intermediate, recipe):
            bar.console.print(f"reusing {intermediate}: complete, and made from this plate with these settings")
            with open_tile_file(intermediate) as src:
                summary = _write(_stored_tiles(src, plan.order), plan, cfg, final, None, bar)
                kept = read_first_pass(src)
                assert kept is not None  # reusable_first_pass read it
                summary.diameters, summary.labelling_seconds = kept.diameters, kept.labelling_seconds
        else:
            workers = min(worker_count(cfg.workers), plate.n_images)
            assert plate.reader is not None
            diameter = cfg.scale.fixed(plate.pixel_size_um)
            n = tiles_per_image(plate.shape, cfg)
            label = partial(image_tiles, plate.reader, cfg, diameter)
            # closed on any error or Ctrl-C here too, so the workers stop now, not when the traceback is freed
            with closing(labelled_tiles(label, plan.order, workers, rows, n)) as tiles:
                if cfg.keep_intermediate:
                    with create_tile_file(intermediate) as every:
                        summary = _write(tiles, plan, cfg, final, ChunkAppender(every, rows, cfg.chunk), bar, workers)
                        FirstPassAttrs(recipe, summary.diameters, summary.labelling_seconds).write(every)
                else:
                    summary = _write(tiles, plan, cfg, final, None, bar, workers)
        _check_split(summary, plan, source, cfg)
        TileAttrs(
            tile=cfg.tile,
            stride=cfg.stride,
            chunk=cfg.chunk,
            class_names=list(CLASS_NAMES),
            n_train=summary.n_train,
            n_val=summary.tiles_kept - summary.n_train,
            split_by=cfg.split_by,
            split_seed=cfg.seed,
            val_fraction=cfg.val_fraction,
            val_units=plan.val_units,
            wells=list(plate.wells),
            source=str(source.resolve()),
            labels_source=cfg.labels,
            tiles_seen=summary.tiles_seen,
            nucleus_diameter_px=float(np.median(summary.diameters)) if summary.diameters else float("nan"),
            nucleus_diameter_setting=str(cfg.scale.fixed(plate.pixel_size_um) or cfg.diameter),
            pixel_size_um=cfg.pixel_size_um or plate.pixel_size_um,
        ).write(dst)
    summary.bytes_written = output.stat().st_size
    summary.seconds = time.perf_counter() - start
    return summary


def _write(
    tiles: Iterator[ImageTiles],
    plan: Plan,
    cfg: PrepareConfig,
    final: ChunkAppender,
    every: ChunkAppender | None,
    bar: Progress,
    workers: int = 0,
) -> PrepareSummary:
    """Each image's tiles (in plan order) into ``every``, if kept, and each group's tiles holding more
    than one class, shuffled together, into ``final``."""
    label = f"labelling and tiling images ({workers} processes)" if workers else "tiles from the kept first pass"
    task = bar.add_task(label, total=len(plan.order))
    rng = np.random.default_rng([cfg.seed, 2])
    summary = PrepareSummary(
        tiles_seen=0, tiles_kept=0, n_train=0, val_units=plan.val_units, class_fractions={}, bytes_written=0, seconds=0
    )
    kept_counts = np.zeros(len(CLASS_NAMES), np.int64)
    merged: dict[str, np.ndarray] = {}
    for g, group in enumerate(plan.groups):
        n = 0
        for _ in group:
            arrays, diameter, seconds = next(tiles)
            if every is not None:
                every.append(**arrays)
            multi = (arrays["class_counts"] > 0).sum(axis=1) > 1
            m = int(multi.sum())
            for k, v in arrays.items():  # into one buffer for every group: no fresh memory to fault in each time
                if k not in merged or len(merged[k]) < n + m:
                    grown = np.empty((max(n + m, len(group) * len(v)), *v.shape[1:]), v.dtype)
                    if k in merged:
                        grown[:n] = merged[k][:n]
                    merged[k] = grown
                merged[k][n : n + m] = v if m == len(v) else v[multi]
            n += m
            summary.tiles_seen += len(multi)
            if diameter is not None:
                summary.diameters.append(float(diameter))
            summary.labelling_seconds += seconds
            bar.advance(task)
        shuffled = rng.permutation(n)
        final.gather({k: (v[:n], shuffled) for k, v in merged.items()})
        summary.tiles_kept += len(shuffled)
        summary.n_train += len(shuffled) if g < plan.n_train_groups else 0
        kept_counts += merged["class_counts"][:n].sum(axis=0)
    final.flush()
    if every is not None:
        every.flush()
    total = max(int(kept_counts.sum()), 1)
    summary.class_fractions = {name: float(c / total) for name, c in zip(CLASS_NAMES, kept_counts, strict=True)}
    return summary


def _check_split(summary: PrepareSummary, plan: Plan, source: Path, cfg: PrepareConfig) -> None:
    if not summary.tiles_kept:
        raise LivedeadError(
            f"{source}: expected tiles holding more than one class, found none in {summary.tiles_seen} tiles "
            f"(labels={cfg.labels}; check the stain channels)"
        )
    if summary.n_train == 0 or summary.n_train == summary.tiles_kept:
        side, units = ("validation", ", ".join(plan.val_units)) if summary.n_train else ("training", "the others")
        raise LivedeadError(
            f"{source}: config key 'split_by': expected tiles holding more than one class on both sides, "
            f"found none in {side} ({units}); choose another 'seed' or split_by=image"
        )


def _stored_tiles(src: h5py.File, order: list[tuple[int, int]]) -> Iterator[ImageTiles]:
    """The tiles of each image of ``order`` from a kept first pass, as :func:`labelled_tiles` yields them."""
    origin = src["origin"][:]
    starts = np.flatnonzero(np.r_[True, (np.diff(origin[:, :2], axis=0) != 0).any(axis=1)])
    ends = np.r_[starts[1:], len(origin)]
    ranges = {(int(origin[a, 0]), int(origin[a, 1])): (int(a), int(b)) for a, b in zip(starts, ends, strict=True)}
    for image in order:
        a, b = ranges[image]
        yield {k: src[k][a:b] for k in DATASETS}, None, 0.0


def _recipe(source: Path, cfg: PrepareConfig) -> str:
    """What the first pass's file depends on: the plate's fingerprint and the tiling and labelling settings."""
    settings = asdict(cfg)
    split = ("split_by", "val_fraction", "val_wells", "seed", "shuffle_chunks")
    for key in (*split, "checksum", "keep_intermediate", "workers"):
        settings.pop(key)
    settings.pop("progress")
    if source.is_dir():
        files = sorted((p.name, p.stat().st_size) for p in source.iterdir() if p.is_file())
        plate = hashlib.sha1(json.dumps(files).encode()).hexdigest()
    else:
        plate = json.dumps(fingerprint(source), sort_keys=True)
    return json.dumps({"plate": plate, "settings": settings}, sort_keys=True, default=str)


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
