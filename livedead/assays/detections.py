"""The nuclei of a prediction folder's images, as points to track: the very nuclei ``predict`` counted.

``predict`` keeps them in ``nuclei.csv`` (:mod:`livedead.nuclei.table`), checked against
``counts.csv`` and read as they are. A folder predicted before it kept that table still works: its
nuclei are found again in what it saved (:func:`derive_detections`), which at 2700x3600 px took
half the assay step's time. ``save=ome-tiff`` kept the counted instances
(``<well>_t<time>_nuclei.ome.tif``), read as they are; ``save=tiff`` the class map of the counted
nuclei (``<well>_t<time>_classes.tif``), whose nuclei
:func:`livedead.nuclei.counting.nuclei_from_class_map` splits again with the diameter the count used.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tifffile

from livedead.errors import LivedeadError
from livedead.nuclei.counting import Nuclei, nuclei_from_class_map, nuclei_from_instances
from livedead.nuclei.table import NUCLEI_CSV, read_nuclei_table


def read_detections(
    folder: str | Path,
    rows: Sequence[dict[str, Any]],
    on_image: Callable[[], None] | None = None,
    say: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Every nucleus of the images of ``rows`` (``counts.csv``'s): well, time, time_h, y, x, dead.

    From the folder's ``nuclei.csv``; without one, found again in its saved maps (``say`` is told so,
    ``on_image`` called after each image)."""
    folder = Path(folder)
    if not rows:
        raise LivedeadError(f"{folder}/counts.csv: expected rows of images, found none")
    table = read_nuclei_table(folder, rows)
    if table is not None:
        hours = {(str(r["well"]), int(r["time"])): _hours(r) for r in rows}
        time_h = [hours[k] for k in zip(table["well"], table["time"].tolist(), strict=True)]
        dead = (table["state"] == "dead").to_numpy()
        return pd.DataFrame({"well": table["well"], "time": table["time"], "time_h": np.asarray(time_h, float),
                             "y": table["y"], "x": table["x"], "dead": dead})  # fmt: skip
    if say is not None:
        say(f"{folder}: no {NUCLEI_CSV} (predicted by an older livedead): finding its nuclei again in its saved maps")
    return derive_detections(folder, rows, on_image)


def _hours(row: dict[str, Any]) -> float:
    return float(row["time"] if row.get("time_h") is None else row["time_h"])


def image_nuclei(folder: Path, well: str, time: int, diameter: float | None) -> Nuclei:
    """One image's counted nuclei, from its saved instances or class map (one line if neither was saved)."""
    name = f"{well}_t{time:03d}"
    instances, classes = folder / f"{name}_nuclei.ome.tif", folder / f"{name}_classes.tif"
    if instances.exists():
        maps = tifffile.imread(instances)
        return nuclei_from_instances(maps[1].astype(np.int64), maps[0] == 2)
    if classes.exists():
        return nuclei_from_class_map(tifffile.imread(classes), diameter=diameter)
    raise LivedeadError(
        f"{folder}: expected {NUCLEI_CSV}, or {classes.name} or {instances.name} of a folder predicted before "
        f"{NUCLEI_CSV} (save=tiff or save=ome-tiff), found none of them"
    )


def derive_detections(
    folder: Path, rows: Sequence[dict[str, Any]], on_image: Callable[[], None] | None = None
) -> pd.DataFrame:
    """The nuclei of a folder without ``nuclei.csv``, found again in each image's saved maps."""
    parts = []
    for row in rows:
        nuclei = image_nuclei(folder, str(row["well"]), int(row["time"]), row.get("diameter_px"))
        parts.append(
            pd.DataFrame({"well": str(row["well"]), "time": int(row["time"]), "time_h": _hours(row),
                          "y": nuclei.centroids[:, 0], "x": nuclei.centroids[:, 1], "dead": nuclei.dead})
        )  # fmt: skip
        if on_image is not None:
            on_image()
    return pd.concat(parts, ignore_index=True)
