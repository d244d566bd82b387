"""The assay step of a prediction folder: tracks, times of death, survival per well and per condition,
and dose-response, written as tables, figures and one HTML page (the command is ``livedead.assay``).

Outputs (each written atomically): ``tracks.csv`` (well, track, time, time_h, y, x, state),
``cells.csv`` (each track's fate: death time or censoring), ``survival.csv`` (Kaplan-Meier of each
well and condition, with the 95% band), ``conditions.csv`` (per condition: wells, cells, deaths,
median survival and its interval, log-rank p against the control), ``dead_fraction.csv`` (mean and
SD over replicate wells), ``dose_response.csv``, and ``wells.png``, ``conditions.png``,
``dose_response.png``, ``assay.html``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import Progress

from livedead.assays.detections import read_detections
from livedead.assays.doseresponse import ROW_COLUMNS, DoseResponse, fit_4pl
from livedead.assays.figures import conditions_figure, dose_response_figure, survival_figure, write_html
from livedead.assays.platemap import PlateMap, read_plate_map
from livedead.assays.survival import Survival, dead_fraction_table, kaplan_meier, logrank_vs_control
from livedead.assays.tracking import TRACK_COLUMNS, TRACKERS, cell_fates, track_plate
from livedead.errors import LivedeadError
from livedead.files import atomic_path

console = Console(stderr=True)


@dataclass
class AssayConfig:
    """The settings of ``livedead.assay`` (``conf/assay.yaml``)."""

    predictions: str = "???"
    """A ``livedead.predict`` output folder: its ``counts.csv`` and ``nuclei.csv`` (any ``save``; one predicted
    before it kept ``nuclei.csv``: with ``save=tiff`` or ``save=ome-tiff``, whose maps give the nuclei again)."""
    output: str = "???"
    plate_map: str | None = None
    """CSV: well, condition, compound, concentration, unit, replicate (:mod:`livedead.assays.platemap`);
    None: each well is its own condition."""
    control: str | None = None
    """The control condition; None: the plate map's one condition of concentration 0."""
    at_h: float | None = None
    """The time (h) of the dose-response (the nearest time point imaged); None: the last time point."""
    tracker: str = "laptrack"
    max_distance: float = 8.0
    """The farthest a nucleus moves between linked time points (px)."""
    gap_frames: int = 2
    """How many time points in a row a nucleus may be missed and still be linked (gap closing)."""
    progress: bool = True

    def validate(self) -> None:
        if self.tracker not in TRACKERS:
            raise LivedeadError(f"config key 'tracker': expected one of {TRACKERS}, found {self.tracker!r}")
        if not self.max_distance > 0:
            raise LivedeadError(f"config key 'max_distance': expected > 0 px, found {self.max_distance}")
        if self.gap_frames < 0:
            raise LivedeadError(f"config key 'gap_frames': expected >= 0, found {self.gap_frames}")


@dataclass
class AssayResult:
    """What the analysis found, for a caller that goes on from it (the benchmark, the notebook)."""

    tracks: pd.DataFrame
    fates: pd.DataFrame
    conditions: pd.DataFrame
    dose_response: list[DoseResponse]
    tracking_s: float
    out: Path


def well_groups(plate_map: PlateMap | None, wells: Sequence[str]) -> dict[str, list[str]]:
    """Conditions and their wells; unmapped wells are a group of their own, ``unmapped``, shown as such."""
    if plate_map is None:
        return {w: [w] for w in wells}
    groups = {k: [w for w in v if w in wells] for k, v in plate_map.conditions().items()}
    groups = {k: v for k, v in groups.items() if v}
    if plate_map.unmapped:
        groups["unmapped"] = list(plate_map.unmapped)
    return groups


def dose_points(counts: pd.DataFrame, plate_map: PlateMap, at_h: float) -> pd.DataFrame:
    """Each mapped well's dead fraction at the time point nearest ``at_h``, with its dose series
    (``compound``: the compound, split by the plate map's grouping keys)."""
    times = np.sort(counts["time_h"].unique())
    nearest = times[np.argmin(np.abs(times - at_h))]
    at = counts[counts["time_h"] == nearest]
    rows = []
    for _, r in at.iterrows():
        e = plate_map.entries.get(r["well"])
        if e is not None and r["total"] > 0:
            rows.append({"well": e.well, "compound": plate_map.series_of(e.well), "concentration": e.concentration,
                         "unit": e.unit,
                         "replicate": e.replicate, "dead_fraction": r["dead"] / r["total"]})  # fmt: skip
    return pd.DataFrame(rows, columns=["well", "compound", "concentration", "unit", "replicate", "dead_fraction"])


def fit_compounds(points: pd.DataFrame) -> list[DoseResponse]:
    """A 4PL per dose series with any concentration above 0 (the vehicle alone is no dose series)."""
    fits = []
    for compound, p in points.groupby("compound", sort=False):
        if (p["concentration"] > 0).any():
            fits.append(fit_4pl(str(compound), p["concentration"], p["dead_fraction"]))
    return fits


def _median_text(s: Survival) -> tuple[str, str, str]:
    def h(v: float) -> str:
        return "not reached" if not np.isfinite(v) else f"{v:.4g}"

    return h(s.median_h), h(s.median_lower_h), h(s.median_upper_h)


def _p_text(name: str, controls: dict[str, str], pvalues: dict[str, float]) -> str:
    if controls.get(name) == name:
        return "control"
    return f"{pvalues[name]:.3g}" if name in pvalues else ""


