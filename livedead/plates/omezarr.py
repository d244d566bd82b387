"""OME-Zarr HCS plates (NGFF 0.4 and 0.5): the one module that reads and writes them.

Reading: the plate, well and image metadata are parsed and validated by `ome-zarr-models
<https://github.com/ome-zarr-models/ome-zarr-models-py>`_ (the community's pydantic models of the
NGFF specification, a dependency of ome-zarr-py); the pixels are read with zarr, a plane or a
region at a time (:class:`Plane`), so that nothing holds more of a well than it asks for.
What a plate says is mapped onto livedead's plate:

* wells: the plate's ``wells`` (``A/1`` is the well ``A1``), fields: each well's ``images``;
* time points: the ``t`` axis (its ``scale`` in hours, minutes or seconds gives the interval);
* channels: the ``c`` axis, named by the ``omero`` channels' labels (``channel_names.<role>=``
  picks them by name, as for OME-TIFF); a ``z`` axis must hold one plane;
* pixel size and field position: the ``scale`` and ``translation`` of the full-resolution dataset,
  in the ``y``/``x`` axes' unit.

Writing (:class:`PlateWriter`, the outputs of ``predict save=ome-zarr``): one image per well whose
channels are the class probabilities, with two NGFF label images beside it, ``classes`` (the class
map) and ``nuclei`` (the counted instances, numbered through the well's time points), coloured by
``image-label`` (live green, dead red); every array multiscale and chunked, written region by
region. Metadata is written through ome-zarr-py's writer functions, pixels through zarr. A well's
``well`` metadata is written when all its images are, and the plate's ``plate`` metadata (with the
plate's ``counts.csv`` beside the wells) by :func:`finish_plate` once every well is: a plate that a
killed run leaves lacks it, and is no HCS plate to any reader. Wells are written without touching
the plate's root, so jobs writing disjoint wells of one plate need no lock.
"""

from __future__ import annotations

import math
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from livedead import CLASS_NAMES
from livedead.errors import LivedeadError

NGFF_VERSIONS = ("0.4", "0.5")
"""The versions read and written: 0.4 (zarr format 2) and 0.5 (zarr format 3)."""

LABEL_COLOURS = {1: (0, 200, 0, 255), 2: (220, 0, 0, 255)}
"""``image-label`` colours of the classes: live green, dead red (as livedead's overlays)."""

_LENGTH_UM = {"micrometer": 1.0, "nanometer": 1e-3, "millimeter": 1e3, "meter": 1e6, "angstrom": 1e-4}
_TIME_H = {"hour": 1.0, "minute": 1 / 60, "second": 1 / 3600, "millisecond": 1 / 3.6e6, "day": 24.0}
_WELL = re.compile(r"^(?P<row>[A-Za-z]+)(?P<col>\d+)$")


def is_zarr(path: Path) -> bool:
    """Whether ``path`` is a zarr group (format 2 or 3): a folder with ``zarr.json`` or ``.zgroup``."""
    return path.is_dir() and ((path / "zarr.json").is_file() or (path / ".zgroup").is_file())


# -- reading ------------------------------------------------------------------------------------
@dataclass
class Field:
    """One image of a well: where its full-resolution array is and how to index it. Picklable (paths,
    no open arrays), so that worker processes read the fields they work on themselves."""

    array: Path
    """The full-resolution dataset (a zarr array)."""
    axes: str
    """The array's axes, in its order: ``tcyx``, ``czyx``, ``yx``..."""
    shape: tuple[int, ...]
    dtype: np.dtype
    channel_names: list[str] | None
    pixel_size_um: float | None
    position_um: tuple[float, float] | None
    """The (y, x) translation of its first pixel, in µm: the field's nominal position in the well."""
    level_shapes: list[tuple[int, int]] = field(default_factory=list)
    """(H, W) of each level of its multiscale image, full resolution first."""

    @property
    def timepoints(self) -> int:
        return self.shape[self.axes.index("t")] if "t" in self.axes else 1

    @property
    def channels(self) -> int:
        return self.shape[self.axes.index("c")] if "c" in self.axes else 1

    @property
    def yx(self) -> tuple[int, int]:
        return self.shape[self.axes.index("y")], self.shape[self.axes.index("x")]

    def plane(self, time: int, channel: int) -> Plane:
        """One channel at one time point, lazily: slicing it reads only the chunks it needs."""
        return Plane(self, time, channel)

    def read(self, time: int) -> np.ndarray:
        """Every channel at one time point, (C, H, W)."""
        index = tuple(
            slice(None) if a in "cyx" else (time if a == "t" else 0) for a in self.axes
        )  # t picked, z (of one plane) dropped
        data = zarr.open_array(self.array, mode="r")[index]
        kept = [a for a in self.axes if a in "cyx"]
        data = data[None] if "c" not in kept else np.moveaxis(data, kept.index("c"), 0)
        return np.ascontiguousarray(data)


