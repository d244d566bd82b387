"""``python -m livedead.report sweep=outputs/multirun/<sweep>`` (or a run folder)

Writes ``<sweep>/report/``: the study's figures (losses and PR-AUC per class over the epochs,
learning rates, final PR curves, overlays) and a ranking over seeds, as ``report.md`` and one
self-contained ``report.html`` (:mod:`livedead.viz.report`). It reads the jobs' TensorBoard
events, so it works on a sweep that is still running.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import hydra
from omegaconf import MISSING, DictConfig
from rich.progress import Progress

from livedead.config import schema
from livedead.config.app import cli_errors, run_app
from livedead.viz.report import write_report
from livedead.viz.sweep import Job, job_folders

PROG = "livedead.report"


@dataclass
class ReportSettings:
    sweep: str = MISSING
    """A multirun folder (its job folders are read) or one run folder."""
    metric: str = "val/pr_auc/macro"
    """What ranks the jobs: each job's best epoch of it."""
    progress: bool = True


schema.store("report_schema", ReportSettings)


@hydra.main(version_base="1.3", config_path="pkg://livedead.conf", config_name="report")
@cli_errors(PROG)
def main(cfg: DictConfig) -> None:
    with Progress(disable=not cfg.progress) as bar:
        task = bar.add_task("reading events", total=len(job_folders(Path(cfg.sweep))))
        report = write_report(cfg.sweep, cfg.metric, on_job=lambda: bar.advance(task), on_unreadable=warn)
    print(f"wrote {report} and {report.with_suffix('.html').name} with its figures")


def warn(job: Job) -> None:
    """A job left out because a file of it is damaged: one line on the console, as in the report."""
    print(f"{PROG}: warning: job {job.folder.name} is unreadable, not ranked: {job.problem}", file=sys.stderr)


def cli() -> None:
    run_app(main, PROG)


if __name__ == "__main__":
    cli()
