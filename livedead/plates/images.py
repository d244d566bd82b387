"""One reader for every image file a plate arrives in: TIFF, OME-TIFF with its metadata, and vendor formats.

:func:`read_image` returns the pixels as (channels, H, W) with what the file says about them
(:class:`ImageMeta`): channel names, pixel size and stage position. Plain TIFFs carry none of it,
so their channel order comes from the config; OME-TIFF carries all three in its OME-XML (read by
tifffile); ND2, CZI and LIF files are read through `bioio <https://github.com/bioio-devs/bioio>`_
and its format plugins, the optional extra ``pip install "livedead[formats]"``.

Channel roles (which channel is the transmitted light, the Hoechst and the Draq7 stain) are
named once, in the config: by position (``channels``, the file's channel order) or, for files
that name their channels, by name (``channel_names``, role to file channel):

>>> pick_channels(np.zeros((2, 4, 4)), ImageMeta(["BF", "DAPI"]), ["brightfield", "hoechst"],
...               {"brightfield": "BF", "hoechst": "DAPI"}, "a.ome.tif").keys()
dict_keys(['brightfield', 'hoechst'])
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import zarr

from livedead.errors import LivedeadError

VENDOR_SUFFIXES = (".nd2", ".czi", ".lif")
"""Read through bioio (the ``formats`` extra)."""

_UM = {"µm": 1.0, "um": 1.0, "nm": 1e-3, "mm": 1e3, "m": 1e6, "pm": 1e-6}


@dataclass
class ImageMeta:
    """What an image file says about its pixels; ``None`` where it says nothing."""

    channel_names: list[str] | None = None
    pixel_size_um: float | None = None
    position_um: tuple[float, float] | None = None
    """The stage position (y, x) of the image's first pixel, in µm."""


def is_ome_tiff(path: Path) -> bool:
    return path.name.lower().endswith((".ome.tif", ".ome.tiff"))


def read_image(
    path: str | Path, axes: str = "CYX", lazy_px: int | None = None
) -> tuple[np.ndarray | LazyImage, ImageMeta]:
    """The pixels of one image file as (C, H, W), and its metadata.

    ``axes`` (``CYX`` or ``YXC``) is the axis order of a plain TIFF; OME-TIFF and vendor files say
    their own. A TIFF of more than ``lazy_px`` pixels a channel is not read but opened
    (:class:`LazyImage`): its channels are read a band of rows at a time. A file that cannot be read
    is one :class:`LivedeadError` naming it.
    """
    path = Path(path)
    if path.suffix.lower() in VENDOR_SUFFIXES:
        return _read_bioio(path)
    if axes not in ("CYX", "YXC"):
        raise LivedeadError(f"config key 'tiff.axes': expected 'CYX' or 'YXC', found {axes!r}")
    if lazy_px is not None:
        try:
            lazy: LazyImage | None = LazyImage.open(path, axes)
        except LivedeadError:  # reading it whole says what is wrong with it, in its own words
            lazy = None
        if lazy is not None and lazy.shape[1] * lazy.shape[2] > lazy_px:
            return lazy, _ome_meta_of(path) if is_ome_tiff(path) else ImageMeta()
    if is_ome_tiff(path):
        return _read_ome_tiff(path)
    try:
        data = tifffile.imread(path)
    except Exception as err:  # tifffile raises several types for broken files
        raise LivedeadError(f"{path}: expected a readable TIFF, found {type(err).__name__}: {err}") from None
    if data.ndim == 2:
        data = data[None]
    elif data.ndim != 3:
        raise LivedeadError(f"{path}: expected a 2-D or 3-D {axes} image, found shape {data.shape}")
    elif axes == "YXC":
        data = np.moveaxis(data, -1, 0)
    return data, ImageMeta()


