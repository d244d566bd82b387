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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

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


def read_image(path: str | Path, axes: str = "CYX") -> tuple[np.ndarray, ImageMeta]:
    """The pixels of one image file as (C, H, W), and its metadata.

    ``axes`` (``CYX`` or ``YXC``) is the axis order of a plain TIFF; OME-TIFF and vendor files say
    their own. A file that cannot be read is one :class:`LivedeadError` naming it.
    """
    path = Path(path)
    if path.suffix.lower() in VENDOR_SUFFIXES:
        return _read_bioio(path)
    if is_ome_tiff(path):
        return _read_ome_tiff(path)
    if axes not in ("CYX", "YXC"):
        raise LivedeadError(f"config key 'tiff.axes': expected 'CYX' or 'YXC', found {axes!r}")
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
    metadata: dict[str, Any] = {"axes": "CYX", "Channel": {"Name": list(channel_names)}}
    if pixel_size_um:
        metadata.update(PhysicalSizeX=pixel_size_um, PhysicalSizeY=pixel_size_um)
        metadata.update(PhysicalSizeXUnit="µm", PhysicalSizeYUnit="µm")
    if position_um is not None:
        n = data.shape[0]
        metadata["Plane"] = {"PositionY": [position_um[0]] * n, "PositionX": [position_um[1]] * n}
        metadata["Plane"].update(PositionYUnit=["µm"] * n, PositionXUnit=["µm"] * n)
    tifffile.imwrite(path, data, ome=True, metadata=metadata, compression=compression, photometric="minisblack")
