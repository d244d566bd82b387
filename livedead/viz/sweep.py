"""A sweep's jobs as TensorBoard recorded them: curves per epoch, final PR curves, overlays, status and verdict.

:func:`load_sweep` reads every job folder of a multirun (or one run folder) with TensorBoard's own
event reader, so that it works on a sweep that is still running; :func:`group_by_setting` puts
the jobs that differ only in ``seed`` together. The report (:mod:`livedead.viz.report`) and the
notebook ``notebooks/02_sweep.ipynb`` are built from these functions.

>>> strip_seed("optimizer=adam,seed=2,scheduler=kicks")
'optimizer=adam,scheduler=kicks'
"""

from __future__ import annotations

import io
import json
import math
import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c
from tensorboard.util.tensor_util import make_ndarray

from livedead.errors import LivedeadError
from livedead.viz.video import OVERLAY_TAG

CURVES = ("train/loss_epoch", "val/loss", "val/pr_auc/dapi", "val/pr_auc/cy5")
"""The curves of ``curves.png``, the study's comparison: losses and PR-AUC per class."""
_JOB_NUMBER = re.compile(r"^\d+_")


def strip_seed(label: str) -> str:
    """A job's setting without its seed: the jobs of one setting over several seeds share it."""
    return ",".join(p for p in label.split(",") if p and not p.startswith("seed=")) or "(defaults)"


@dataclass
class Job:
    """One job of a sweep (or one run): what its events and ``result.json`` say."""

    folder: Path
    label: str
    """The values it sweeps (``optimizer=adam,seed=1``): its folder's name without the job number."""
    status: str
    """``ok``, ``failed``, ``diverged``, ``interrupted``, ``running`` (no ``result.json`` yet) or ``unreadable``
    (its ``result.json`` or an events file is damaged: ``problem`` says which and how)."""
    result: dict[str, Any]
    scalars: dict[str, dict[int, float]] = field(default_factory=dict)
    """tag -> epoch -> value."""
    pr_curves: dict[str, tuple[int, np.ndarray, np.ndarray]] = field(default_factory=dict)
    """class -> (epoch, precision, recall) of the last validation."""
    problem: str = ""
    """Why an ``unreadable`` job could not be read, naming the file."""

    @property
    def setting(self) -> str:
        return strip_seed(self.label)

    @property
    def seed(self) -> int | None:
        found = re.search(r"(?:^|,)seed=(-?\d+)", self.label)
        return int(found.group(1)) if found else None

    def curve(self, tag: str) -> tuple[np.ndarray, np.ndarray]:
        """(epochs, values) of a tag, in epoch order (empty where the job did not log it)."""
        points = sorted(self.scalars.get(tag, {}).items())
        return np.array([p[0] for p in points], int), np.array([p[1] for p in points], float)

    def best(self, metric: str) -> tuple[int, float] | None:
        """The best epoch of a metric (highest) and its value; ``None`` before the first validation."""
        epochs, values = self.curve(metric)
        if not len(values) or np.isnan(values).all():
            return None
        i = int(np.nanargmax(values))
        return int(epochs[i]), float(values[i])

    def overlays(self) -> dict[int, np.ndarray]:
        """epoch -> RGB overlay image (read on demand: images are the bulk of the events)."""
        frames: dict[int, np.ndarray] = {}
        for folder in _event_folders(self.folder):
            events = EventAccumulator(str(folder), size_guidance={"images": 0})
            events.Reload()
            if OVERLAY_TAG in events.Tags()["images"]:
                for image in events.Images(OVERLAY_TAG):
                    frames[image.step] = np.asarray(Image.open(io.BytesIO(image.encoded_image_string)).convert("RGB"))
        return frames


def _event_folders(folder: Path) -> list[Path]:
    return sorted({p.parent for p in folder.rglob("events.out.tfevents.*")})


def job_folders(folder: Path) -> list[Path]:
    """The job folders of a multirun folder, or ``[folder]`` for a run folder."""
    if not folder.is_dir():
        raise LivedeadError(f"{folder}: expected a multirun or run folder (config key 'sweep'), found none")
    if (folder / ".hydra").is_dir() or any(folder.glob("events.out.tfevents.*")):
        return [folder]
    jobs = sorted((p for p in folder.iterdir() if p.is_dir() and (p / ".hydra").is_dir()), key=job_order)
    if not jobs:
        raise LivedeadError(f"{folder}: expected job folders (with .hydra/) or TensorBoard events, found neither")
    return jobs


def job_order(folder: Path) -> tuple[int, str]:
    """Sort key of job folders by Hydra's job number (``10_...`` after ``9_...``), then by name.

    >>> sorted(["10_seed=3", "9_seed=2", "run"], key=lambda name: job_order(Path(name)))
    ['9_seed=2', '10_seed=3', 'run']
    """
    number = folder.name.split("_", 1)[0]
    return (int(number) if number.isdigit() else 1 << 30, folder.name)


