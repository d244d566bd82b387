"""Evaluation of predicted counts: errors against the truth, nucleus detection scores, and the files that hold them.

``predict`` (:mod:`livedead.inference.predictor`) counts; this module scores the counts and owns
the two files a prediction folder holds besides its images:

* ``counts.csv`` (:func:`write_counts`, :func:`read_counts`): one row per well and time point;
* ``metrics.json`` (:func:`write_metrics`), when the plate carries its truth: count MSE, MAE and
  relative error per image and per tile, and detection precision, recall and F1, for the model and
  for the stain-derived reference, and the factor the images were rescaled by to the model's pixel size;
  and, where populations are counted (with or without truth), their definition and the plate's live
  and dead nuclei per population and source.

Kept apart from inference, as nnU-Net keeps its evaluation: scoring needs no network.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from livedead.errors import LivedeadError
from livedead.files import atomic_path
from livedead.nuclei.populations import Populations


def count_errors(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """MSE and MAE of live and dead counts, and the mean relative error of the total."""
    err = pred.astype(np.float64) - true
    total_true = true.sum(axis=1)
    rel = np.abs(err.sum(axis=1)) / np.maximum(total_true, 1)
    return {
        "mse_live": float(np.mean(err[:, 0] ** 2)),
        "mse_dead": float(np.mean(err[:, 1] ** 2)),
        "mse": float(np.mean(err**2)),
        "mae_live": float(np.mean(np.abs(err[:, 0]))),
        "mae_dead": float(np.mean(np.abs(err[:, 1]))),
        "relative_error_total": float(np.mean(rel)),
        "n": len(err),
    }


def detection_scores(per_image: list[dict[str, float]]) -> dict[str, float]:
    """Precision, recall and F1 of nucleus detection over images: true positives, found and true nuclei summed."""
    tp, found, true = (sum(d[k] for d in per_image) for k in ("tp", "found", "true"))
    return {
        "precision": tp / found if found else float(true == 0),
        "recall": tp / true if true else float(found == 0),
        "f1": 2 * tp / (found + true) if found + true else 1.0,
        "found": found,
        "true": true,
    }


def write_metrics(
    rows: list[dict[str, Any]],
    tiles: dict[str, list[np.ndarray]],
    detection: dict[str, list[dict[str, float]]],
    out: Path,
    tile_px: int,
    console: Console,
    populations: Populations | None = None,
) -> dict[str, Any]:
    """``metrics.json``: count errors per image and per ``tile_px`` tile, and detection scores, of the model
    and of the stain-derived reference against the truth where ``rows`` carry ``true_live``; and the
    counts per population where ``populations`` are given. The headline figures go to ``console``."""
    metrics: dict[str, Any] = {}
    if "true_live" in rows[0]:
        metrics.update(truth_metrics(rows, tiles, detection, tile_px, console))
    metrics["rescale"] = rows[0].get("rescale", 1.0)  # one plate, one pixel size: the factor to the model's
    if populations is not None:
        metrics["populations"] = population_totals(rows, populations)
    with atomic_path(out / "metrics.json") as tmp:
        tmp.write_text(json.dumps(metrics, indent=2))
    return metrics


SOURCE_PREFIX = {"model": "", "stains": "stain_", "truth": "true_"}
"""The column prefix of each source's counts in ``counts.csv``."""


def population_totals(rows: list[dict[str, Any]], populations: Populations) -> dict[str, Any]:
    """The definition, and live, dead and the dead fraction per population summed over the plate, per source
    whose columns the rows carry (``model``, ``stains``, ``truth``)."""
    out: dict[str, Any] = {"definition": populations.describe()}
    for source, prefix in SOURCE_PREFIX.items():
        if not populations.ranges or f"{prefix}unassigned" not in rows[0]:
            continue
        per: dict[str, Any] = {}
        for name in populations.ranges:
            live = sum(r[f"{prefix}{name}_live"] for r in rows)
            dead = sum(r[f"{prefix}{name}_dead"] for r in rows)
            per[name] = {"live": live, "dead": dead, "dead_fraction": dead / (live + dead) if live + dead else 0.0}
        per["unassigned"] = sum(r[f"{prefix}unassigned"] for r in rows)
        out[source] = per
    return out