@dataclass(frozen=True)
class LazyImage:
    """A (C, H, W) TIFF or OME-TIFF left on disk: ``image[c]`` is channel ``c``, read a band of rows at a time
    (:class:`ChannelRows`) through tifffile's zarr view of its strips or tiles, compressed or not.

    Files are opened for each read, so nothing is held open between bands and the image pickles."""

    path: Path
    axes: str
    """The file's axes (tifffile's series axes, ``S`` for samples)."""
    shape: tuple[int, int, int]
    dtype: np.dtype

    @classmethod
    def open(cls, path: Path, axes: str = "CYX") -> LazyImage:
        """The file's pixels, unread; its axes as an OME-TIFF or ``axes`` of a plain TIFF say."""
        try:
            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                order, shape, dtype = series.axes, series.shape, series.dtype
        except Exception as err:
            raise LivedeadError(f"{path}: expected a readable TIFF, found {type(err).__name__}: {err}") from None
        if not is_ome_tiff(path):  # a plain TIFF's axes are the config's
            order = "YX" if len(shape) == 2 else axes if len(shape) == 3 else order
        sizes = dict(zip(order, shape, strict=True))
        extra = {a: n for a, n in sizes.items() if a not in "CSYX" and n != 1}
        if extra or "Y" not in sizes or "X" not in sizes or ("C" in sizes and "S" in sizes):
            raise LivedeadError(f"{path}: expected an image of axes C, Y, X, found {order} of shape {shape}")
        channels = sizes.get("C", sizes.get("S", 1))
        return cls(path, order, (channels, sizes["Y"], sizes["X"]), np.dtype(dtype))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, channel: int) -> ChannelRows:
        if not 0 <= channel < self.shape[0]:
            raise IndexError(f"channel {channel} of {self.shape[0]}")
        return ChannelRows(self, channel)

    def __iter__(self) -> Iterator[ChannelRows]:
        return (self[c] for c in range(self.shape[0]))

    def read(self, channel: int, rows: slice, cols: slice) -> np.ndarray:
        """Pixels ``rows`` x ``cols`` of one channel, read from the file."""
        key = tuple(channel if a in "CS" else rows if a == "Y" else cols if a == "X" else 0 for a in self.axes)
        try:
            with tifffile.TiffFile(self.path) as tif, tif.series[0].aszarr() as store:
                pixels = np.asarray(zarr.open_array(store, mode="r")[key])
        except Exception as err:
            raise LivedeadError(f"{self.path}: cannot be read: found {type(err).__name__}: {err}") from None
        if np.issubdtype(pixels.dtype, np.floating) and not np.isfinite(pixels).all():
            bad = int(np.count_nonzero(~np.isfinite(pixels)))
            raise LivedeadError(
                f"{self.path}: channel {channel}, rows {rows.start} to {rows.stop}: expected finite pixels, "
                f"found {bad} NaN or infinite"
            )
        return pixels


@dataclass(frozen=True)
class ChannelRows:
    """One channel of a :class:`LazyImage`: an (H, W) array-like that reads what it is sliced to."""

    image: LazyImage
    channel: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.image.shape[1], self.image.shape[2]

    @property
    def dtype(self) -> np.dtype:
        return self.image.dtype

    def __getitem__(self, key: slice | tuple[slice, slice]) -> np.ndarray:
        rows, cols = key if isinstance(key, tuple) else (key, slice(None))
        return self.image.read(self.channel, rows, cols)


def _ome_meta_of(path: Path) -> ImageMeta:
    try:
        with tifffile.TiffFile(path) as tif:
            xml = tif.ome_metadata
    except Exception as err:
        raise LivedeadError(f"{path}: expected a readable OME-TIFF, found {type(err).__name__}: {err}") from None
    return ome_meta(xml, path) if xml else ImageMeta()


def _read_ome_tiff(path: Path) -> tuple[np.ndarray, ImageMeta]:
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            data, order = series.asarray(), series.axes
            xml = tif.ome_metadata
    except Exception as err:
        raise LivedeadError(f"{path}: expected a readable OME-TIFF, found {type(err).__name__}: {err}") from None
    for axis in "TZQ":  # a single time point or plane of a stack is one image
        if axis in order:
            i = order.index(axis)
            if data.shape[i] != 1:
                raise LivedeadError(f"{path}: expected one {axis} plane, found {data.shape[i]} (axes {order})")
            data, order = data.take(0, axis=i), order.replace(axis, "")
    order = order.replace("S", "C") if "C" not in order else order
    if "C" not in order:
        data, order = data[None], "C" + order
    if sorted(order) != ["C", "X", "Y"]:
        raise LivedeadError(f"{path}: expected an OME-TIFF of axes C, Y, X, found {series.axes}")
    data = np.moveaxis(data, [order.index(a) for a in "CYX"], [0, 1, 2])
    return data, ome_meta(xml, path) if xml else ImageMeta()


