"""The raw plate file (HDF5): the one module that writes it and reads it, truth included.

:mod:`livedead.plates.synthetic` and :mod:`livedead.plates.stitching` write plates through
:func:`write_plate`; :mod:`livedead.plates.sources` reads them through :func:`describe_plate` and
:func:`read_plate_image`, and ``predict`` reads the truth through :func:`read_truth`. Real data may
use the layout too (format ``livedead-plate/2``):

* ``/images`` (wells, timepoints, channels, H, W), any integer or float dtype, with
  ``attrs["channels"]`` naming the channels (else the caller's channel list).
* optional ``/truth/labels`` (wells, timepoints, H, W) uint8 (0 background, 1 live, 2 dead nuclei),
  ``/truth/instances`` (same shape, uint32: the nucleus of cell ``i`` is ``i + 1``),
  ``/truth/live_count`` and ``/truth/dead_count`` (wells, timepoints), ``/truth/death_hazard`` (wells,);
  for a plate made from a plate map, ``/truth/death_time`` (wells, cells) int32 (the time point cell
  ``i`` died at, 0 dead from the start, -1 alive at the end, -2 no such cell in that well),
  ``/truth/concentration`` (wells,) and ``/truth/ec50`` (the dead fraction's true EC50 at the last time point).
* optional ``/stitch/positions`` (wells, timepoints, fields, 2) int64: where stitching laid each field.
* file attributes (:class:`PlateAttrs`): ``format``, ``wells``, and where known ``pixel_size_um``,
  ``time_interval_h``, the synthetic ``spec`` or the ``stitch`` settings (JSON).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from livedead.errors import LivedeadError
from livedead.files import atomic_path

PLATE_FORMAT = "livedead-plate/2"
"""The raw plate layout's version (``attrs["format"]``); version 2 adds ``/truth/instances``."""

PLATE_CHANNELS = ("brightfield", "hoechst", "draq7")
"""The channels a plate carries by default: transmitted light, then the two stains."""

TRUTH_LABELS = "truth/labels"
STITCH_POSITIONS = "stitch/positions"


@dataclass
class PlateAttrs:
    """The plate file's attributes: what a plate says about itself besides its pixels."""

    wells: list[str]
    format: str = PLATE_FORMAT
    pixel_size_um: float | None = None
    time_interval_h: float | None = None
    spec: str | None = None
    """The synthetic generator's spec (JSON), for a synthetic plate."""
    stitch: str | None = None
    """The settings it was stitched with (JSON), for a stitched plate."""

    def write(self, f: h5py.File) -> None:
        """Into ``f.attrs``; an attribute that is None is left out, as a plate that does not know it."""
        f.attrs.update({k: v for k, v in vars(self).items() if v is not None})

    @classmethod
    def read(cls, f: h5py.File, n_wells: int) -> PlateAttrs:
        """From ``f.attrs``, with what a plate written elsewhere may leave out (wells ``W01``... by index)."""
        a = f.attrs

        def number(key: str) -> float | None:
            return float(a[key]) if key in a else None

        def text(key: str) -> str | None:
            return str(a[key]) if key in a else None

        return cls(
            wells=[str(w) for w in a.get("wells", [f"W{i + 1:02d}" for i in range(n_wells)])],
            format=text("format") or "",
            pixel_size_um=number("pixel_size_um"),
            time_interval_h=number("time_interval_h"),
            spec=text("spec"),
            stitch=text("stitch"),
        )


@dataclass
class PlateFileInfo:
    """What :func:`describe_plate` learns of a plate file before reading any pixels."""

    attrs: PlateAttrs
    shape: tuple[int, ...]
    """(wells, timepoints, channels, H, W) of ``/images``."""
    dtype: np.dtype
    channels: list[str]
    has_truth: bool
    """Whether the plate carries ``/truth/labels`` (of the images' shape)."""


