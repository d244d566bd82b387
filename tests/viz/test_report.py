"""The sweep report: a real two-seed sweep, its events read back independently, and the ranking checked."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from tests.helpers import assert_one_line_error, colour_mask, png_pixels, run_cli


def best_from_events(job: Path, tag: str = "val/pr_auc/macro") -> float:
    events = EventAccumulator(str(job), size_guidance={"scalars": 0})
    events.Reload()
    return max(e.value for e in events.Scalars(tag))


def assert_figures_drawn(out: Path) -> None:
    """The figures show what they say: adam's line (C0) and sgd's (C1) in every panel of ``curves.png``,
    each job's rate in ``lr.png``, the best job's PR curve in black beside the others, and overlays."""
    curves = png_pixels(out / "curves.png")
    h, w = curves.shape[0] // 2, curves.shape[1] // 2
    for panel in (curves[:h, :w], curves[:h, w:], curves[h:, :w], curves[h:, w:]):
        for colour in ("C0", "C1"):
            assert colour_mask(panel, colour, tol=2).sum() > 50, f"{colour} drawn in each panel"
    lr = png_pixels(out / "lr.png")
    assert colour_mask(lr, "C0", tol=40).sum() > 300, "adam's rates (drawn at alpha 0.85)"
    assert colour_mask(lr, "C1", tol=40).sum() > 300, "sgd's"
    pr = png_pixels(out / "pr_curves.png")
    assert colour_mask(pr, "black", tol=30).sum() > 500, "the best job's thick black curve"
    assert colour_mask(pr, "C0", tol=60).sum() + colour_mask(pr, "C1", tol=60).sum() > 50, "the others'"
    overlays = png_pixels(out / "overlays.png")
    grey = (overlays.max(-1).astype(int) - overlays.min(-1)) < 8
    assert grey.mean() < 0.97, "more than a blank page: tiles in grey with coloured predictions"
    green = overlays[..., 1].astype(int) - np.maximum(overlays[..., 0], overlays[..., 2]) > 60
    assert green.sum() > 1000, "true positives in green"
    assert len(np.unique(overlays.reshape(-1, 3), axis=0)) > 200, "the tiles' grey levels"


@pytest.mark.slow
def test_seeds_multiply_the_grid_and_the_report_ranks_by_the_mean_over_seeds(sweep):
    jobs = sorted(p.name for p in sweep.iterdir() if (p / ".hydra").is_dir())
    assert jobs == ["0_optimizer=adam,seed=0", "1_optimizer=adam,seed=1", "2_optimizer=sgd,seed=0",
                    "3_optimizer=sgd,seed=1"]  # fmt: skip
    proc = run_cli("livedead.report", f"sweep={sweep}", "progress=false")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = sweep / "report"
    for name in ("curves.png", "lr.png", "pr_curves.png", "overlays.png", "report.md", "report.html"):
        assert (out / name).stat().st_size > 1000, name
    assert_figures_drawn(out)
    text = (out / "report.md").read_text()
    rows = re.findall(r"^\| (\d) \| (optimizer=\w+) \| 2 \| ([0-9.]+) ± ([0-9.]+) \|", text, re.M)
    assert [r[0] for r in rows] == ["1", "2"]
    expected = {s: [best_from_events(sweep / f"{i}_{s},seed={k}") for k, i in ((0, j), (1, j + 1))]
                for s, j in (("optimizer=adam", 0), ("optimizer=sgd", 2))}  # fmt: skip
    ranking = sorted(expected, key=lambda s: -np.mean(expected[s]))
    assert [r[1] for r in rows] == ranking, "ranked by the mean over seeds of each job's best epoch"
    for _, setting, mean, std in rows:
        assert float(mean) == pytest.approx(np.mean(expected[setting]), abs=6e-5)
        assert float(std) == pytest.approx(np.std(expected[setting], ddof=1), abs=6e-5)
    assert len(re.findall(r"^- `\d_optimizer=\w+,seed=\d`: ", text, re.M)) == 4  # one verdict a job
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 4, "one file to mail: the figures are inside"
    assert "<table>" in page


@pytest.mark.slow
def test_a_running_a_failed_and_a_diverged_job_are_listed_not_plotted(sweep, tmp_path):
    copy = tmp_path / "sweep"
    shutil.copytree(sweep, copy, ignore=shutil.ignore_patterns("report", "*.ckpt"))
    (copy / "1_optimizer=adam,seed=1" / "result.json").unlink()  # still running: no result yet
    for job, status in (("2_optimizer=sgd,seed=0", "failed"), ("3_optimizer=sgd,seed=1", "diverged")):
        result = json.loads((copy / job / "result.json").read_text())
        result.update(status=status, error="the training loss became nan at step 4", diverged_step=4, value=None)
        (copy / job / "result.json").write_text(json.dumps(result))
    assert run_cli("livedead.report", f"sweep={copy}", "progress=false").returncode == 0
    text = (copy / "report" / "report.md").read_text()
    assert "1 still running" in text
    assert re.search(r"^\| 1 \| optimizer=adam \| 2 \|", text, re.M), "the running job is ranked as far as it got"
    assert "optimizer=sgd |" not in text, "failed and diverged jobs are not ranked"
    assert "- `2_optimizer=sgd,seed=0`: failed: failed:" in text
    assert "- `3_optimizer=sgd,seed=1`: diverged: diverged at step 4" in text
    assert "`1_optimizer=adam,seed=1`: running: " in text


@pytest.mark.slow
def test_a_single_run_and_bad_folders(sweep, tmp_path):
    job = sweep / "0_optimizer=adam,seed=0"
    # a job's folder name holds '=' and ',': Hydra's override grammar needs the path quoted
    assert run_cli("livedead.report", f"sweep='{job}'", "progress=false").returncode == 0
    assert (job / "report" / "curves.png").exists()
    assert_one_line_error(run_cli("livedead.report", f"sweep={tmp_path / 'none'}"), "none", "multirun or run folder")
    (tmp_path / "empty").mkdir()
    assert_one_line_error(run_cli("livedead.report", f"sweep={tmp_path / 'empty'}"), "empty", "job folders")


def small_sweep(folder: Path) -> Path:
    """A 2-job sweep as training leaves it, without the training: real event files (TensorBoard's own writer)
    and ``result.json``; ``optimizer=sgd`` is the better job."""
    for i, (setting, base) in enumerate((("optimizer=adam", 0.6), ("optimizer=sgd", 0.7))):
        job = folder / f"{i}_{setting}"
        (job / ".hydra").mkdir(parents=True)
        writer = SummaryWriter(log_dir=str(job))
        for epoch in range(4):
            step = (epoch + 1) * 10
            writer.add_scalar("epoch", epoch, step)
            for tag, value in (("train/loss_epoch", 1 - 0.1 * epoch), ("val/loss", 1.1 - 0.1 * epoch),
                               ("val/pr_auc/macro", base + 0.05 * epoch), ("val/pr_auc/dapi", base),
                               ("val/pr_auc/cy5", base), ("lr", 0.01)):  # fmt: skip
                writer.add_scalar(tag, value, step)
        writer.close()
        (job / "result.json").write_text(json.dumps({"status": "ok", "value": base + 0.15}))
    return folder


def truncate(path: Path) -> bytes:
    """Cut a file to 60% of its bytes, on disk (a broken copy); returns what it held."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 3 // 5])
    return data


@pytest.mark.slow
def test_a_job_whose_files_cannot_be_read_is_named_and_kept_out_of_the_ranking(tmp_path):
    sweep = small_sweep(tmp_path / "sweep")
    (events,) = (sweep / "1_optimizer=sgd").glob("events.out.tfevents.*")
    whole = truncate(events)
    proc = run_cli("livedead.report", f"sweep={sweep}", "progress=false")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"livedead.report: warning: job 1_optimizer=sgd is unreadable, not ranked: {events}: ")
    assert "truncated (it ends inside the record at byte " in line
    text = (sweep / "report" / "report.md").read_text()
    assert "2 jobs, 1 settings ranked by `val/pr_auc/macro` (each job's best epoch); 1 unreadable" in text
    assert re.search(r"^\| 1 \| optimizer=adam \| 1 \| 0.7500 \|", text, re.M), text
    assert "| optimizer=sgd |" not in text, "the damaged job is not ranked on what could be read of it"
    assert f"- `1_optimizer=sgd`: unreadable: {events}: truncated" in text
    assert f"unreadable: {events}: truncated" in (sweep / "report" / "report.html").read_text()

    events.write_bytes(whole)
    result = sweep / "0_optimizer=adam" / "result.json"
    truncate(result)
    proc = run_cli("livedead.report", f"sweep={sweep}", "progress=false")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"livedead.report: warning: job 0_optimizer=adam is unreadable, not ranked: {result}: ")
    text = (sweep / "report" / "report.md").read_text()
    assert re.search(r"^\| 1 \| optimizer=sgd \| 1 \| 0.8500 \|", text, re.M), text
    assert f"- `0_optimizer=adam`: unreadable: {result}: not valid JSON" in text
    truncate(events)  # nothing left to rank: one line that says why
    assert_one_line_error(
        run_cli("livedead.report", f"sweep={sweep}", "progress=false"), "found none (2 jobs; 2 unreadable"
    )