def ome_meta(xml: str, where: str | Path) -> ImageMeta:
    """Channel names, pixel size and stage position from an OME-XML document (the first image's)."""
    try:
        ome = tifffile.xml2dict(xml)["OME"]
    except Exception as err:
        raise LivedeadError(f"{where}: expected OME-XML metadata, found {type(err).__name__}: {err}") from None
    image = ome.get("Image")
    image = image[0] if isinstance(image, list) else image
    pixels = (image or {}).get("Pixels", {})
    channels = pixels.get("Channel", [])
    channels = channels if isinstance(channels, list) else [channels]
    names = [str(c.get("Name", f"C{i}")) for i, c in enumerate(channels)] or None
    size = _um(pixels.get("PhysicalSizeX"), pixels.get("PhysicalSizeXUnit", "µm"))
    plane = pixels.get("Plane")
    plane = plane[0] if isinstance(plane, list) else plane
    position = None
    if plane and "PositionX" in plane and "PositionY" in plane:
        y = _um(plane["PositionY"], plane.get("PositionYUnit", "µm"))
        x = _um(plane["PositionX"], plane.get("PositionXUnit", "µm"))
        position = (y, x) if y is not None and x is not None else None
    return ImageMeta(names, size, position)


def _um(value: Any, unit: str) -> float | None:
    if value is None:
        return None
    return float(value) * _UM.get(str(unit), 1.0)


def _read_bioio(path: Path) -> tuple[np.ndarray, ImageMeta]:
    try:
        from bioio import BioImage
    except ImportError:
        raise LivedeadError(
            f'{path}: reading {path.suffix} files needs bioio and its plugins: pip install "livedead[formats]"'
        ) from None
    try:
        image = BioImage(path)
        data = np.asarray(image.get_image_data("CYX", T=0, Z=0))
        sizes = image.physical_pixel_sizes
        names = [str(c) for c in image.channel_names] if image.channel_names else None
    except Exception as err:  # each plugin raises its own types
        found = f"{type(err).__name__}: {err}"
        raise LivedeadError(f"{path}: expected a readable {path.suffix} image, found {found}") from None
    return data, ImageMeta(names, float(sizes.X) if sizes.X else None)


def pick_channels(
    data: np.ndarray,
    meta: ImageMeta,
    roles: Sequence[str],
    names: Mapping[str, str] | None,
    where: str | Path,
    key: str = "channel_names",
) -> dict[str, np.ndarray]:
    """The channels of an image by role.

    With ``names`` (role to the file's channel name) the roles are found by name; otherwise the
    file's channels are ``roles`` in order. Either way, a channel that is not there is one line.
    """
    if names:
        if meta.channel_names is None:
            raise LivedeadError(
                f"{where}: config key '{key}' names channels, but the file names none "
                f"(use config key 'channels' for the channel order)"
            )
        out = {}
        for role in roles:
            wanted = names.get(role)
            if wanted is None:
                raise LivedeadError(f"config key '{key}.{role}': expected the file's name of the {role} channel")
            if wanted not in meta.channel_names:
                raise LivedeadError(
                    f"{where}: config key '{key}.{role}': expected a channel named {wanted!r}, "
                    f"found {meta.channel_names}"
                )
            out[role] = data[meta.channel_names.index(wanted)]
        return out
    if data.shape[0] != len(roles):
        raise LivedeadError(
            f"{where}: expected {len(roles)} channels (config key 'channels': {list(roles)}), found {data.shape[0]} "
            f"in an image of shape {data.shape}"
        )
    return dict(zip(roles, data, strict=True))


def write_ome_tiff(
    path: str | Path,
    data: np.ndarray,
    channel_names: Sequence[str],
    pixel_size_um: float | None = None,
    position_um: tuple[float, float] | None = None,
    compression: str | None = "zlib",
) -> None:
    """Write a (C, H, W) image as OME-TIFF with its channel names, pixel size and stage position (y, x).

    napari and Fiji read the scale from it; :func:`read_image` reads all three back.
    """
    metadata = _ome_metadata(channel_names, pixel_size_um, position_um)
    tifffile.imwrite(path, data, ome=True, metadata=metadata, compression=compression, photometric="minisblack")


