"""The training task: instantiate the datamodule, model, callbacks, loggers and trainer from the config,
seed everything, fit, validate the best checkpoint and record the job.

Every job writes ``result.json`` into its folder, finished, failed or interrupted (Ctrl-C); in a
multirun a failed job is recorded and the sweep goes on (``livedead.config.sweeps`` ranks the jobs
at the end). A job holds its folder locked for its life, and logs Lightning's lines to its ``train.log``.
:func:`run` is the task of ``livedead.train``; tests compose a config and call it in-process, as
lightning-hydra-template does.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import sys
import time
import traceback
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from livedead.config import schema
from livedead.config.resume import (
    after_earlier_event_files,
    check_run_folder,
    checkpoint_step,
    latest_checkpoint,
    purge_step,
    resume_config,
)
from livedead.data.datamodule import TileDataModule
from livedead.errors import Interrupted, LivedeadError, one_line
from livedead.files import atomic_path, folder_lock, is_disk_full, no_room
from livedead.model.module import Diverged, TrainingData
from livedead.viz.sweep import read_result

PROG = "train.py"


def check(cfg: DictConfig) -> None:
    """Config errors that would otherwise surface only after data preparation or mid-training."""
    if cfg.ckpt_path == "last" and not cfg.get("resume"):
        raise LivedeadError("config key 'ckpt_path': 'last' continues a run: add resume=<run folder>")
    lr = cfg.model.optimizer.get("lr")
    if lr is not None and not lr > 0:
        raise LivedeadError(f"config key 'model.optimizer.lr': expected > 0, found {lr}")
    if cfg.data.batch_size < 1:
        raise LivedeadError(f"config key 'data.batch_size': expected >= 1, found {cfg.data.batch_size}")
    out = Path(HydraConfig.get().runtime.output_dir)
    probe = out / ".write-test"
    try:
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise LivedeadError(f"output folder {out}: expected a writable folder, found {err.strerror}") from None


def flat_hparams(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as flat ``a/b/c`` keys, for TensorBoard's HParams dashboard."""
    out: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k not in ("_target_", "_partial_", "paths"):
                    walk(v, f"{prefix}/{k}" if prefix else k)
        else:
            out[prefix] = node if isinstance(node, int | float | str | bool) else str(node)

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    choices = HydraConfig.get().runtime.choices
    out.update({f"choice/{k}": v for k, v in choices.items() if not k.startswith("hydra/") and v})
    return out


def training_data(datamodule: TileDataModule, overlay_tiles: int) -> TrainingData:
    """What the module needs of a set-up datamodule: the class counts, ``overlay_tiles`` tiles, the normalisation."""
    tiles = datamodule.overlay_tiles(overlay_tiles) if overlay_tiles else {}
    return TrainingData(
        source=str(datamodule.path),
        class_counts=datamodule.train_class_counts,
        normalization=datamodule.normalization(),
        overlay_images=tiles.get("image"),
        overlay_labels=tiles.get("label"),
        held_out_wells=tuple(datamodule.info.held_out_wells),
        pixel_size_um=datamodule.info.pixel_size_um,
    )


LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric")
INTERRUPT_NOTE = "Detected KeyboardInterrupt"
"""Lightning's note on Ctrl-C: the command says in one line what it kept instead."""


