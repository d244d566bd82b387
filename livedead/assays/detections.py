"""The nuclei of a prediction folder's images, as points to track: re-derived from what ``predict`` saved.

``save=ome-tiff`` keeps the counted instances (``<well>_t<time>_nuclei.ome.tif``), read as they are;
``save=tiff`` keeps the class map of the counted nuclei (``<well>_t<time>_classes.tif``), whose
nuclei :func:`livedead.nuclei.counting.nuclei_from_class_map` finds again with the diameter the
count used. Either way ``predict`` writes nothing new for tracking.
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
        f"{folder}: expected {classes.name} or {instances.name} (predict with save=tiff or save=ome-tiff), "
        "found neither"
    )


def read_detections(
    folder: str | Path, rows: Sequence[dict[str, Any]], on_image: Callable[[], None] | None = None
) -> pd.DataFrame:
    """Every nucleus of the images of ``rows`` (``counts.csv``'s): well, time, time_h, y, x, dead."""
    folder = Path(folder)
    parts = []
    for row in rows:
        nuclei = image_nuclei(folder, str(row["well"]), int(row["time"]), row.get("diameter_px"))
        hours = row.get("time_h")
        parts.append(
            pd.DataFrame({"well": str(row["well"]), "time": int(row["time"]),
                          "time_h": float(row["time"] if hours is None else hours),
                          "y": nuclei.centroids[:, 0], "x": nuclei.centroids[:, 1], "dead": nuclei.dead})
        )  # fmt: skip
        if on_image is not None:
            on_image()
    if not parts:
        raise LivedeadError(f"{folder}/counts.csv: expected rows of images, found none")
    return pd.concat(parts, ignore_index=True)
