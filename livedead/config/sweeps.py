"""The end of a multirun: a ranked summary of its jobs (``summary.csv`` and ``summary.md``).

Each job of ``train.py`` writes ``result.json`` into its folder, whether it finished or failed;
this Hydra callback, run by the sweeping process when every job has ended, ranks them by the
optimised metric in the order of the report (:func:`livedead.viz.sweep.standing`). It reads
files, not launcher return values, so it works the same for local (basic, joblib) and cluster
(submitit) launchers.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from livedead.config.resolvers import SWEPT_KEYS_ENV, swept_keys  # importing it registers the resolvers
from livedead.files import atomic_path
from livedead.viz.sweep import job_order, read_result, standing

COLUMNS = ("rank", "job", "status", "metric", "value", "best_epoch", "wall_s", "overrides", "error")


def collect(sweep_dir: Path) -> list[dict[str, Any]]:
    """Every job's ``result.json``, best first; failed jobs after the finished ones, diverged jobs last."""
    paths = sorted(sweep_dir.glob("*/result.json"), key=lambda p: job_order(p.parent))
    rows = [_read_result(p) for p in paths]
    rows.sort(key=lambda row: standing(row.get("status"), row.get("value")))
    for i, row in enumerate(rows, 1):
        row["rank"] = i
    return rows


def _read_result(path: Path) -> dict[str, Any]:
    """A job's ``result.json``; one that cannot be read is a row that says so (status ``unreadable``),
    ranked after the jobs that finished, never a traceback that loses the whole summary."""
    row, problem = read_result(path)
    return row if row is not None else {"job": path.parent.name, "status": "unreadable", "error": f"{path}: {problem}"}


def write_summary(sweep_dir: Path, console: Console | None = None) -> list[dict[str, Any]]:
    """Write ``summary.csv`` and ``summary.md`` of :func:`collect`'s ranking, print it as a table, and return it."""
    rows = collect(sweep_dir)
    with atomic_path(sweep_dir / "summary.csv") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        cells = [_fmt(row.get(c)) for c in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    with atomic_path(sweep_dir / "summary.md") as tmp:
        tmp.write_text(f"# Sweep {sweep_dir.name}\n\n" + "\n".join(lines) + "\n")
    table = Table(title=f"sweep summary: {sweep_dir}")
    for c in ("rank", "job", "status", "value", "best_epoch", "wall_s"):
        table.add_column(c, overflow="fold")
    for row in rows:
        table.add_row(*(_fmt(row.get(c)) for c in ("rank", "job", "status", "value", "best_epoch", "wall_s")))
    (console or Console()).print(table)
    return rows


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return "" if value is None else str(value).replace("|", "/").replace("\n", " ")


class SweepSummary(Callback):
    """Hydra callback: names the jobs after what the sweep varies, and writes the summary at the end."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # launcher processes (joblib, submitit) inherit the environment, and resolve job names there
        params = config.hydra.sweeper.get("params")
        params = OmegaConf.to_container(params) if params is not None else {}
        os.environ[SWEPT_KEYS_ENV] = ",".join(swept_keys(list(config.hydra.overrides.task), params))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if sweep_dir.is_dir():
            write_summary(sweep_dir)