@contextlib.contextmanager
def lightning_logged_to_file() -> Iterator[None]:
    """Lightning's log lines (and livedead's ``rank_zero_info``) also into the run's ``train.log``.

    Lightning, imported before Hydra sets up logging, prints through a console handler of its own and
    does not propagate to the root logger, where Hydra puts the file handler: the file stayed empty.
    The console is left as it was; the note Lightning logs on Ctrl-C is left out of both.
    """
    files = [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
    loggers = [lg for lg in map(logging.getLogger, LIGHTNING_LOGGERS) if not lg.propagate]
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")

    def note(record: logging.LogRecord) -> bool:
        return INTERRUPT_NOTE not in record.getMessage()

    rank_zero.addFilter(note)
    for logger in loggers:
        for handler in files:
            logger.addHandler(handler)
    try:
        yield
    finally:
        rank_zero.removeFilter(note)
        for logger in loggers:
            for handler in files:
                logger.removeHandler(handler)


@contextlib.contextmanager
def interrupts_of(trainer: L.Trainer) -> Iterator[None]:
    """Ctrl-C as the KeyboardInterrupt it is: Lightning catches it, shuts the trainer down and exits 1."""
    try:
        yield
    except SystemExit:
        if trainer.interrupted:
            raise KeyboardInterrupt from None
        raise


def fit(cfg: DictConfig) -> dict[str, Any]:
    """One training run; returns what ``result.json`` records."""
    datamodule = hydra.utils.instantiate(cfg.data, _convert_="all")
    if int(os.environ.get("LOCAL_RANK", 0)) == 0:  # DDP ranks > 0 wait for Lightning's own call
        datamodule.prepare_data()
    datamodule.setup("fit")  # bad data fails here, before the trainer starts
    L.seed_everything(cfg.seed, workers=True)
    net_args = {k: v for k, v in OmegaConf.to_container(cfg.model.net, resolve=True).items() if k != "_target_"}
    model = hydra.utils.instantiate(cfg.model, net_args=net_args, _convert_="all")
    model.use_data(training_data(datamodule, model.hparams.overlay_tiles))
    # a callback or logger set to null (callbacks.progress_bar=null) is switched off
    callbacks = [hydra.utils.instantiate(c, _convert_="all") for c in (cfg.get("callbacks") or {}).values() if c]
    # A resumed run's TensorBoard events go on in the same folder; purge_step makes TensorBoard drop
    # what the killed session logged after its last checkpoint, so no step shows twice.
    purge = {"purge_step": purge_step(cfg.ckpt_path)} if cfg.ckpt_path else {}
    loggers: list[Logger] = [
        hydra.utils.instantiate(lg, _convert_="all", **(purge if lg._target_.endswith("TensorBoardLogger") else {}))
        for lg in (cfg.get("logger") or {}).values()
        if lg
    ]
    trainer: L.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    out = Path(HydraConfig.get().runtime.output_dir)
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            if purge:
                after_earlier_event_files(Path(logger.log_dir))
            logger.log_hyperparams(flat_hparams(cfg), {"hp_metric": -1.0})
            print(f"TensorBoard logs: {logger.log_dir}    (tensorboard --logdir {out})")
        else:  # MLflow, CSV: the whole config as parameters, so runs compare by any setting
            logger.log_hyperparams(flat_hparams(cfg))
    with interrupts_of(trainer), warnings.catch_warnings():
        if cfg.ckpt_path:  # a resumed run goes on in its own checkpoint folder: that it holds checkpoints is the point
            warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    checkpoint = trainer.checkpoint_callback
    best = getattr(checkpoint, "best_model_path", "") if checkpoint else ""
    if cfg.validate_best and best:
        with interrupts_of(trainer):
            validated = trainer.validate(model, datamodule=datamodule, ckpt_path=best, verbose=False)
        metrics.update({k: float(v) for k, v in validated[0].items()})
    best_epoch = None
    if best:
        best_epoch = int(torch.load(best, map_location="cpu", weights_only=True, mmap=True)["epoch"])
    return {"metrics": metrics, "best_ckpt": best, "best_epoch": best_epoch, "skipped_tiles": model.skipped_tiles}


def hold_named_run_folder(argv: list[str], held: contextlib.ExitStack) -> None:
    """Lock (into ``held``) the existing folder a single run's command line names (``resume=``,
    ``hydra.run.dir=``), then check that a ``resume=`` names a run to resume: before Hydra writes its
    record there, so a refused run leaves the folder untouched. A folder in use is said first."""
    if "-m" in argv or "--multirun" in argv:
        return
    for arg in argv:
        key, _, value = arg.partition("=")
        value = value.strip("'\"")
        if key not in ("resume", "hydra.run.dir") or value in ("", "null"):
            continue
        folder = Path(value).resolve()
        if folder.is_dir():
            held.enter_context(run_folder_lock(folder))
        if key == "resume":
            check_run_folder(folder)


def run_folder_lock(folder: Path) -> contextlib.AbstractContextManager[None]:
    """The lock of a run folder for the run's life (:func:`livedead.files.folder_lock`), taken by rank 0 only:
    the other ranks of a DDP run write into the folder their rank 0 holds."""
    return folder_lock(folder) if rank_zero_only.rank == 0 else contextlib.nullcontext()


def run(cfg: DictConfig) -> float | None:
    """One job, in its folder held for the job's life: two runs never mix their files in one folder."""
    with run_folder_lock(Path(HydraConfig.get().runtime.output_dir)), lightning_logged_to_file():
        return job(cfg)


def resumed(run_folder: Path, out: Path, record: str) -> DictConfig:
    """:func:`resume_config`; a refused resume removes this session's Hydra record (``record``): it leaves nothing."""
    try:
        return resume_config(run_folder)
    except LivedeadError:
        if record != ".hydra":
            shutil.rmtree(out / record, ignore_errors=True)
        raise


def interrupted(out: Path, multirun: bool) -> str:
    """What a training that Ctrl-C stopped kept, and how to go on: its checkpoints are whole (atomic saves)."""
    latest = latest_checkpoint(out)
    if latest is None:
        return f"no checkpoint written yet in {out}"
    again = f"resume_sweep={out.parent}" if multirun else f"resume={out}"
    return (
        f"kept the checkpoints in {out / 'checkpoints'} (the furthest: {latest.name}, step "
        f"{checkpoint_step(str(latest))}); continue with {again}"
    )


def _previous_result(path: Path) -> dict[str, Any]:
    """What an earlier session of this job recorded; a file that cannot be read (cut off by a kill) is
    no record, said in one line, and the job runs again."""
    if not path.exists():
        return {}
    previous, problem = read_result(path)
    if previous is None:
        print(f"train.py: {path} cannot be read: {problem}: the job runs again")
        return {}
    return previous


def job(cfg: DictConfig) -> float | None:
    """One job: check the config, fit, and record ``result.json``; returns the optimised metric."""
    hc = HydraConfig.get()
    out = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    if cfg.get("resume"):
        cfg = resumed(Path(cfg.resume), out, str(hc.output_subdir))
    elif multirun and hc.output_subdir != ".hydra":  # a sweep job run again in its own folder
        previous = _previous_result(out / "result.json")
        if previous.get("status") in ("ok", "diverged"):
            print(f"train.py: job {out.name} finished before ({previous['status']}): kept")
            return previous.get("value") if previous["status"] == "ok" else math.nan
        if latest_checkpoint(out) is not None:
            print(f"train.py: job {out.name} was cut off: resuming it from its latest checkpoint")
            cfg = resumed(out, out, str(hc.output_subdir))
    result: dict[str, Any] = {
        "job": out.name,
        "overrides": ",".join(hc.overrides.task),
        "metric": cfg.optimized_metric,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "pid": os.getpid(),
    }
    start = time.perf_counter()
    try:
        schema.check_targets(cfg)  # types of the trainer's, datamodule's, network's... keys: before any data
        check(cfg)
        result.update(fit(cfg))
        value = result["metrics"].get(cfg.optimized_metric)
        result.update(status="ok", value=value)
    except KeyboardInterrupt:  # Ctrl-C: recorded, so a rerun sweep resumes the job; the command exits 130
        result.update(status="interrupted", value=None)
        raise Interrupted(interrupted(out, multirun)) from None
    except Diverged as err:
        result.update(status="diverged", value=None, error=str(err), diverged_step=err.step)
        if not multirun:
            raise LivedeadError(f"{out}: training diverged: {err} (a lower model.optimizer.lr?)") from None
        print(f"train.py: job {out.name} diverged: {err}")
        value = math.nan
    except Exception as caught:
        err = caught
        if is_disk_full(caught) and not isinstance(caught, LivedeadError):  # a checkpoint, an event file, a log
            err = LivedeadError(
                f"{out}: no room to write the run's files ({no_room(caught)}); the files before are kept"
            )
        message = one_line(err) if isinstance(err, LivedeadError) else f"{type(err).__name__}: {err}"
        result.update(status="failed", value=None, error=message.strip().splitlines()[0])
        with contextlib.suppress(OSError):  # (a full disk may refuse the traceback too)
            (out / "error.log").write_text(traceback.format_exc())
        if not multirun:
            raise err from None
        print(f"train.py: job {out.name} failed: {result['error']} (traceback in {out / 'error.log'})")
        value = math.nan
    finally:
        result["wall_s"] = round(time.perf_counter() - start, 1)
        try:
            with atomic_path(out / "result.json") as tmp:
                tmp.write_text(json.dumps(result, indent=2, default=str))
        except LivedeadError as err:  # the disk is full: the error that filled it is the one to report
            print(f"{PROG}: {one_line(err)}", file=sys.stderr)
    return value
