"""The package's training callbacks: exact resumes (:class:`ExactResume`, :class:`StepCheckpoint`), and on
the CPU, freed memory kept for the next step (:class:`KeepFreedMemory`).

Each training step allocates and frees its activations; by default glibc maps such large
blocks afresh every step and the kernel zeroes their pages on first touch: system time was 32%
of a step's CPU time on the CPU U-Net with batches of 25 (``benchmarks/cpu_step.py``). With
freed memory kept (:func:`livedead.allocator.keep_freed_memory`) the step ran 1.5x as fast
(2.1x with channels-last too). A training process reaches its peak heap on its first step anyway.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info

from livedead.allocator import keep_freed_memory
from livedead.model.checkpoint import CheckpointRecord


class KeepFreedMemory(L.Callback):
    """On a CPU run, :func:`keep_freed_memory` before the first step (``callbacks.cpu_memory``)."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if trainer.strategy.root_device.type == "cpu" and keep_freed_memory():
            rank_zero_info("livedead: CPU run: freed memory is kept for the next step (no mmap per batch)")


class ExactResume(L.Callback):
    """A run resumed from any of its checkpoints goes on as the uninterrupted run would: same steps, same logs.

    Lightning restores the weights, optimizer, schedulers, loop progress and (through the train
    loader's ``state_dict``) the position in the epoch; this adds what it leaves out:

    - the random state (dropout draws from it), put back at the first batch of a resumed run:
      restoring it earlier would let the sanity check's and the data loaders' draws shift it;
    - the metrics of the step a step checkpoint is saved at. Lightning saves it at the end of a
      training batch, before it hands that step's metrics to the loggers, and the resumed run starts
      at the next batch: without this record a kill between the save and the logging would leave
      that step missing from TensorBoard for good. What TensorBoard has so far is flushed with
      every checkpoint, so a resumed run loses none of the steps before it (the later ones it
      purges and logs again, see :func:`first_unsaved_step`);
    - an epoch scheduler step that Lightning skips after a resume. It does not step epoch-interval
      schedulers at the end of the epoch a run restarted in (it has not saved the metrics a plateau
      scheduler needs), nor for the epoch a checkpoint saved at validation was in, so a resumed
      run would keep its learning rate an epoch too long. Each epoch begins with as many steps as
      epochs done; a missing one is made, with the last validation's metrics (the checkpoint's
      ``livedead.validated``).

    :class:`livedead.model.module.LiveDeadModule` brings it (``configure_callbacks``).
    """

    def __init__(self) -> None:
        self._rng: dict[str, Any] | None = None
        self._unlogged: dict[str, Any] | None = None
        self._validated: dict[str, float] = {}

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.flush()
        unlogged = unlogged_step_metrics(trainer, checkpoint)
        if unlogged:
            checkpoint[UNLOGGED] = unlogged
        checkpoint[RNG] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            checkpoint[RNG]["cuda"] = torch.cuda.get_rng_state_all()

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        self._rng = checkpoint.get(RNG)
        self._unlogged = checkpoint.get(UNLOGGED)
        record = CheckpointRecord.of(checkpoint)
        self._validated = dict(record.validated) if record is not None else {}

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch
        metrics = {**self._validated, **{k: float(v) for k, v in trainer.callback_metrics.items()}}
        for config in trainer.lr_scheduler_configs:
            if config.interval != "epoch" or config.frequency != 1:
                continue
            if getattr(config.scheduler, "last_epoch", epoch) >= epoch:
                continue
            if not config.reduce_on_plateau:
                pl_module.lr_scheduler_step(config.scheduler, None)
            elif config.monitor in metrics:
                pl_module.lr_scheduler_step(config.scheduler, metrics[config.monitor])

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        unlogged, self._unlogged = self._unlogged, None
        if unlogged:
            for logger in trainer.loggers:
                logger.log_metrics(unlogged["metrics"], step=unlogged["step"])
        rng, self._rng = self._rng, None
        if rng:
            torch.set_rng_state(rng["torch"])
            if "cuda" in rng and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(rng["cuda"])


class StepCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint(every_n_train_steps=N)`` that saves no step checkpoint at an epoch's last batch.

    There ``last.ckpt`` follows, once the epoch is validated; a step checkpoint saved before that
    validation resumes wrongly: Lightning counts its epoch as done and never validates it (the best
    checkpoint, a plateau scheduler and ``last.ckpt`` miss that epoch). A run killed while
    validating resumes instead from the step checkpoint before, and does the epoch's last batches again.
    """

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)


RNG, UNLOGGED = "livedead_rng", "livedead_unlogged"
"""The checkpoint keys :class:`ExactResume` writes."""


def unlogged_step_metrics(trainer: L.Trainer, checkpoint: dict[str, Any]) -> dict[str, Any] | None:
    """The step's metrics, when a checkpoint is saved at the end of a training batch whose metrics are logged.

    The step is the fit loop's count of batches that stepped, as the checkpoint records it
    (Lightning logs a training step at it). The metrics are those Lightning will log for the step:
    the module logs its step metrics with ``on_step`` and ``on_epoch``, which Lightning names
    ``<name>_step``; it adds ``epoch``.
    """
    if not trainer.training or not trainer.loggers:
        return None
    progress = trainer.fit_loop.epoch_loop.batch_progress.current
    if progress.processed <= progress.completed:
        return None  # not inside a batch's end
    step = int(checkpoint["loops"]["fit_loop"]["epoch_loop.state_dict"]["_batches_that_stepped"])
    if (step + 1) % trainer.log_every_n_steps and not trainer.should_stop and not trainer.fast_dev_run:
        return None  # not a step whose metrics are logged
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.endswith("_step")}
    return {"step": step, "metrics": {**metrics, "epoch": float(trainer.current_epoch)}}


def first_unsaved_step(checkpoint: dict[str, Any]) -> int:
    """The first logged step that a run resumed from this checkpoint logs (again): its global step, or the
    step whose metrics the checkpoint carries because it was saved before they were logged."""
    unlogged = checkpoint.get(UNLOGGED)
    return int(unlogged["step"]) if unlogged else int(checkpoint.get("global_step", 0))