@dataclass
class Plane:
    """A lazy (H, W) view of one channel of a field at one time point: ``plane[y0:y1, x0:x1]`` reads
    that region alone, ``np.asarray(plane)`` the whole plane (what a band-by-band predictor slices)."""

    source: Field
    time: int
    channel: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.source.yx

    @property
    def dtype(self) -> np.dtype:
        return self.source.dtype

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        ys, xs = key
        pick = {"t": self.time, "c": self.channel, "z": 0, "y": ys, "x": xs}
        return np.asarray(zarr.open_array(self.source.array, mode="r")[tuple(pick[a] for a in self.source.axes)])

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        data = self[slice(None), slice(None)]
        return data if dtype is None else data.astype(dtype)


@dataclass
class ZarrPlate:
    """What an OME-Zarr HCS plate says about itself, read before any pixel."""

    path: Path
    version: str
    wells: list[str]
    """Well names, ``A1``, in the plate's order."""
    well_paths: list[str]
    """The wells' groups, ``A/1``."""
    fields: list[list[Field]]
    """Each well's fields, in its ``images`` order."""
    time_interval_h: float | None = None

    def image_path(self, well: int, index: int = 0) -> str:
        """The group of a well's ``index``-th field, ``A/1/0``."""
        return f"{self.well_paths[well]}/{self.fields[well][index].array.parent.name}"


def open_zarr_plate(path: str | Path) -> ZarrPlate:
    """Describe an OME-Zarr HCS plate: each bad input (not an HCS plate, a well or field listed but
    absent, axes that do not map onto time, channel, y and x) is one :class:`LivedeadError`."""
    import ome_zarr_models
    from pydantic import ValidationError

    path = Path(path)
    try:
        root = zarr.open_group(path, mode="r")
        plate = ome_zarr_models.open_ome_zarr(root)
    except (ValidationError, ValueError, RuntimeError, FileNotFoundError) as err:
        found = " ".join(str(err).split())[:200]
        raise LivedeadError(f"{path}: expected an OME-Zarr HCS plate (NGFF 0.4 or 0.5), found {found}") from None
    meta = getattr(plate.ome_attributes, "plate", None)
    if meta is None:
        raise LivedeadError(
            f"{path}: expected an OME-Zarr HCS plate (NGFF 0.4 or 0.5), found a {type(plate).__name__} group "
            "without 'plate' metadata"
        )
    version = str(plate.ome_zarr_version)
    if version not in NGFF_VERSIONS:
        raise LivedeadError(f"{path}: expected OME-Zarr version {' or '.join(NGFF_VERSIONS)}, found {version}")
    wells, paths, fields = [], [], []
    interval = None
    for well in meta.wells:
        fields_ = _well_fields(path, well.path)
        wells.append(well.path.replace("/", ""))
        paths.append(well.path)
        fields.append([f for f, _ in fields_])
        interval = interval if interval is not None else fields_[0][1]
    if not wells:
        raise LivedeadError(f"{path}: expected an HCS plate with wells, found none in its 'plate' metadata")
    return ZarrPlate(path, version, wells, paths, fields, interval)


def _well_fields(plate: Path, well_path: str) -> list[tuple[Field, float | None]]:
    import ome_zarr_models
    from pydantic import ValidationError

    where = plate / well_path
    if not is_zarr(where):
        raise LivedeadError(f"{plate}: the plate lists the well '{well_path}', but {where} is no zarr group")
    try:
        well = ome_zarr_models.open_ome_zarr(zarr.open_group(where, mode="r"))
        images = well.ome_attributes.well.images
    except (ValidationError, ValueError, AttributeError) as err:
        found = " ".join(str(err).split())[:200]
        raise LivedeadError(f"{where}: expected OME-Zarr 'well' metadata, found {found}") from None
    if not images:
        raise LivedeadError(f"{where}: expected a well with images (fields), found none")
    out = []
    for image in images:
        group = where / image.path
        if not is_zarr(group):
            raise LivedeadError(f"{where}: the well lists the field '{image.path}', but {group} is no zarr group")
        out.append(_field(group))
    return out