def standing(status: str | None, value: float | None) -> tuple[int, float]:
    """A job's or a setting's place in a sweep's ranking, as a sort key: the one order of both the
    multirun's ``summary.csv`` (:mod:`livedead.config.sweeps`) and the report (:func:`rank`).

    The validated come first, highest value first (every optimised metric is maximised, as the
    checkpoint's ``mode: max`` and Optuna's ``direction: maximize``); then the failed and the never
    validated; the diverged last. Sorting is stable, so ties keep the job order.

    >>> results = [("diverged", None), ("ok", 0.7), ("failed", None), ("ok", 0.9), ("ok", math.nan)]
    >>> sorted(results, key=lambda r: standing(*r))
    [('ok', 0.9), ('ok', 0.7), ('failed', None), ('ok', nan), ('diverged', None)]
    """
    if status in ("ok", "running") and value is not None and not math.isnan(value):
        return (0, -value)
    return (2, 0.0) if status == "diverged" else (1, 0.0)


def events_damage(path: Path, open_end: bool = False) -> str | None:
    """What is wrong with a TensorBoard events file, naming it: a record whose checksum fails, or one cut off.

    TensorBoard's reader stops without a word at the first bad record, so a damaged file reads as a
    shorter run. With ``open_end`` an incomplete last record is no damage: the file is still being
    written (a job without ``result.json``), or a kill cut it off and a resumed session went on in a
    newer file (which logs again what the killed one logged after its checkpoint).
    """
    data = path.read_bytes()
    pos = 0
    while pos < len(data):
        header = data[pos : pos + 12]
        if len(header) == 12 and struct.unpack("<I", header[8:])[0] != masked_crc32c(header[:8]):
            return f"{path}: the record at byte {pos} is damaged (checksum)"
        end = pos + 12 + (struct.unpack("<Q", header[:8])[0] if len(header) == 12 else 0) + 4
        if len(header) < 12 or end > len(data):
            return None if open_end else f"{path}: truncated (it ends inside the record at byte {pos})"
        if struct.unpack("<I", data[end - 4 : end])[0] != masked_crc32c(data[pos + 12 : end - 4]):
            return f"{path}: the record at byte {pos} is damaged (checksum)"
        pos = end
    return None


def read_result(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """A job's ``result.json`` as (its record, None), or (None, what is wrong with it): the one reader of the
    file, so that the summary, the report and a rerun sweep agree on which records are damaged."""
    try:
        record = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:  # JSONDecodeError is a ValueError
        return None, f"not valid JSON ({err})"
    except OSError as err:
        return None, f"cannot be read ({err.strerror or err})"
    if not isinstance(record, dict):
        return None, f"expected a JSON object, found {type(record).__name__}"
    return record, None


def load_job(folder: Path) -> Job:
    """Read one job: its scalars by epoch and its last PR curves from the events, its status from ``result.json``.

    A job whose ``result.json`` or events cannot be read whole is ``unreadable``, with nothing read
    from it: a damaged file would otherwise show as a shorter run, and rank as one.
    """
    result_path = folder / "result.json"
    label = _JOB_NUMBER.sub("", folder.name) if _JOB_NUMBER.match(folder.name) else ""
    result, problem = read_result(result_path) if result_path.exists() else ({}, None)
    if result is None:
        return Job(folder, label, "unreadable", {}, problem=f"{result_path}: {problem}")
    status = result.get("status", "running")
    label = label or result.get("overrides") or ""
    job = Job(folder, label, status, result)
    for events_folder in _event_folders(folder):
        files = sorted(events_folder.glob("events.out.tfevents.*"))  # in the order the sessions made them
        for path in files:
            problem = events_damage(path, open_end=path != files[-1] or not result_path.exists())
            if problem:
                return Job(folder, label, "unreadable", result, problem=problem)
    for events_folder in _event_folders(folder):
        events = EventAccumulator(str(events_folder), size_guidance={"scalars": 0, "tensors": 0, "images": 1})
        events.Reload()
        tags = events.Tags()
        epoch_at = {e.step: int(e.value) for e in events.Scalars("epoch")} if "epoch" in tags["scalars"] else {}
        for tag in tags["scalars"]:
            if tag == "epoch":
                continue
            points = events.Scalars(tag)
            if all(e.step in epoch_at for e in points):
                by_epoch = {epoch_at[e.step]: e.value for e in points}
            else:  # logged once an epoch without the epoch beside it (the learning rate): in order
                by_epoch = {i: e.value for i, e in enumerate(sorted(points, key=lambda e: e.step))}
            job.scalars.setdefault(tag, {}).update(by_epoch)
        for tag in tags["tensors"]:
            if tag.startswith("pr_curve/"):
                last = events.Tensors(tag)[-1]
                data = make_ndarray(last.tensor_proto)  # rows: TP, FP, TN, FN, precision, recall
                job.pr_curves[tag.removeprefix("pr_curve/")] = (last.step, data[4], data[5])
    trained = job.scalars.get("train/loss_epoch")
    if status != "running" and trained:  # the validation of the best checkpoint after fitting is no epoch
        for tag in job.scalars:
            job.scalars[tag] = {e: v for e, v in job.scalars[tag].items() if e <= max(trained)}
    return job


def load_sweep(folder: str | Path, on_job: Callable[[], None] | None = None) -> list[Job]:
    """Every job of a multirun folder (or the one run of a run folder), in job order."""
    jobs = []
    for path in job_folders(Path(folder)):
        jobs.append(load_job(path))
        if on_job:
            on_job()
    return jobs


def group_by_setting(jobs: Sequence[Job]) -> dict[str, list[Job]]:
    """The jobs of each setting (their label without the seed), in job order."""
    groups: dict[str, list[Job]] = {}
    for job in jobs:
        groups.setdefault(job.setting, []).append(job)
    return groups


@dataclass
class Ranked:
    """One setting's row of the ranking: the mean and spread of its jobs' best metric over seeds."""

    setting: str
    jobs: list[Job]
    values: list[float]
    best_epochs: list[int]

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) if self.values else math.nan

    @property
    def std(self) -> float:
        return float(np.std(self.values, ddof=1)) if len(self.values) > 1 else math.nan