def truth_metrics(
    rows: list[dict[str, Any]],
    tiles: dict[str, list[np.ndarray]],
    detection: dict[str, list[dict[str, float]]],
    tile_px: int,
    console: Console,
) -> dict[str, Any]:
    """Count errors per image and per tile and detection scores against the truth, printed in brief."""
    true = np.array([[r["true_live"], r["true_dead"]] for r in rows])
    metrics: dict[str, Any] = {
        "per_image": {"model": count_errors(np.array([[r["live"], r["dead"]] for r in rows]), true)}
    }
    if "stain_live" in rows[0]:
        metrics["per_image"]["stains"] = count_errors(
            np.array([[r["stain_live"], r["stain_dead"]] for r in rows]), true
        )
    if tiles["truth"]:
        true_tiles = np.concatenate(tiles["truth"])
        metrics["per_tile"] = {
            k: count_errors(np.concatenate(v), true_tiles) for k, v in tiles.items() if v and k != "truth"
        }
        metrics["per_tile"]["tile_px"] = tile_px
    if detection["model"]:
        metrics["detection"] = {k: detection_scores(v) for k, v in detection.items() if v}
    pi = metrics["per_image"]["model"]
    console.print(f"count MSE per image: live {pi['mse_live']:.2f}, dead {pi['mse_dead']:.2f}; "
                  f"relative error {pi['relative_error_total']:.3f}")  # fmt: skip
    if "per_tile" in metrics:
        pt = metrics["per_tile"]["model"]
        console.print(
            f"count MSE per {tile_px}-px tile: {pt['mse']:.3f} (live {pt['mse_live']:.3f}, dead {pt['mse_dead']:.3f})"
        )
    if "detection" in metrics:
        d = metrics["detection"]["model"]
        console.print(f"nucleus detection: precision {d['precision']:.3f}, recall {d['recall']:.3f}, F1 {d['f1']:.3f}")
    return metrics


def write_counts(rows: list[dict[str, Any]], out: Path) -> None:
    """``counts.csv``: one row per image, the columns of every row in the order they first appear."""
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with atomic_path(out / "counts.csv") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(rows)


def read_counts(folder: str | Path) -> list[dict[str, Any]]:
    """The rows of a prediction folder's ``counts.csv``, numbers as numbers (empty cells as None)."""
    path = Path(folder) / "counts.csv"
    if not path.exists():
        raise LivedeadError(f"{path}: expected the counts of a livedead.predict output folder, found none")

    def value(text: str) -> Any:
        if text == "":
            return None
        try:
            return int(text)
        except ValueError:
            try:
                return float(text)
            except ValueError:
                return text

    with open(path, newline="") as f:
        return [{k: value(v) for k, v in row.items()} for row in csv.DictReader(f)]


def merge_parts(folder: str | Path) -> tuple[list[dict[str, Any]], list[Path]]:
    """The rows of the ``counts.csv`` of every part of a sharded prediction (``<folder>/parts/<job>``,
    in job order), and the parts; one line for a part without its table (its job did not finish) or
    an image that two parts counted."""
    folder = Path(folder)
    parts = sorted((p for p in (folder / "parts").glob("*") if p.is_dir()), key=lambda p: (len(p.name), p.name))
    if not parts:
        raise LivedeadError(
            f"{folder}: expected the parts of a multirun of livedead.predict in {folder / 'parts'}, found none"
        )
    rows: list[dict[str, Any]] = []
    seen: dict[tuple[Any, Any], Path] = {}
    for part in parts:
        if not (part / "counts.csv").exists():
            raise LivedeadError(f"{part}: expected its counts.csv, found none: its job did not finish; run it again")
        for row in read_counts(part):
            key = (row["well"], row["time"])
            if key in seen:
                raise LivedeadError(
                    f"{part}: well {key[0]}, time {key[1]}: expected in one part, found it in {seen[key]} too"
                )
            seen[key] = part
            rows.append(row)
    return rows, parts