def test_a_damaged_record_is_told_from_the_unfinished_last_record_of_a_running_or_killed_session(tmp_path):
    from livedead.viz.sweep import events_damage, load_job

    job = small_sweep(tmp_path / "sweep") / "0_optimizer=adam"
    (events,) = job.glob("events.out.tfevents.*")
    whole = events.read_bytes()
    assert events_damage(events) is None
    truncate(events)
    assert "truncated" in events_damage(events)
    assert events_damage(events, open_end=True) is None, "a job still writing it: read as far as it got"
    resumed = events.with_name(events.name.replace(".events.out", ".").replace("tfevents.", "tfevents.9"))
    resumed.write_bytes(whole)  # a later session's file: the earlier one was cut off by a kill
    assert load_job(job).status == "ok"
    resumed.unlink()
    flipped = bytearray(whole)
    flipped[len(whole) // 2] ^= 0xFF
    events.write_bytes(bytes(flipped))
    assert "damaged (checksum)" in events_damage(events, open_end=True)


def test_a_result_that_is_not_an_object_or_cannot_be_read_marks_the_job_unreadable(tmp_path):
    """One reader of ``result.json`` for the report, the summary and a rerun sweep: a damaged one is said."""
    from livedead.viz.sweep import load_job, read_result

    job = tmp_path / "0_lr=1"
    job.mkdir()
    result = job / "result.json"
    result.write_text("[]")
    assert read_result(result) == (None, "expected a JSON object, found list")
    unreadable = load_job(job)
    assert (unreadable.status, unreadable.problem) == ("unreadable", f"{result}: expected a JSON object, found list")
    result.unlink()
    result.mkdir()  # a path that exists and cannot be read: an OSError
    unreadable = load_job(job)
    assert unreadable.status == "unreadable"
    assert unreadable.problem.startswith(f"{result}: cannot be read (")
    result.rmdir()
    result.write_text(json.dumps({"status": "ok"}))
    assert read_result(result) == ({"status": "ok"}, None)
