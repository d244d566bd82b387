"""Raw plates: stitched well images over time, from an HDF5 plate file, an OME-Zarr HCS plate or a folder of TIFFs.

A plate yields one image at a time (all channels of one well at one time point), so that
nothing downstream ever holds the whole plate. An image that cannot be read is yielded with its
``error`` set, so a caller decides whether to stop (prepare) or to go on (predict). Images of a
TIFF folder may differ in size: whole-well prediction takes each as it is.

HDF5 plate file: the layout of :mod:`livedead.plates.platefile`, its one writer and reader (the
synthetic generator and stitching write through it; real data may use it too).

OME-Zarr HCS plate (``plate.zarr``, NGFF 0.4 or 0.5): read through :mod:`livedead.plates.omezarr`,
one field per well (a plate of several fields per well is stitched first, ``livedead.stitch``); its
channels are ``channels`` in order or, by their ``omero`` names, ``tiff.channel_names`` as for
OME-TIFF. Its fields' :meth:`~livedead.plates.omezarr.Field.plane` read a region at a time.

Image folder: one stitched multi-channel image per well and time point, named by a regular
expression with the groups ``well`` and ``time`` (default ``A1_t003.tif``, ``A1_t003.ome.tif`` or
a vendor file such as ``A1_t003.nd2``), read by :func:`livedead.plates.images.read_image`. The
channel roles are the file's channels in the order ``channels`` gives or, for files that name
their channels (OME-TIFF, vendor formats), by name (``tiff.channel_names``); the axis order of a
plain TIFF is ``tiff.axes`` (``CYX`` or ``YXC``). The pixel size of the first image's metadata is
the plate's.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from livedead.errors import LivedeadError
from livedead.plates.images import ImageMeta, pick_channels, read_image
from livedead.plates.omezarr import ZarrPlate, is_zarr, open_zarr_plate
from livedead.plates.platefile import PLATE_CHANNELS, PlateTruth, describe_plate, read_plate_image, read_truth


@dataclass
class TiffLayout:
    """How a folder of stitched TIFFs names and orders its images (config key ``tiff``)."""

    pattern: str = r"^(?P<well>[A-Za-z]*\d+)_t(?P<time>\d+)(\.ome)?\.(tiff?|nd2|czi|lif)$"
    """A regular expression with the groups ``well`` and ``time``: ``A1_t003.tif``, ``A1_t003.ome.tif``."""
    axes: str = "CYX"
    """``CYX`` or ``YXC``, for plain TIFFs (OME-TIFF and vendor files say their own)."""
    channel_names: dict[str, str] = field(default_factory=dict)
    """Role to the file's channel name (``{brightfield: BF, hoechst: DAPI, draq7: Cy5}``), for files
    that name their channels; empty: the file's channels are ``channels`` in order."""


@dataclass
class PlateImage:
    """One stitched well image: its position on the plate and its channels by name."""

    well: int
    time: int
    channels: dict[str, Any]
    """(H, W) numpy arrays, or for a TIFF opened lazily :class:`~livedead.plates.images.ChannelRows`."""
    truth: np.ndarray | None = None
    error: str | None = None
    """Why this image could not be read; the iterator goes on to the next one."""


