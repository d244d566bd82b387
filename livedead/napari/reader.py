"""napari's reader of livedead's files: tile files (tiles and their classes) and prediction folders.

A prediction folder (``livedead.predict``'s output) opens as one set of layers per well, each
stacked over the well's time points and read lazily (dask), so a plate of many wells opens at once:

* ``<well> overlay``: the overlay PNG, the input with its counted nuclei (RGB; the folder holds no raw input);
* ``<well> classes``: the class map, a labels layer (1 live green, 2 dead red);
* ``<well> nuclei``: the counted instances, a labels layer (``save=ome-tiff`` folders);
* ``<well> counted nuclei``: a points layer, one point at the centroid of each nucleus ``predict`` counted
  (``nuclei.csv``: its label, area and state as features; live green, dead red), hidden at first;
* ``<well> counts``: a points layer, one point per time point, whose features are the well's rows of
  ``counts.csv`` (live, dead, total, dead fraction...), shown as text on each time point.

Layer data tuples only: nothing here imports napari or Qt, so the reader is tested without a viewer.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
from PIL import Image

from livedead import CLASS_NAMES
from livedead.data.tilefile import view_tile_file
from livedead.errors import LivedeadError
from livedead.inference.evaluation import read_counts
from livedead.nuclei.table import read_nuclei_table
from livedead.plates.images import read_image
from livedead.viz.overlays import GREEN, RED

LayerData = tuple[Any, dict[str, Any], str]
CLASS_COLOURS = {0: (0.0,) * 4, 1: (*GREEN.tolist(), 1.0), 2: (*RED.tolist(), 1.0), None: (0.0,) * 4}
"""Labels colours of a class map: background transparent, live green, dead red (as the overlays)."""
TILE_SUFFIXES = (".h5", ".hdf5")


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """The reader of ``path`` (npe2's reader command): a prediction folder or a tile file; None for anything else."""
    if isinstance(path, list):
        return None  # one folder or file at a time: each is a plate's worth of layers
    p = Path(path)
    if p.is_dir() and (p / "counts.csv").is_file():
        return read_prediction_folder
    if p.suffix.lower() in TILE_SUFFIXES and p.is_file():
        return read_tile_file
    return None


def read_tile_file(path: str | Path) -> list[LayerData]:
    """A tile file as two layers stacked over its tiles: the raw tiles (image) and their classes (labels)."""
    view = view_tile_file(Path(path))
    name = Path(path).stem
    chunk = view.images.chunks[0] if view.images.chunks else min(len(view.images), 256)
    images = da.from_array(view.images, chunks=(chunk, 1, *view.images.shape[2:]))[:, 0]
    labels = da.from_array(view.labels, chunks=(chunk, *view.labels.shape[1:]))
    meta: dict[str, Any] = {"path": str(path)}
    if view.attrs is not None:
        meta.update(n_train=view.attrs.n_train, val_units=view.attrs.val_units, source=view.attrs.source)
    scale = (1.0, *([view.attrs.pixel_size_um] * 2 if view.attrs and view.attrs.pixel_size_um else (1.0, 1.0)))
    return [
        (images, {"name": f"{name} tiles", "scale": scale, "metadata": meta}, "image"),
        (labels, {"name": f"{name} labels", "scale": scale, "colormap": CLASS_COLOURS, "opacity": 0.6}, "labels"),
    ]


def _plane(path: Path, channel: int) -> np.ndarray:
    return read_image(path)[0][channel]


def _rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _stack(paths: list[Path], read: Callable[[Path], np.ndarray]) -> da.Array:
    """The images of ``paths`` as one lazy (T, ...) stack; the first is read to learn their shape."""
    first = read(paths[0])
    planes = [da.from_array(first)] + [
        da.from_delayed(dask.delayed(read)(p), first.shape, first.dtype) for p in paths[1:]
    ]
    return da.stack(planes)


def read_prediction_folder(path: str | Path) -> list[LayerData]:
    """A ``livedead.predict`` output folder as layers, one set per well (see the module docstring)."""
    folder = Path(path)
    rows = read_counts(folder)
    if not rows:
        raise LivedeadError(f"{folder / 'counts.csv'}: expected one row per image, found none")
    wells: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        wells.setdefault(str(row["well"]), []).append(row)
    table = read_nuclei_table(folder, rows)  # None in a folder predict wrote before it kept the table
    layers: list[LayerData] = []
    for well, wrows in wells.items():
        wrows.sort(key=lambda r: int(r["time"]))
        names = [f"{well}_t{int(r['time']):03d}" for r in wrows]
        well_layers = _well_layers(folder, well, names, wrows)
        if table is not None:
            scale = well_layers[-1][1]["scale"]
            well_layers.insert(-1, _nuclei_layer(well, wrows, table[table["well"] == well], scale))
        layers += well_layers
    return layers


def _nuclei_layer(well: str, rows: list[dict[str, Any]], nuclei: Any, scale: tuple) -> LayerData:
    """The well's counted nuclei (its rows of ``nuclei.csv``) as points at their centroids, in the layers' planes."""
    plane = {int(r["time"]): i for i, r in enumerate(rows)}
    points = np.column_stack([nuclei["time"].map(plane), nuclei["y"], nuclei["x"]]).astype(np.float64)
    dead = (nuclei["state"] == "dead").to_numpy()
    colours = np.where(dead[:, None], [*RED.tolist(), 1.0], [*GREEN.tolist(), 1.0])
    features = {k: nuclei[k].tolist() for k in ("label", "area_px", "state")}
    kw = {"name": f"{well} counted nuclei", "scale": scale, "features": features, "face_color": colours,
          "border_width": 0, "size": 4, "visible": False}  # fmt: skip
    return points, kw, "points"


def _well_layers(folder: Path, well: str, names: list[str], rows: list[dict[str, Any]]) -> list[LayerData]:
    nuclei = [folder / f"{n}_nuclei.ome.tif" for n in names]
    classes = [folder / f"{n}_classes.tif" for n in names]
    overlays = [folder / f"{n}_overlay.png" for n in names]
    layers: list[LayerData] = []
    scale = (1.0, 1.0, 1.0)
    shape: tuple[int, ...] | None = None
    if all(p.is_file() for p in nuclei):
        pixel = read_image(nuclei[0])[1].pixel_size_um
        scale = (1.0, pixel or 1.0, pixel or 1.0)
        class_map = _stack(nuclei, lambda p: _plane(p, 0).astype(np.uint8))
        instances = _stack(nuclei, lambda p: _plane(p, 1))
        shape = class_map.shape[1:]
    elif all(p.is_file() for p in classes):
        class_map, instances = _stack(classes, lambda p: _plane(p, 0)), None
        shape = class_map.shape[1:]
    else:
        class_map = instances = None
    if all(p.is_file() for p in overlays):
        rgb = _stack(overlays, _rgb)
        shape = shape or rgb.shape[1:3]
        layers.append((rgb, {"name": f"{well} overlay", "rgb": True, "scale": scale}, "image"))
    if shape is None:
        raise LivedeadError(
            f"{folder}: expected the class maps (save=tiff or ome-tiff) or overlays of {names[0]}, found neither"
        )
    if class_map is not None:
        kw = {"name": f"{well} classes", "scale": scale, "colormap": CLASS_COLOURS, "opacity": 0.6}
        layers.append((class_map, {**kw, "features": {"class": list(CLASS_NAMES)}}, "labels"))
    if instances is not None:
        layers.append((instances, {"name": f"{well} nuclei", "scale": scale, "visible": False}, "labels"))
    layers.append(_counts_layer(well, rows, shape, scale))
    return layers


def _counts_layer(well: str, rows: list[dict[str, Any]], shape: tuple[int, ...], scale: tuple) -> LayerData:
    """The well's rows of ``counts.csv`` as the features of one point per time point, near its top-left corner."""
    points = np.array([[t, 0.05 * shape[0], 0.05 * shape[1]] for t in range(len(rows))], np.float64)
    features = {k: [r.get(k) for r in rows] for k in dict.fromkeys(k for r in rows for k in r)}
    text = {"string": "live {live}  dead {dead}", "color": "white", "size": 12, "anchor": "upper_left"}
    kw = {
        "name": f"{well} counts",
        "scale": scale,
        "features": features,
        "text": text,
        "size": 1,
        "face_color": "transparent",
        "border_width": 0,
    }
    return points, kw, "points"