def rank(jobs: Sequence[Job], metric: str) -> tuple[list[Ranked], list[Job]]:
    """Settings ranked by the mean over seeds of each job's best ``metric``, in :func:`standing`'s order; and
    the jobs left out of the ranking (failed, unreadable, diverged, or not validated yet), in that order too."""
    rows, left_out = [], []
    for setting, group in group_by_setting(jobs).items():
        scored = [(j, j.best(metric)) for j in group if j.status in ("ok", "running")]
        scored = [(j, b) for j, b in scored if b is not None]
        left_out += [j for j in group if j not in [s[0] for s in scored]]
        if scored:
            rows.append(Ranked(setting, [s[0] for s in scored], [s[1][1] for s in scored], [s[1][0] for s in scored]))
    rows.sort(key=lambda r: standing("ok", r.mean))
    left_out.sort(key=lambda j: standing(j.status, None))
    return rows, left_out


def verdict(job: Job, metric: str) -> str:
    """Whether a job is still improving, over-fitting or under-fitting, in one line, from its last epochs.

    Over-fitting: the validation loss rose over the last third of the epochs while the training
    loss fell. Still improving: the best ``metric`` is at one of the last two epochs; with training
    and validation losses still falling together and close, that is the study's under-fitting.
    """
    if job.status == "failed":
        return f"failed: {job.result.get('error', '?')}"
    if job.status == "diverged":
        return f"diverged at step {job.result.get('diverged_step', '?')}: {job.result.get('error', '')}"
    if job.status == "unreadable":
        return job.problem
    epochs, val = job.curve("val/loss")
    _, train = job.curve("train/loss_epoch")
    best = job.best(metric)
    prefix = "running: " if job.status == "running" else ""
    if best is None or len(val) < 3:
        return prefix + f"too few epochs to judge ({len(val)})"
    last = int(epochs[-1])
    k = max(2, len(val) // 3)
    val_slope = np.polyfit(np.arange(k), val[-k:], 1)[0] / max(abs(val[-k:].mean()), 1e-12)
    train_slope = (
        np.polyfit(np.arange(k), train[-k:], 1)[0] / max(abs(train[-k:].mean()), 1e-12) if len(train) >= k else 0.0
    )
    if val_slope > 0.01 and train_slope < 0:
        low = int(epochs[int(np.argmin(val))])
        return prefix + f"over-fitting: val loss rising since epoch {low} while train loss falls"
    if best[0] >= last - 1:
        gap = abs(val[-1] - train[-1]) / max(abs(train[-1]), 1e-12) if len(train) else math.inf
        if val_slope < 0 and train_slope < 0 and gap < 0.5:
            return prefix + (
                f"still improving, under-fitting: best {metric} at epoch {best[0]} of {last}, and train and val "
                f"loss fall together ({gap:.0%} apart): train longer"
            )
        return prefix + f"still improving: best {metric} at epoch {best[0]} of {last}"
    return prefix + f"plateaued: best {metric} {best[1]:.4f} at epoch {best[0]} of {last}"