def _ome_metadata(
    channel_names: Sequence[str], pixel_size_um: float | None, position_um: tuple[float, float] | None = None
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"axes": "CYX", "Channel": {"Name": list(channel_names)}}
    if pixel_size_um:
        metadata.update(PhysicalSizeX=pixel_size_um, PhysicalSizeY=pixel_size_um)
        metadata.update(PhysicalSizeXUnit="µm", PhysicalSizeYUnit="µm")
    if position_um is not None:
        n = len(channel_names)
        metadata["Plane"] = {"PositionY": [position_um[0]] * n, "PositionX": [position_um[1]] * n}
        metadata["Plane"].update(PositionYUnit=["µm"] * n, PositionXUnit=["µm"] * n)
    return metadata


TILE = 256
"""The tile edge of the TIFFs written band by band."""


class TiffBands:
    """A (C, H, W) image written as a tiled, compressed TIFF from bands of rows, top to bottom, with memory
    bounded by a band: an OME-TIFF with its channel names and pixel size (``channel_names``), else a plain
    TIFF (an (H, W) one for C = 1).

    TIFF stores each channel whole before the next, so bands given piecemeal wait in scratch files
    beside ``path`` (one a channel, removed on :meth:`close`); an image given in one band is written from
    memory. Either way the file is the same, tile for tile. Use as a context manager: :meth:`close` on
    success writes ``path``; a failure leaves no file but scratch ones, which
    :func:`livedead.files.remove_stale_temporaries` knows.
    """

    def __init__(
        self,
        path: Path,
        shape: tuple[int, int, int],
        dtype: np.dtype | type,
        channel_names: Sequence[str] | None = None,
        pixel_size_um: float | None = None,
    ) -> None:
        self.path, self.shape, self.dtype = Path(path), shape, np.dtype(dtype)
        self.names, self.pixel_size_um = channel_names, pixel_size_um
        self.rows = 0
        self.whole: np.ndarray | None = None
        self.scratch: list[Path] = []

    def __enter__(self) -> TiffBands:
        return self

    def __exit__(self, kind: type | None, *_: object) -> None:
        try:
            if kind is None:
                self.close()
        finally:
            for part in self.scratch:
                part.unlink(missing_ok=True)

    def write(self, start: int, rows: np.ndarray) -> None:
        """The next band: (C, rows, W), or (rows, W) for C = 1, starting at row ``start``."""
        rows = rows.reshape(self.shape[0], -1, self.shape[2])
        if start != self.rows:
            raise ValueError(f"{self.path}: expected the band at row {self.rows}, found {start}")
        if start == 0 and rows.shape[1] == self.shape[1]:
            self.whole = rows.astype(self.dtype, copy=False)
        else:
            if not self.scratch:
                pid = os.getpid()
                self.scratch = [self.path.with_name(f"{self.path.name}.tmp-{pid}.c{c}") for c in range(self.shape[0])]
            for c, part in enumerate(self.scratch):
                with open(part, "ab") as f:
                    f.write(np.ascontiguousarray(rows[c], self.dtype).tobytes())
        self.rows += rows.shape[1]

    def _strip(self, channel: int, y: int) -> np.ndarray:
        """Rows ``y:y+TILE`` of a channel."""
        h, w = self.shape[1:]
        n = min(TILE, h - y)
        if self.whole is not None:
            return self.whole[channel, y : y + n]
        offset = y * w * self.dtype.itemsize
        return np.fromfile(self.scratch[channel], self.dtype, n * w, offset=offset).reshape(n, w)

    def _tiles(self) -> Iterator[np.ndarray]:
        h, w = self.shape[1:]
        for c in range(self.shape[0]):
            for y in range(0, h, TILE):
                strip = self._strip(c, y)
                for x in range(0, w, TILE):
                    yield strip[:, x : x + TILE]

    def close(self) -> None:
        """Write the file, once every row was given."""
        if self.rows != self.shape[1]:
            raise ValueError(f"{self.path}: expected {self.shape[1]} rows, found {self.rows}")
        shape = self.shape if self.shape[0] > 1 or self.names is not None else self.shape[1:]
        ome = self.names is not None
        metadata = _ome_metadata(self.names, self.pixel_size_um) if ome else None
        tifffile.imwrite(
            self.path, self._tiles(), shape=shape, dtype=self.dtype, tile=(TILE, TILE), compression="zlib",
            photometric="minisblack", ome=ome, metadata=metadata,
        )  # fmt: skip