@dataclass
class ImageReader:
    """Reads one image of a plate by its (well, time point), opening the file for that read: it is
    picklable, so that worker processes read the images they work on themselves."""

    source: Path
    names: list[str]
    """The channel roles, in the file's channel order."""
    images_key: str = "images"
    has_truth: bool = False
    files: dict[tuple[int, int], Path] | None = None
    """A folder's image files; None for an HDF5 plate."""
    layout: TiffLayout | None = None
    zarr: ZarrPlate | None = None
    """An OME-Zarr plate's wells and fields; None for other plates."""
    dtype: np.dtype | None = None
    """A folder's pixel type, the first image's: every image must have it, or it would be cast
    silently into buffers made for the first."""
    lazy_px: int | None = None
    """A folder's TIFF of more pixels than this a channel is not read but opened: its channels are
    :class:`~livedead.plates.images.ChannelRows`, read a band of rows at a time (their pixels unchecked
    here: the reader of the rows checks them)."""

    def __call__(self, index: tuple[int, int]) -> PlateImage:
        w, t = index
        if self.zarr is not None:
            return self._zarr_image(w, t)
        if self.files is not None:
            try:
                data, _ = _read(self.files[w, t], self.names, self.layout or TiffLayout(), self.lazy_px)
            except LivedeadError as err:
                return PlateImage(w, t, {}, error=str(err))
            in_memory = {k: v for k, v in data.items() if isinstance(v, np.ndarray)}
            error = self._other_dtype(data, index) or _not_finite(in_memory, str(self.files[w, t]))
            return PlateImage(w, t, data, error=error)
        where = f"{self.source}: image (well {w}, time {t}) of '/{self.images_key}'"
        try:
            data, lab = read_plate_image(self.source, index, self.images_key, self.has_truth)
        except OSError as err:
            return PlateImage(w, t, {}, error=f"{where}: cannot be read: found {err}")
        channels = dict(zip(self.names, data, strict=True))
        return PlateImage(w, t, channels, lab, error=_not_finite(channels, where))

    def _zarr_image(self, w: int, t: int) -> PlateImage:
        assert self.zarr is not None
        field_ = self.zarr.fields[w][0]
        where = f"{self.source}/{self.zarr.image_path(w)}"
        try:
            data = field_.read(t)
            names, meta = (self.layout or TiffLayout()).channel_names, ImageMeta(field_.channel_names)
            channels = pick_channels(data, meta, self.names, names, where, "tiff.channel_names")
        except LivedeadError as err:
            return PlateImage(w, t, {}, error=str(err))
        except (OSError, ValueError) as err:  # a chunk that cannot be read or decoded
            return PlateImage(w, t, {}, error=f"{where}: time {t} cannot be read: found {type(err).__name__}: {err}")
        return PlateImage(w, t, channels, error=_not_finite(channels, where))

    def _other_dtype(self, channels: dict[str, Any], index: tuple[int, int]) -> str | None:
        """Why a folder's image cannot join its plate: pixels of another type than the first image's."""
        assert self.files is not None
        found = next((c.dtype for c in channels.values() if c.dtype != self.dtype), None)
        if self.dtype is None or found is None:
            return None
        return (
            f"{self.files[index]}: expected {self.dtype} pixels, as the folder's first image has, found {found}; "
            "convert the folder's images to one pixel type"
        )


def _not_finite(channels: dict[str, np.ndarray], where: str) -> str | None:
    """Why an image's pixels cannot be used: NaN or infinite values, which every threshold and
    normalisation downstream would turn into an error without a name, or into silent nonsense."""
    for name, pixels in channels.items():
        if np.issubdtype(pixels.dtype, np.floating) and not np.isfinite(pixels).all():
            bad = int(np.count_nonzero(~np.isfinite(pixels)))
            return f"{where}: channel '{name}': expected finite pixels, found {bad} NaN or infinite"
    return None


@dataclass
class Plate:
    """What a reader knows about a plate before reading any pixels."""

    source: Path
    wells: list[str]
    timepoints: int
    shape: tuple[int, int]
    dtype: np.dtype
    channels: list[str]
    has_truth: bool
    n_images: int
    index: list[tuple[int, int]] = field(default_factory=list)
    """The (well, time point) of every image there is, in plate order (a folder may lack some)."""
    pixel_size_um: float | None = None
    """From the plate's metadata (HDF5 ``attrs["pixel_size_um"]``), where it records one."""
    time_interval_h: float | None = None
    """Hours between time points, from the metadata (HDF5 ``attrs["time_interval_h"]``), where recorded."""
    reader: ImageReader | None = field(default=None, repr=False)
    """Reads any one image: ``plate.reader((well, time))``."""

    def require(self, *names: str) -> None:
        """Fail with one line if a channel the caller needs is missing."""
        missing = [n for n in names if n not in self.channels]
        if missing:
            raise LivedeadError(
                f"{self.source}: expected channels {list(names)}, found {self.channels} "
                f"(set config key 'channels' to name them in order)"
            )

    def truth(self) -> PlateTruth:
        """The counts and nuclei the plate records as true: a plate file's ``/truth``; none for a folder."""
        plate_file = self.reader is not None and self.reader.files is None and self.reader.zarr is None
        return read_truth(self.source) if plate_file else PlateTruth()


def open_plate(
    path: str | Path,
    channels: Sequence[str] | None = PLATE_CHANNELS,
    tiff: TiffLayout | None = None,
    images_key: str = "images",
    lazy_px: int | None = None,
) -> tuple[Plate, Iterator[PlateImage]]:
    """Describe a plate and return a lazy iterator over its images, in plate order (any one image:
    ``plate.reader((well, time))``); a folder's TIFFs of more than ``lazy_px`` pixels are opened, not read."""
    path = Path(path)
    if not path.exists():
        raise LivedeadError(f"{path}: file not found")
    if is_zarr(path):
        return _zarr_plate(path, channels, tiff or TiffLayout())
    if path.is_dir():
        return _folder_plate(path, channels, tiff or TiffLayout(), lazy_px)
    return _hdf5_plate(path, channels, images_key)