def _field(group: Path) -> tuple[Field, float | None]:
    import ome_zarr_models
    from pydantic import ValidationError

    try:
        image = ome_zarr_models.open_ome_zarr(zarr.open_group(group, mode="r"))
        attrs = image.ome_attributes
        multiscale = attrs.multiscales[0]
    except (ValidationError, ValueError, AttributeError, IndexError) as err:
        raise LivedeadError(f"{group}: expected an OME-Zarr image, found {' '.join(str(err).split())[:200]}") from None
    names = [a.name for a in multiscale.axes]
    axes = "".join(names)
    if sorted(set(names) - {"t", "c", "z"}) != ["x", "y"] or len(set(names)) != len(names):
        raise LivedeadError(
            f"{group}: expected axes of t, c, z, y, x (y and x required), found {names}: livedead maps only those"
        )
    dataset = multiscale.datasets[0]
    array = group / dataset.path
    meta = zarr.open_array(array, mode="r")
    shape = tuple(int(s) for s in meta.shape)
    if "z" in axes and shape[axes.index("z")] != 1:
        raise LivedeadError(f"{group}: expected one z plane (axes {names}), found {shape[axes.index('z')]}")
    scale, translation = [1.0] * len(names), [0.0] * len(names)
    for transform in dataset.coordinateTransformations:
        if transform.type == "scale":
            scale = [float(s) for s in transform.scale]
        elif transform.type == "translation":
            translation = [float(s) for s in transform.translation]
    units = {a.name: a.unit for a in multiscale.axes}
    length = _LENGTH_UM.get(str(units["x"])) if units["x"] else None
    size = scale[names.index("x")] * length if length else None
    position = None
    if length:
        position = (translation[names.index("y")] * length, translation[names.index("x")] * length)
    per_hour = _TIME_H.get(str(units.get("t"))) if "t" in names else None
    interval = scale[names.index("t")] * per_hour if per_hour else None
    omero = getattr(attrs, "omero", None) or (attrs.model_extra or {}).get("omero")
    if omero is not None and not isinstance(omero, dict):
        omero = omero.model_dump()
    channels = (omero or {}).get("channels") or []
    labels = [str(c.get("label", f"C{i}")) for i, c in enumerate(channels)] or None
    found = shape[names.index("c")] if "c" in names else 1
    if labels is not None and len(labels) != found:
        labels = None  # omero metadata of another image: the channels go by position
    levels = []
    for level in multiscale.datasets:
        dims = zarr.open_array(group / level.path, mode="r").shape
        levels.append((int(dims[names.index("y")]), int(dims[names.index("x")])))
    return Field(array, axes, shape, np.dtype(meta.dtype), labels, size, position, levels), interval


def well_row_col(name: str) -> tuple[str, str]:
    """A well name's plate row and column, as an HCS plate names its groups.

    >>> well_row_col("B03"), well_row_col("W12")
    (('B', '03'), ('W', '12'))
    """
    m = _WELL.match(name)
    if m is None:
        raise LivedeadError(f"well '{name}': expected a row letter and a column number (A1, B03), found neither")
    return m.group("row"), m.group("col")


# -- writing ------------------------------------------------------------------------------------
def _format(version: str) -> Any:
    from ome_zarr.format import FormatV04, FormatV05

    if version not in NGFF_VERSIONS:
        raise LivedeadError(f"config key 'zarr_version': expected one of {NGFF_VERSIONS}, found {version!r}")
    return FormatV04() if version == "0.4" else FormatV05()


def pyramid_levels(shape: tuple[int, int], smallest: int = 64, most: int = 4) -> int:
    """How many levels below full resolution a multiscale image gets: halving while the smaller side
    stays at least ``smallest`` px (napari and viewers then open a well at any zoom quickly).

    >>> pyramid_levels((2700, 3600)), pyramid_levels((100, 100))
    (4, 0)
    """
    n = 0
    while n < most and min(shape) // 2 ** (n + 1) >= smallest:
        n += 1
    return n


