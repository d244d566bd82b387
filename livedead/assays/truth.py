"""The assay scored against a synthetic plate's truth: the true nuclei as detections, and how well tracks,
times of death and the EC50 were recovered (``benchmarks/assay.py``, ``tests/assays``).

A found link between consecutive time points is right when both ends lie in the same true cell's
nucleus (the truth's instance at each of the track's positions); recall is over the true links
(every cell is seen at every time point of the synthetic plate). An end may be a position gap
closing filled in (``observed`` False in ``tracks.csv``): the track says the cell was there, and
it is scored as any other position, inside the true nucleus or not. ``observed_link_recall``
counts only links whose two ends were detected.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from livedead.errors import LivedeadError
from livedead.plates.platefile import PlateTruth, describe_plate, read_plate_image, read_truth


def _instance_table(instances: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
    ids = instances.ravel()
    ys, xs = np.indices(instances.shape)
    n = int(ids.max()) + 1
    size = np.bincount(ids, minlength=n)
    present = np.flatnonzero(size[1:] > 0) + 1
    cy = np.bincount(ids, ys.ravel(), n)[present] / size[present]
    cx = np.bincount(ids, xs.ravel(), n)[present] / size[present]
    dead = np.bincount(ids, (labels.ravel() == 2).astype(float), n)[present] > size[present] / 2
    return pd.DataFrame({"cell": present - 1, "y": cy, "x": cx, "dead": dead})


def true_plate(path: str | Path) -> tuple[list[dict[str, Any]], pd.DataFrame, PlateTruth]:
    """A synthetic plate's true counts (rows as ``counts.csv``'s) and true nuclei (detections with their ``cell``)."""
    path = Path(path)
    info = describe_plate(path, None)
    truth = read_truth(path)
    if not truth.has_instances or truth.counts is None:
        raise LivedeadError(f"{path}: expected a synthetic plate with its truth, found none")
    step = info.attrs.time_interval_h or 1.0
    rows, parts = [], []
    for w, well in enumerate(info.attrs.wells):
        for t in range(info.shape[1]):
            _, labels = read_plate_image(path, (w, t), with_truth=True)
            table = _instance_table(truth.instances(w, t), labels)
            live, dead = int((~table["dead"]).sum()), int(table["dead"].sum())
            rows.append({"well": well, "time": t, "live": live, "dead": dead, "total": live + dead, "time_h": t * step})
            parts.append(table.assign(well=well, time=t, time_h=t * step))
    return rows, pd.concat(parts, ignore_index=True), truth


@dataclass
class TrackingScore:
    link_recall: float
    observed_link_recall: float
    """The links whose two ends are detections (not filled in by gap closing)."""
    death_time_mae: float
    """Median absolute error (time points) of the time of death, over true deaths after the first time point
    whose cell's track shows a death."""
    deaths_found: float
    """The fraction of those true deaths whose track shows a death at all."""


def score_tracks(tracks: pd.DataFrame, fates: pd.DataFrame, path: str | Path, wells: list[str]) -> TrackingScore:
    """Link recall and time-of-death error of ``tracks`` (``tracks.csv``'s) against the plate's true cells."""
    truth = read_truth(Path(path))
    if truth.death_time is None:
        raise LivedeadError(f"{path}: expected a plate made from a plate map (with '/truth/death_time'), found none")
    found_links = found_observed = true_links = 0
    errors, seen = [], 0
    death_of = {(r.well, r.track): r.death for r in fates.itertuples()}
    for w, well in enumerate(wells):
        t_w = tracks[tracks["well"] == well].copy()
        times = sorted(t_w["time"].unique())
        cells = np.zeros(len(t_w), np.int64)
        for t in times:
            inst = truth.instances(w, int(t))
            sel = (t_w["time"] == t).to_numpy()
            ys = np.clip(np.round(t_w["y"].to_numpy()[sel]).astype(int), 0, inst.shape[0] - 1)
            xs = np.clip(np.round(t_w["x"].to_numpy()[sel]).astype(int), 0, inst.shape[1] - 1)
            cells[sel] = inst[ys, xs] - 1  # -1: no true nucleus there
        t_w["cell"] = cells
        t_w = t_w.sort_values(["track", "time"])
        same_track = t_w["track"].to_numpy()[1:] == t_w["track"].to_numpy()[:-1]
        consecutive = np.diff(t_w["time"].to_numpy()) == 1
        c = t_w["cell"].to_numpy()
        right = same_track & consecutive & (c[1:] == c[:-1]) & (c[1:] >= 0)
        observed = t_w["observed"].to_numpy(bool) if "observed" in t_w else np.ones(len(t_w), bool)
        start_time = t_w["time"].to_numpy()[:-1]
        pairs = {(int(t), int(k)) for t, k in zip(start_time[right], c[:-1][right], strict=True)}
        both = right & observed[1:] & observed[:-1]
        found_links += len(pairs)
        found_observed += len({(int(t), int(k)) for t, k in zip(start_time[both], c[:-1][both], strict=True)})
        deaths = truth.death_time[w]
        n_cells = int((deaths > -2).sum())
        true_links += n_cells * (len(times) - 1)
        owner = t_w[t_w["cell"] >= 0].groupby("cell")["track"].agg(lambda s: s.value_counts().index[0])
        for cell in np.flatnonzero(deaths >= 1):
            if cell not in owner.index:
                continue
            seen += 1
            found = death_of.get((well, owner[cell]))
            if found is not None and np.isfinite(found):
                errors.append(abs(float(found) - float(deaths[cell])))
    return TrackingScore(
        found_links / max(true_links, 1),
        found_observed / max(true_links, 1),
        float(np.median(errors)) if errors else float("nan"),
        len(errors) / max(seen, 1),
    )