def _hdf5_plate(path: Path, channels: Sequence[str] | None, images_key: str) -> tuple[Plate, Iterator[PlateImage]]:
    info = describe_plate(path, channels, images_key)
    wells, timepoints = info.shape[:2]
    plate = Plate(
        source=path,
        wells=info.attrs.wells,
        timepoints=timepoints,
        shape=(info.shape[3], info.shape[4]),
        dtype=info.dtype,
        channels=info.channels,
        has_truth=info.has_truth,
        n_images=wells * timepoints,
        index=[(w, t) for w in range(wells) for t in range(timepoints)],
        pixel_size_um=info.attrs.pixel_size_um,
        time_interval_h=info.attrs.time_interval_h,
        reader=ImageReader(path, info.channels, images_key, info.has_truth),
    )
    return plate, map(plate.reader, plate.index)


def _folder_plate(
    folder: Path, channels: Sequence[str] | None, layout: TiffLayout, lazy_px: int | None = None
) -> tuple[Plate, Iterator[PlateImage]]:
    if not channels:
        raise LivedeadError(f"{folder}: an image folder needs config key 'channels' to name the channel roles")
    regex = re.compile(layout.pattern)
    found = []
    for p in sorted(folder.iterdir()):
        m = regex.match(p.name)
        if m:
            found.append((m.group("well"), int(m.group("time")), p))
    if not found:
        raise LivedeadError(f"{folder}: expected image files matching {layout.pattern!r}, found none")
    wells = sorted({w for w, _, _ in found})
    times = sorted({t for _, t, _ in found})
    first, meta = _read(found[0][2], channels, layout, lazy_px)
    files = {(wells.index(w), times.index(t)): p for w, t, p in found}
    dtype = next(iter(first.values())).dtype
    plate = Plate(
        source=folder,
        wells=wells,
        timepoints=len(times),
        shape=next(iter(first.values())).shape,
        dtype=dtype,
        channels=list(channels),
        has_truth=False,
        n_images=len(found),
        index=sorted(files),
        pixel_size_um=meta.pixel_size_um,
        reader=ImageReader(folder, list(channels), files=files, layout=layout, dtype=dtype, lazy_px=lazy_px),
    )
    return plate, map(plate.reader, plate.index)


def _zarr_plate(path: Path, channels: Sequence[str] | None, layout: TiffLayout) -> tuple[Plate, Iterator[PlateImage]]:
    zp = open_zarr_plate(path)
    several = next(((w, len(f)) for w, f in zip(zp.wells, zp.fields, strict=True) if len(f) != 1), None)
    if several is not None:
        raise LivedeadError(
            f"{path}: well {several[0]}: expected one field per well, found {several[1]}: stitch the fields "
            f"first (python -m livedead.stitch input={path} output=<plate.h5>)"
        )
    if not channels:
        raise LivedeadError(f"{path}: an OME-Zarr plate needs config key 'channels' to name the channel roles")
    first = zp.fields[0][0]
    where = f"{path}/{zp.image_path(0)}"
    probe = np.zeros((first.channels, 1, 1), first.dtype)  # the channel roles checked before any pixel is read
    pick_channels(probe, ImageMeta(first.channel_names), channels, layout.channel_names, where, "tiff.channel_names")
    index = [(w, t) for w, f in enumerate(zp.fields) for t in range(f[0].timepoints)]
    plate = Plate(
        source=path,
        wells=zp.wells,
        timepoints=max(f[0].timepoints for f in zp.fields),
        shape=first.yx,
        dtype=first.dtype,
        channels=list(channels),
        has_truth=False,
        n_images=len(index),
        index=index,
        pixel_size_um=first.pixel_size_um,
        time_interval_h=zp.time_interval_h,
        reader=ImageReader(path, list(channels), layout=layout, zarr=zp, dtype=first.dtype),
    )
    return plate, map(plate.reader, plate.index)


def _read(
    path: Path, channels: Sequence[str], layout: TiffLayout, lazy_px: int | None = None
) -> tuple[dict[str, Any], ImageMeta]:
    data, meta = read_image(path, layout.axes, lazy_px)
    return pick_channels(data, meta, channels, layout.channel_names, path, "tiff.channel_names"), meta
