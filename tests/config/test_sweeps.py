"""The end-of-multirun summary: its files and table, its job names, and a ranking that agrees with the report's."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from rich.console import Console
from torch.utils.tensorboard import SummaryWriter

from livedead.config.resolvers import SWEPT_KEYS_ENV
from livedead.config.sweeps import COLUMNS, SweepSummary, collect, write_summary
from livedead.viz.sweep import load_sweep, rank

METRIC = "val/pr_auc/macro"


def make_job(sweep: Path, name: str, status: str, curve: list[float]) -> None:
    """A job folder as ``train.py`` leaves it: ``.hydra/``, TensorBoard events of ``curve`` per epoch, and
    ``result.json`` whose value is the curve's best (the validation of the best checkpoint)."""
    folder = sweep / name
    (folder / ".hydra").mkdir(parents=True)
    writer = SummaryWriter(str(folder))
    for epoch, value in enumerate(curve):
        writer.add_scalar("epoch", epoch, epoch)
        writer.add_scalar(METRIC, value, epoch)
        writer.add_scalar("train/loss_epoch", 1.0 - value, epoch)
    writer.close()
    value = max(curve) if status == "ok" and curve else None
    result = {"job": name, "status": status, "metric": METRIC, "value": value, "wall_s": 1.5}
    if status == "ok":
        result["best_epoch"] = curve.index(max(curve))
    else:
        result["error"] = "the training loss became nan at step 4"
    (folder / "result.json").write_text(json.dumps(result))


@pytest.fixture
def jobs(tmp_path: Path) -> Path:
    """A sweep of thirteen jobs: eleven finished (three tied), a diverged and a failed one; past 9, the job order."""
    values = [0.5, 0.8, 0.3, 0.8, 0.6, 0.1, 0.9, 0.2, 0.4, 0.7]
    for i, value in enumerate(values):
        make_job(tmp_path, f"{i}_lr={i}", "ok", [value - 0.05, value])
    make_job(tmp_path, "10_lr=10", "ok", [0.8])  # tied with 1 and 3, and after them
    make_job(tmp_path, "11_lr=11", "diverged", [])
    make_job(tmp_path, "12_lr=12", "failed", [0.95])  # validated once, then failed: not ranked
    return tmp_path


def test_jobs_ranked_by_value_then_failed_then_diverged_with_ties_in_job_order(jobs):
    rows = collect(jobs)
    assert [r["job"] for r in rows] == [
        "6_lr=6", "1_lr=1", "3_lr=3", "10_lr=10", "9_lr=9", "4_lr=4", "0_lr=0", "8_lr=8", "2_lr=2",
        "7_lr=7", "5_lr=5", "12_lr=12", "11_lr=11",
    ]  # fmt: skip
    assert [r["rank"] for r in rows] == list(range(1, 14))


def test_a_nan_value_ranks_with_the_failed(tmp_path):
    make_job(tmp_path, "1_lr=1", "ok", [0.2])
    result = json.loads((tmp_path / "1_lr=1" / "result.json").read_text())
    (tmp_path / "1_lr=1" / "result.json").write_text(json.dumps({**result, "value": math.nan}))
    make_job(tmp_path, "10_lr=10", "failed", [])
    make_job(tmp_path, "2_lr=2", "ok", [0.1])
    assert [r["job"] for r in collect(tmp_path)] == ["2_lr=2", "1_lr=1", "10_lr=10"]


def test_a_truncated_result_is_a_row_that_says_so_not_a_lost_summary(tmp_path):
    make_job(tmp_path, "0_lr=0", "ok", [0.4])
    make_job(tmp_path, "1_lr=1", "ok", [0.6])
    result = tmp_path / "0_lr=0" / "result.json"
    result.write_text(result.read_text()[:20])  # the job was killed while the file was written by hand
    rows = collect(tmp_path)
    assert [(r["job"], r["status"]) for r in rows] == [("1_lr=1", "ok"), ("0_lr=0", "unreadable")]
    assert str(result) in rows[1]["error"]
    write_summary(tmp_path, Console(file=io.StringIO()))
    assert "unreadable" in (tmp_path / "summary.md").read_text()


def test_the_summary_and_the_report_rank_alike(jobs):
    """With one seed a setting, the report's ranking of settings is the summary's ranking of jobs."""
    ranked, left_out = rank(load_sweep(jobs), METRIC)
    summary = collect(jobs)
    assert [r.jobs[0].folder.name for r in ranked] + [j.folder.name for j in left_out] == [r["job"] for r in summary]
    assert [r.mean for r in ranked] == pytest.approx([r["value"] for r in summary[:11]])


def test_summary_files_and_table(jobs):
    out = io.StringIO()
    rows = write_summary(jobs, Console(file=out, width=200))
    with open(jobs / "summary.csv", newline="") as f:
        written = list(csv.DictReader(f))
    assert list(written[0]) == list(COLUMNS)
    assert [r["job"] for r in written] == [r["job"] for r in rows]
    assert written[0]["value"] == "0.9"
    assert written[-1]["status"] == "diverged"
    assert "nan at step 4" in written[-1]["error"]
    md = (jobs / "summary.md").read_text().splitlines()
    assert md[0] == f"# Sweep {jobs.name}"
    assert md[2] == "| " + " | ".join(COLUMNS) + " |"
    assert md[4].startswith("| 1 | 6_lr=6 | ok | val/pr_auc/macro | 0.9000 | 1 | 1.5000 |")
    assert len(md) == 4 + 13
    table = out.getvalue()
    assert "sweep summary" in table
    assert table.index("6_lr=6") < table.index("1_lr=1") < table.index("11_lr=11")


def test_the_callback_names_the_swept_keys_and_writes_the_summary_at_the_end(jobs, monkeypatch):
    monkeypatch.setenv(SWEPT_KEYS_ENV, "")  # restored after the test
    config = OmegaConf.create(
        {
            "hydra": {
                "sweeper": {"params": {"model.optimizer.lr": "interval(0.01, 0.1)"}},
                "overrides": {"task": ["optimizer=adam,sgd", "trainer.max_epochs=1"]},
                "sweep": {"dir": str(jobs)},
            }
        }
    )
    callback = SweepSummary()
    callback.on_multirun_start(config)
    assert os.environ[SWEPT_KEYS_ENV] == "optimizer,model.optimizer.lr"
    assert not (jobs / "summary.csv").exists()
    callback.on_multirun_end(config)
    assert (jobs / "summary.csv").read_text().splitlines()[1].startswith("1,6_lr=6,ok,")
    gone = OmegaConf.merge(config, {"hydra": {"sweep": {"dir": str(jobs / "never_made")}}})
    callback.on_multirun_end(gone)  # a sweep that made no folder has nothing to summarise
    assert not (jobs / "never_made").exists()