def survival_rows(curves: Sequence[Survival], level: str) -> list[dict[str, Any]]:
    return [{"level": level, "group": s.label, "time_h": t, "survival": v, "lower": lo, "upper": up}
            for s in curves for t, v, lo, up in zip(s.time_h, s.survival, s.lower, s.upper, strict=True)]  # fmt: skip


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def run_assay(cfg: AssayConfig, rows: Sequence[dict[str, Any]], detections: pd.DataFrame | None = None) -> AssayResult:
    """The whole assay step on a prediction folder's ``counts.csv`` ``rows``; writes into ``cfg.output``.

    The nuclei are the folder's ``nuclei.csv`` (those ``predict`` counted), or, in a folder without it,
    found again in its saved maps (:func:`livedead.assays.detections.read_detections`). ``detections``
    (as that gives) replace them: the true ones of a synthetic plate, for the analysis of the true counts.
    """
    cfg.validate()
    folder, out = Path(cfg.predictions), Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    counts = pd.DataFrame(list(rows))
    if "time_h" not in counts or counts["time_h"].isna().any():
        counts["time_h"] = counts["time"].astype(float)
    counts["well"] = counts["well"].astype(str)
    wells = list(dict.fromkeys(counts["well"]))
    plate_map = read_plate_map(cfg.plate_map, wells) if cfg.plate_map else None
    groups = well_groups(plate_map, wells)
    controls = plate_map.controls(cfg.control) if plate_map else {}
    if plate_map is not None and plate_map.unmapped:
        console.print(
            f"{cfg.plate_map}: wells not in the plate map, shown as 'unmapped': {', '.join(plate_map.unmapped)}",
            soft_wrap=True,
        )
    wells_by_time = counts.groupby("well")["time"]
    with Progress(console=console, disable=not cfg.progress) as bar:
        if detections is None:
            task = bar.add_task("reading nuclei", total=len(counts))
            detections = read_detections(folder, rows, lambda: bar.advance(task), lambda note: console.print(note))
            bar.update(task, completed=len(counts))
        track_task = bar.add_task("tracking", total=len(wells))
        start = time.perf_counter()
        tracks = track_plate(detections, cfg.max_distance, cfg.gap_frames, cfg.tracker, lambda: bar.advance(track_task))
        tracking_s = time.perf_counter() - start
    if not len(tracks):
        raise LivedeadError(f"{folder}: expected nuclei to track, found none in {len(counts)} images")
    first, last = wells_by_time.min(), wells_by_time.max()
    fates = pd.concat(
        [cell_fates(t, int(first[w]), int(last[w])) for w, t in tracks.groupby("well", sort=False)], ignore_index=True
    )
    well_curves = [kaplan_meier(fates[fates["well"] == w], w) for w in wells]
    curves = [kaplan_meier(fates[fates["well"].isin(v)], k) for k, v in groups.items()]
    pvalues = logrank_vs_control(fates, groups, controls)
    table = dead_fraction_table(counts, groups)
    summary = pd.DataFrame([
        {"condition": s.label, "wells": len(groups[s.label]), "cells": s.cells, "deaths": s.deaths,
         **dict(zip(("median_survival_h", "median_ci_lower_h", "median_ci_upper_h"), _median_text(s), strict=True)),
         "logrank_p_vs_control": _p_text(s.label, controls, pvalues)}
        for s in curves
    ])  # fmt: skip
    at_h = float(counts["time_h"].max()) if cfg.at_h is None else float(cfg.at_h)
    fits: list[DoseResponse] = []
    _write_csv(tracks[TRACK_COLUMNS], out / "tracks.csv")
    _write_csv(fates, out / "cells.csv")
    _write_csv(
        pd.DataFrame(survival_rows(well_curves, "well") + survival_rows(curves, "condition")), out / "survival.csv"
    )
    _write_csv(table, out / "dead_fraction.csv")
    _write_csv(summary, out / "conditions.csv")
    figures = {"wells.png": survival_figure(well_curves, "survival per well (Kaplan-Meier, 95% band)"),
               "conditions.png": conditions_figure(table, curves, pvalues, set(controls.values()))}  # fmt: skip
    sections: list[tuple[str, str | Path | pd.DataFrame]] = [
        ("Run", f"{len(wells)} wells, {len(counts)} images, {len(fates)} tracks; tracker {cfg.tracker}, max distance "
                f"{cfg.max_distance:g} px, gap closing over {cfg.gap_frames} missed time points; "
                f"dose-response at {at_h:g} h"),
    ]  # fmt: skip
    if plate_map is not None:
        points = dose_points(counts, plate_map, at_h)
        fits = fit_compounds(points)
        unit = next(iter(plate_map.entries.values())).unit
        _write_csv(pd.DataFrame([f.row(unit, at_h) for f in fits], columns=ROW_COLUMNS), out / "dose_response.csv")
        figures["dose_response.png"] = dose_response_figure(points, fits, unit, at_h)
    for name, fig in figures.items():
        with atomic_path(out / name) as tmp:
            fig.savefig(tmp)
    sections += [
        ("Conditions", out / "conditions.png"),
        ("Conditions table", summary),
        ("Survival per well", out / "wells.png"),
    ]
    if plate_map is not None:
        sections += [
            ("Dose-response", out / "dose_response.png"),
            ("Dose-response fits", pd.read_csv(out / "dose_response.csv")),
        ]
    with atomic_path(out / "assay.html") as tmp:
        tmp.write_text(write_html(f"Assay results: {folder}", sections))
    return AssayResult(tracks, fates, summary, fits, tracking_s, out)