@dataclass
class _Multiscale:
    """One multiscale image being written: its group and its arrays, full resolution first."""

    group: Any
    arrays: list[Any]
    axes: str
    labels: bool


@dataclass
class WellWriter:
    """Writes one well of a :class:`PlateWriter`'s plate, region by region."""

    plate: PlateWriter
    name: str
    group_path: Path
    """The image group: ``<plate>/A/1/0`` for a new plate, the input's field for labels written into it."""
    axes: str
    images: dict[str, _Multiscale] = field(default_factory=dict)
    colours: dict[int, tuple[int, ...]] = field(default_factory=dict)

    def write(
        self,
        time: int,
        probs: np.ndarray | None,
        classes: np.ndarray,
        instances: np.ndarray,
        dead: np.ndarray,
        y0: int = 0,
        x0: int = 0,
    ) -> None:
        """Write one time point's region at (``y0``, ``x0``): ``probs`` (C, h, w) (a new plate's image;
        None: none), the class map and the instances (h, w), numbered from 1 in this region, with ``dead``
        saying which are dead. Instances are renumbered through the well's time points, so that every
        nucleus has one ``image-label`` colour. A region's corner must be on the coarsest level's grid."""
        step = 2 ** (len(next(iter(self.images.values())).arrays) - 1)
        if y0 % step or x0 % step:
            raise ValueError(f"a region's corner must be a multiple of {step} px, found ({y0}, {x0})")
        offset = max(self.colours, default=0)
        numbered = np.where(instances > 0, instances.astype(np.uint32) + offset, 0).astype(np.uint32)
        for i, is_dead in enumerate(np.asarray(dead, bool), start=1):
            self.colours[offset + i] = LABEL_COLOURS[2 if is_dead else 1]
        if probs is not None and "image" in self.images:  # labels into an input: its image stays as it is
            self._region(self.images["image"], time, probs.astype(np.float32), y0, x0)
        self._region(self.images["classes"], time, classes[None].astype(np.uint8), y0, x0)
        self._region(self.images["nuclei"], time, numbered[None], y0, x0)

    def _region(self, image: _Multiscale, time: int, data: np.ndarray, y0: int, x0: int) -> None:
        """(C, h, w) into every level, averaged (probabilities) or subsampled (labels) for the coarser."""
        for level, array in enumerate(image.arrays):
            f = 2**level
            if level and image.labels:
                part = data[:, ::f, ::f]
            elif level:  # the mean of each f x f block, the image's edge repeated into a partial block
                h, w = math.ceil(data.shape[1] / f), math.ceil(data.shape[2] / f)
                padded = np.pad(data, ((0, 0), (0, h * f - data.shape[1]), (0, w * f - data.shape[2])), mode="edge")
                part = padded.reshape(data.shape[0], h, f, w, f).mean(axis=(2, 4))
            else:
                part = data
            pick = {"t": time, "c": slice(None), "z": 0}
            pick |= {"y": slice(y0 // f, y0 // f + part.shape[1]), "x": slice(x0 // f, x0 // f + part.shape[2])}
            array[tuple(pick[a] for a in image.axes)] = part if "c" in image.axes else part[0]  # NGFF: c before y, x

    def close(self) -> None:
        """The labels' colours, and for a new plate the well's metadata: from now on the well is whole."""
        from ome_zarr.writer import write_label_metadata, write_well_metadata

        fmt = self.plate.fmt
        labels = zarr.open_group(self.group_path / "labels", mode="a")
        colours = {"classes": LABEL_COLOURS, "nuclei": self.colours}
        for name in ("classes", "nuclei"):
            entries = [{"label-value": int(v), "rgba": list(c)} for v, c in sorted(colours[name].items())]
            write_label_metadata(labels, self.plate.label_name(name), colors=entries, fmt=fmt)
        if not self.plate.into_input:
            well = zarr.open_group(self.group_path.parent, mode="a")
            write_well_metadata(well, [{"path": self.group_path.name}], fmt=fmt)


@dataclass
class PlateWriter:
    """Writes the predictions of a plate as an OME-Zarr plate, one well at a time.

    A new plate (``path``) mirrors the input's wells (``A1``: ``A/1/0``) or, with ``into_input``, the
    class map and instances are added as ``labels/livedead-classes`` and ``labels/livedead-nuclei`` of
    the input plate's first field of each well; its images are never touched, and labels of those
    names already there are refused, not replaced.
    """

    path: Path
    version: str = "0.5"
    into_input: ZarrPlate | None = None
    classes: Sequence[str] = tuple(CLASS_NAMES)
    fmt: Any = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.fmt = _format(self.version)

    def label_name(self, name: str) -> str:
        return f"livedead-{name}" if self.into_input else name

    def check_free(self, wells: Sequence[str]) -> None:
        """Refuse, before any work, labels of the input that writing ``wells`` would replace."""
        if self.into_input is None:
            return
        for name in wells:
            group = self.into_input.path / self.into_input.image_path(self.into_input.wells.index(name))
            for label in ("classes", "nuclei"):
                if (group / "labels" / self.label_name(label)).exists():
                    raise LivedeadError(
                        f"{group}: already holds the labels '{self.label_name(label)}'; livedead does not replace "
                        "an input's data: remove them, or write a new plate (zarr_into_input=false)"
                    )

    def well(
        self,
        name: str,
        timepoints: int,
        shape: tuple[int, int],
        pixel_size_um: float | None = None,
        time_interval_h: float | None = None,
    ) -> WellWriter:
        """Start a well: its (empty, chunked) arrays and their multiscale metadata. A new plate's well
        left by an earlier run is replaced whole; its ``well`` metadata comes with :meth:`WellWriter.close`."""
        from ome_zarr.writer import add_metadata

        if self.into_input is not None:
            plate = self.into_input
            source = plate.fields[plate.wells.index(name)][0]
            group_path = plate.path / plate.image_path(plate.wells.index(name))
            axes = source.axes
            if source.yx != shape or source.timepoints != timepoints:
                raise LivedeadError(f"{group_path}: expected an image of {shape} px, found {source.yx}")
            levels = len(source.level_shapes) - 1  # NGFF: labels have their image's levels
            halves = [(math.ceil(shape[0] / 2**k), math.ceil(shape[1] / 2**k)) for k in range(levels + 1)]
            if source.level_shapes != halves:
                raise LivedeadError(
                    f"{group_path}: expected a multiscale image halved at each level, found levels of "
                    f"{source.level_shapes}: labels written into it could not mirror them (zarr_into_input=false)"
                )
        else:
            row, col = well_row_col(name)
            group_path = self.path / row / col / "0"
            shutil.rmtree(group_path.parent, ignore_errors=True)
            zarr.open_group(group_path.parent, mode="w", zarr_format=self.fmt.zarr_format)
            axes = "tcyx"
            levels = pyramid_levels(shape)
        writer = WellWriter(self, name, group_path, axes)
        if self.into_input is None:
            writer.images["image"] = self._multiscale(
                group_path, "tcyx", timepoints, len(self.classes), shape, levels, np.float32, pixel_size_um,
                time_interval_h, False,
                {"omero": {"channels": [_channel(f"P({c})") for c in self.classes]}},
            )  # fmt: skip
        labels = zarr.open_group(group_path / "labels", mode="a", zarr_format=self.fmt.zarr_format)
        if self.fmt.version != "0.4":
            add_metadata(labels, {"version": self.fmt.version}, fmt=self.fmt)  # 0.5 labels carry their version
        for label, dtype in (("classes", np.uint8), ("nuclei", np.uint32)):
            writer.images[label] = self._multiscale(
                group_path / "labels" / self.label_name(label), axes, timepoints, 1, shape, levels, dtype,
                pixel_size_um, time_interval_h, True, {},
            )  # fmt: skip
        return writer

    def _multiscale(
        self,
        group_path: Path,
        axes: str,
        timepoints: int,
        channels: int,
        shape: tuple[int, int],
        levels: int,
        dtype: Any,
        pixel_size_um: float | None,
        time_interval_h: float | None,
        labels: bool,
        metadata: dict[str, Any],
    ) -> _Multiscale:
        from ome_zarr.writer import write_multiscales_metadata

        group = zarr.open_group(group_path, mode="w", zarr_format=self.fmt.zarr_format)
        sizes = {"t": timepoints, "c": channels, "z": 1}
        arrays, datasets = [], []
        for level in range(levels + 1):
            f = 2**level
            dims = {**sizes, "y": math.ceil(shape[0] / f), "x": math.ceil(shape[1] / f)}
            chunks = {"t": 1, "c": 1, "z": 1, "y": min(256, dims["y"]), "x": min(256, dims["x"])}
            kw: dict[str, Any] = {}
            if self.fmt.zarr_format == 2:
                kw["chunk_key_encoding"] = {"name": "v2", "separator": "/"}  # NGFF 0.4 requires '/'
            arrays.append(
                group.create_array(
                    str(level),
                    shape=tuple(dims[a] for a in axes),
                    chunks=tuple(chunks[a] for a in axes),
                    dtype=dtype,
                    fill_value=0,
                    dimension_names=list(axes) if self.fmt.zarr_format == 3 else None,
                    **kw,
                )
            )
            scale = {"t": time_interval_h or 1.0, "c": 1.0, "z": 1.0, "y": (pixel_size_um or 1.0) * f}
            scale["x"] = scale["y"]
            datasets.append({"path": str(level), "coordinateTransformations": [
                {"type": "scale", "scale": [scale[a] for a in axes]}]})  # fmt: skip
        units = {"t": "hour"} if time_interval_h else {}
        if pixel_size_um:
            units |= {"y": "micrometer", "x": "micrometer"}
        write_multiscales_metadata(
            group, datasets, fmt=self.fmt, axes=list(axes), axes_units=units or None, name=group_path.name,
            metadata=metadata,
        )  # fmt: skip
        return _Multiscale(group, arrays, axes, labels)


def write_hcs(
    path: str | Path,
    wells: dict[str, list[tuple[np.ndarray, tuple[float, float]]]],
    channel_names: Sequence[str],
    version: str = "0.5",
    pixel_size_um: float = 1.0,
    time_interval_h: float | None = None,
) -> Path:
    """Write raw images as an OME-Zarr HCS plate, as a microscope's converter does: each well's fields,
    (T, C, H, W) with the (y, x) µm of their first pixel as their translation; the channels named in
    ``omero``. The plate livedead reads (tests, benchmarks, a plate file converted for a viewer)."""
    from ome_zarr.writer import write_multiscales_metadata, write_plate_metadata, write_well_metadata

    path, fmt = Path(path), _format(version)
    root = zarr.open_group(path, mode="w", zarr_format=fmt.zarr_format)
    kw: dict[str, Any] = {"chunk_key_encoding": {"name": "v2", "separator": "/"}} if fmt.zarr_format == 2 else {}
    for name, fields_ in wells.items():
        row, col = well_row_col(name)
        well = root.require_group(row).require_group(col)
        for k, (data, (y, x)) in enumerate(fields_):
            image = well.create_group(str(k))
            chunks = (1, 1, min(256, data.shape[2]), min(256, data.shape[3]))
            names = list("tcyx") if fmt.zarr_format == 3 else None
            image.create_array("0", data=data, chunks=chunks, dimension_names=names, **kw)
            scale = [time_interval_h or 1.0, 1.0, pixel_size_um, pixel_size_um]
            transforms = [{"type": "scale", "scale": scale}, {"type": "translation", "translation": [0, 0, y, x]}]
            units = {"y": "micrometer", "x": "micrometer"} | ({"t": "hour"} if time_interval_h else {})
            omero = {"channels": [_channel(c) | {"window": _window(data[:, i])} for i, c in enumerate(channel_names)]}
            write_multiscales_metadata(
                image, [{"path": "0", "coordinateTransformations": transforms}], fmt=fmt, axes=list("tcyx"),
                axes_units=units, metadata={"omero": omero},
            )  # fmt: skip
        write_well_metadata(well, [{"path": str(k)} for k in range(len(fields_))], fmt=fmt)
    names = [well_row_col(w) for w in wells]
    rows = sorted({r for r, _ in names})
    cols = sorted({c for _, c in names}, key=lambda c: (len(c), c))
    write_plate_metadata(root, rows, cols, [f"{r}/{c}" for r, c in names], fmt=fmt, field_count=max(
        len(f) for f in wells.values()))  # fmt: skip
    return path


def _window(data: np.ndarray) -> dict[str, float]:
    lo, hi = float(data.min()), float(data.max())
    return {"min": lo, "max": hi, "start": lo, "end": hi}


def _channel(label: str) -> dict[str, Any]:
    return {"label": label, "color": "FFFFFF", "active": True, "window": {"min": 0.0, "max": 1.0, "start": 0.0,
                                                                           "end": 1.0}}  # fmt: skip


def unfinish_plate(path: Path) -> None:
    """Take the ``plate`` metadata off a plate an earlier run finished, before its wells are rewritten:
    a plate being written must not look whole."""
    for name in ("zarr.json", ".zattrs", ".zgroup"):
        (path / name).unlink(missing_ok=True)


def finish_plate(path: Path, wells: Sequence[str], version: str | None = None, counts_csv: str | None = None) -> None:
    """Write a new plate's ``plate`` metadata (rows, columns and ``wells``, each of which must have been
    written whole: its ``well`` metadata written), and ``counts.csv`` beside them. What makes a plate
    whole, written last (by ``predict``, or by ``livedead.merge`` after a multirun's jobs); wells an
    earlier run left in the folder are not listed. ``version`` None: the wells' (zarr 3: 0.5, else 0.4)."""
    from ome_zarr.writer import write_plate_metadata

    if version is None:
        version = "0.5" if any(path.glob("*/*/zarr.json")) else "0.4"
    fmt = _format(version)
    paths = ["/".join(well_row_col(w)) for w in wells]
    missing = [w for w, p in zip(wells, paths, strict=True) if not _has_well_metadata(path / p)]
    if missing or not wells:
        found = f"{missing} not" if missing else "no wells"
        raise LivedeadError(f"{path}: expected the wells {list(wells)} written whole, found {found}")
    rows = sorted({p.split("/")[0] for p in paths})
    cols = sorted({p.split("/")[1] for p in paths}, key=lambda c: (len(c), c))
    for row in rows:
        zarr.open_group(path / row, mode="a", zarr_format=fmt.zarr_format)
    if counts_csv is not None:
        (path / "counts.csv").write_text(counts_csv)
    root = zarr.open_group(path, mode="a", zarr_format=fmt.zarr_format)
    write_plate_metadata(root, rows, cols, paths, fmt=fmt, field_count=1, name=path.name)


def _has_well_metadata(group: Path) -> bool:
    try:
        attrs = zarr.open_group(group, mode="r").attrs.asdict()
    except (FileNotFoundError, ValueError):
        return False
    return "well" in attrs or "well" in attrs.get("ome", {})


@dataclass
class LabelImages:
    """What a written well holds, read back: the class map and instances (T, H, W), the probabilities
    (T, C, H, W) where written, and the instances' ``image-label`` colours."""

    classes: np.ndarray
    nuclei: np.ndarray
    probs: np.ndarray | None
    colours: dict[int, tuple[int, ...]]


def read_labels(image_group: Path, names: tuple[str, str] = ("classes", "nuclei"), probs: bool = True) -> LabelImages:
    """The full-resolution labels of an image group (``<plate>/A/1/0``) written by :class:`PlateWriter`
    (and its probabilities, for a new plate), through ome-zarr-models' validated label metadata."""
    import ome_zarr_models

    def squeeze(array: np.ndarray, axes: str) -> np.ndarray:
        index = tuple(slice(None) if a in "tyx" else 0 for a in axes)
        return array[index] if "t" in axes else array[index][None]

    out = []
    colours: dict[int, tuple[int, ...]] = {}
    for name in names:
        label = ome_zarr_models.open_ome_zarr(zarr.open_group(image_group / "labels" / name, mode="r"))
        attrs = label.ome_attributes
        axes = "".join(a.name for a in attrs.multiscales[0].axes)
        data = zarr.open_array(image_group / "labels" / name / attrs.multiscales[0].datasets[0].path, mode="r")[:]
        out.append(squeeze(data, axes))
        if name == names[1]:
            colours = {int(c.label_value): tuple(c.rgba) for c in attrs.image_label.colors or []}
    image = _field(image_group)[0] if probs else None
    return LabelImages(out[0], out[1], zarr.open_array(image.array, mode="r")[:] if image else None, colours)