def _open(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except OSError as err:
        reason = str(err).split("(", 1)[-1].rstrip(")") if "(" in str(err) else str(err)
        raise LivedeadError(f"{path}: expected a readable HDF5 file, found {reason}") from None


def describe_plate(path: Path, channels: Sequence[str] | None, images_key: str = "images") -> PlateFileInfo:
    """Check a plate file's layout and say what it holds, or one line naming what is wrong."""
    with _open(path) as f:
        if images_key not in f:
            raise LivedeadError(f"{path}: dataset '/{images_key}' not found (found {sorted(f.keys())})")
        ds = f[images_key]
        if ds.ndim != 5:
            raise LivedeadError(
                f"{path}: dataset '/{images_key}': expected 5 dims (wells, timepoints, channels, H, W), "
                f"found shape {ds.shape}"
            )
        names = [str(c) for c in ds.attrs.get("channels", channels or [])]
        if "channels" in ds.attrs and channels is not None and list(channels) not in (names, list(PLATE_CHANNELS)):
            raise LivedeadError(
                f"{path}: config key 'channels': expected the channels the plate names, in its order ({names}), "
                f"found {list(channels)}"
            )
        if len(names) != ds.shape[2]:
            raise LivedeadError(
                f"{path}: dataset '/{images_key}' has {ds.shape[2]} channels, but the channel names are {names}"
            )
        has_truth = TRUTH_LABELS in f
        expected = (*ds.shape[:2], *ds.shape[3:])
        if has_truth and f[TRUTH_LABELS].shape != expected:
            raise LivedeadError(
                f"{path}: dataset '/{TRUTH_LABELS}': expected shape {expected}, found {f[TRUTH_LABELS].shape}"
            )
        return PlateFileInfo(PlateAttrs.read(f, ds.shape[0]), ds.shape, ds.dtype, names, has_truth)


def read_plate_image(
    path: Path, index: tuple[int, int], images_key: str = "images", with_truth: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """One image's (channels, H, W) pixels and, ``with_truth``, its truth class map; opens the file for
    this read alone, so worker processes read the images they work on themselves. A read that
    fails raises ``OSError``, for the caller to report that image and go on."""
    w, t = index
    with _open(path) as f:
        data = f[images_key][w, t]
        return data, f[TRUTH_LABELS][w, t] if with_truth else None


def stitch_positions(path: Path, well: int, time: int) -> np.ndarray:
    """The (fields, 2) positions stitching laid one well's fields at (row-major grid index; y, x px)."""
    with _open(path) as f:
        if STITCH_POSITIONS not in f:
            raise LivedeadError(f"{path}: expected a stitched plate (with '/{STITCH_POSITIONS}'), found none")
        return f[STITCH_POSITIONS][well, time]


@dataclass
class PlateTruth:
    """What a plate knows to be true of its images: cell counts, and each cell's nucleus where recorded."""

    path: Path | None = None
    counts: np.ndarray | None = None
    """(wells, timepoints, 2) live and dead cells; None where the plate records no counts."""
    has_instances: bool = False
    death_time: np.ndarray | None = None
    """(wells, cells) time point of each cell's death (-1 alive at the end, -2 no such cell), from a plate map."""
    concentration: np.ndarray | None = None
    ec50: float | None = None

    def instances(self, well: int, time: int) -> np.ndarray | None:
        """The true nucleus of every cell of one image (0 background), where the plate records them."""
        if not self.has_instances or self.path is None:
            return None
        with _open(self.path) as f:
            return f["truth/instances"][well, time].astype(np.int64)


def read_truth(path: Path) -> PlateTruth:
    """The truth a plate file carries (``/truth/...``, as the synthetic plate does); none for other files."""
    with _open(path) as f:
        counts = None
        if "truth/live_count" in f and "truth/dead_count" in f:
            counts = np.stack([f["truth/live_count"][:], f["truth/dead_count"][:]], axis=-1)
        dose = "truth/death_time" in f
        return PlateTruth(
            path,
            counts,
            "truth/instances" in f,
            f["truth/death_time"][:] if dose else None,
            f["truth/concentration"][:] if dose else None,
            float(f["truth/ec50"][()]) if dose else None,
        )


@dataclass
class PlateWriter:
    """The datasets of a plate file being written: one image, and its truth, at a time."""

    images: h5py.Dataset
    truth: dict[str, h5py.Dataset] = field(default_factory=dict)
    positions: h5py.Dataset | None = None

    def write_image(self, well: int, time: int, image: np.ndarray) -> None:
        self.images[well, time] = image

    def write_truth(
        self, well: int, time: int, labels: np.ndarray, instances: np.ndarray, live: int, dead: int
    ) -> None:
        self.truth["labels"][well, time] = labels
        self.truth["instances"][well, time] = instances
        self.truth["live_count"][well, time] = live
        self.truth["dead_count"][well, time] = dead

    def write_cell_truth(self, death_time: Sequence[np.ndarray], concentration: np.ndarray, ec50: float) -> None:
        """Every cell's time of death (one array per well), the wells' concentrations and the true EC50."""
        group = self.images.file["truth"]
        table = np.full((len(death_time), max((len(d) for d in death_time), default=0)), -2, np.int32)
        for w, d in enumerate(death_time):
            table[w, : len(d)] = d
        group.create_dataset("death_time", data=table)
        group.create_dataset("concentration", data=concentration)
        group.create_dataset("ec50", data=ec50)

    def write_positions(self, well: int, time: int, positions: np.ndarray) -> None:
        assert self.positions is not None, "write_plate(fields=...) makes the positions"
        self.positions[well, time] = positions


@contextmanager
def write_plate(
    path: Path,
    attrs: PlateAttrs,
    shape: tuple[int, int, int, int, int],
    dtype: np.dtype,
    channels: Sequence[str],
    death_hazard: np.ndarray | None = None,
    fields: int | None = None,
    truth: bool = False,
) -> Iterator[PlateWriter]:
    """A new plate file of ``shape`` (wells, timepoints, channels, H, W), written under a temporary name
    and renamed into place when whole. ``death_hazard`` (per well) makes the truth datasets, which
    the synthetic plate fills; ``truth`` makes them without one (a real plate with hand-drawn nuclei);
    ``fields`` makes the stitched field positions."""
    w, t, _, h, wd = shape
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        images = f.create_dataset("images", shape, dtype, chunks=(1, 1, 1, h, wd))
        images.attrs["channels"] = list(channels)
        writer = PlateWriter(images)
        if death_hazard is not None or truth:
            group = f.create_group("truth")
            lzf = {"chunks": (1, 1, h, wd), "compression": "lzf"}
            writer.truth = {
                "labels": group.create_dataset("labels", (w, t, h, wd), np.uint8, **lzf),
                "instances": group.create_dataset("instances", (w, t, h, wd), np.uint32, **lzf),
                "live_count": group.create_dataset("live_count", (w, t), np.int64),
                "dead_count": group.create_dataset("dead_count", (w, t), np.int64),
            }
            if death_hazard is not None:
                group.create_dataset("death_hazard", data=death_hazard)
        if fields is not None:
            writer.positions = f.create_dataset(STITCH_POSITIONS, (w, t, fields, 2), np.int64)
            writer.positions.attrs["order"] = "row-major grid index (row * cols + col); (y, x) px"
        attrs.write(f)
        yield writer
