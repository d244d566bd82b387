"""The nuclei table of a prediction folder, ``nuclei.csv``: every nucleus ``predict`` counted (the format's one owner).

One row per nucleus: ``well``, ``time`` (the time point's index), ``label`` (its number in its image,
1..n, as in the instance labels ``save=ome-tiff`` and ``save=ome-zarr`` keep), ``y``, ``x`` (its
centroid, px, written as computed and read back exactly), ``area_px`` and ``state`` (``live`` or
``dead``). ``predict`` writes it, whatever ``save`` is, beside ``counts.csv`` and just before it, so
that the assay step reads the very nuclei that were counted instead of finding them again in the
saved maps (at 2700x3600 px that took half its time). An image counted in bands is counted by
centroid ownership, each nucleus by one band, so it is in the table once, as in the image counted
whole. The table must agree with ``counts.csv``: :func:`read_nuclei_table` refuses, in one line, one
whose live and dead nuclei of an image are not that image's counts (a table of another run, say).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from livedead.errors import LivedeadError
from livedead.files import atomic_path
from livedead.nuclei.counting import Nuclei

if TYPE_CHECKING:
    import pandas as pd

NUCLEI_CSV = "nuclei.csv"
COLUMNS = ["well", "time", "label", "y", "x", "area_px", "state"]
STATES = ("live", "dead")


class NucleiTable:
    """The counted nuclei of a run's images, kept image by image (as arrays) until :meth:`write` writes them whole.

    >>> table = NucleiTable()
    >>> table.add("A1", 0, Nuclei(None, np.array([[10.0, 20.25]]), np.array([True]), areas=np.array([80])))
    >>> len(table)
    1
    """

    def __init__(self) -> None:
        self.images: list[tuple[str, int, np.ndarray, np.ndarray, np.ndarray]] = []

    def __len__(self) -> int:
        return sum(len(dead) for _, _, _, dead, _ in self.images)

    def add(self, well: str, time: int, nuclei: Nuclei) -> None:
        """One image's nuclei, labelled 1..n in their order (the order their instance labels number them)."""
        if nuclei.areas is None:
            raise ValueError("nuclei without their areas: count them with livedead.nuclei.counting")
        centroids = np.asarray(nuclei.centroids, np.float64)
        self.images.append((well, int(time), centroids, nuclei.dead.astype(bool), nuclei.areas))

    def write(self, out: Path) -> Path:
        """``<out>/nuclei.csv``, written under a temporary name and renamed into place when whole."""
        path = Path(out) / NUCLEI_CSV
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(COLUMNS)
            for well, time, centroids, dead, areas in self.images:
                n = len(dead)
                writer.writerows(
                    zip([well] * n, [time] * n, range(1, n + 1), centroids[:, 0].tolist(), centroids[:, 1].tolist(),
                        areas.tolist(), np.where(dead, "dead", "live").tolist(), strict=True)
                )  # fmt: skip
        return path


def join_tables(parts: Sequence[Path], out: Path) -> Path | None:
    """The parts' tables (a sharded prediction's, in part order) as ``<out>/nuclei.csv``; None, and any
    table of an earlier merge removed, where a part has none (a part of an older livedead)."""
    path = Path(out) / NUCLEI_CSV
    tables = [Path(p) / NUCLEI_CSV for p in parts]
    if not all(t.exists() for t in tables):
        path.unlink(missing_ok=True)
        return None
    header = ",".join(COLUMNS) + "\n"
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        f.write(header)
        for table in tables:
            with open(table, newline="") as part:
                first = part.readline()
                if first.replace("\r\n", "\n") != header:
                    raise LivedeadError(f"{table}: expected the columns {','.join(COLUMNS)}, found {first.strip()!r}")
                for line in part:
                    f.write(line)
    return path


def read_nuclei_table(folder: str | Path, rows: Sequence[dict[str, Any]]) -> pd.DataFrame | None:
    """The nuclei of a prediction folder's table, checked against ``rows`` (its ``counts.csv``): None where
    the folder has no table (one ``predict`` wrote before it kept one); one line where it is damaged or
    disagrees with the counts."""
    import pandas as pd

    path = Path(folder) / NUCLEI_CSV
    if not path.exists():
        return None
    dtypes = {"well": str, "time": np.int64, "label": np.int64, "y": np.float64, "x": np.float64,
              "area_px": np.int64, "state": str}  # fmt: skip
    try:
        header = list(pd.read_csv(path, nrows=0).columns)
        if header != COLUMNS:
            raise LivedeadError(f"{path}: expected the columns {','.join(COLUMNS)}, found {','.join(header)}")
        table = pd.read_csv(path, dtype=dtypes, keep_default_na=False, float_precision="round_trip")  # type: ignore[arg-type]
    except (ValueError, pd.errors.ParserError) as err:
        raise LivedeadError(f"{path}: expected a table of nuclei, found what does not parse ({err})") from None
    bad = ~table["state"].isin(STATES)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        found = table["state"][row]
        raise LivedeadError(f"{path}: row {row + 2}: column 'state': expected live or dead, found {found!r}")
    check_against_counts(table, rows, path)
    return table


def check_against_counts(table: pd.DataFrame, rows: Sequence[dict[str, Any]], path: Path) -> None:
    """One line unless each image's live and dead nuclei in ``table`` are its counts in ``rows``."""
    import pandas as pd

    dead = (table["state"] == "dead").to_numpy()
    per = pd.DataFrame({"well": table["well"], "time": table["time"], "live": ~dead, "dead": dead})
    sums = per.groupby(["well", "time"], sort=False)[["live", "dead"]].sum()
    found = {(str(w), int(t)): (int(live), int(d))
             for (w, t), live, d in zip(sums.index, sums["live"], sums["dead"], strict=True)}  # fmt: skip
    counted = {(str(r["well"]), int(r["time"])): (int(r["live"]), int(r["dead"])) for r in rows}
    extra = sorted(found.keys() - counted.keys())
    if extra:
        (well, time), *_ = extra
        raise LivedeadError(f"{path}: well {well}, time {time}: expected an image of counts.csv, found none")
    for (well, time), (live, dead_n) in counted.items():
        got = found.get((well, time), (0, 0))
        if got != (live, dead_n):
            raise LivedeadError(
                f"{path}: well {well}, time {time}: expected counts.csv's {live} live and {dead_n} dead nuclei, "
                f"found {got[0]} and {got[1]} (a table of another run?): predict again"
            )
