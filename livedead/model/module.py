"""The LightningModule: weighted cross-entropy training of the U-Net, and what a run shows.

The optimizer and scheduler arrive as Hydra partials (``optimizer(params=...)``,
``scheduler(optimizer=...)``), so this module never names a concrete optimizer. Class weights
come from the training split's class counts, handed over in a :class:`TrainingData` record.

Validation logs, per class by name: ``val/pr_auc/<class>`` (binned over every pixel of the
epoch), ``val/precision/<class>``, ``val/recall``, ``val/f1``, ``val/iou``, the macro PR-AUC over
the two stains (``val/pr_auc/macro``, also the ``hp_metric``), and the losses. With a
TensorBoard logger it also writes PR curves per class, an overlay of fixed validation tiles
(true positives green, errors red for Cy5 and blue for DAPI), and a confusion matrix.

Each validation also calibrates counting: ``val/foreground_threshold`` is the P(nucleus) at which
the predicted foreground has the labelled area (:class:`livedead.model.metrics.AreaMatchedThreshold`);
checkpoints carry it, and ``livedead.predict`` counts nuclei above it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from torchmetrics.classification import MulticlassConfusionMatrix

from livedead import CLASS_NAMES
from livedead.errors import LivedeadError
from livedead.model.callbacks import ExactResume
from livedead.model.checkpoint import CheckpointRecord, load_matching_weights, net_spec
from livedead.model.metrics import AreaMatchedThreshold, BinnedPRCurve, argmax_classes, confusion_scores
from livedead.viz.figures import confusion_figure
from livedead.viz.overlays import overlay_grid

WEIGHT_MODES = ("none", "inverse", "median")


class Diverged(RuntimeError):
    """The training loss became NaN or infinite: the run stops at that step (``train.py`` records it as diverged)."""

    def __init__(self, step: int, loss: float) -> None:
        super().__init__(f"the training loss became {loss} at step {step}")
        self.step = step


def class_weights(counts: np.ndarray, mode: str | Sequence[float]) -> torch.Tensor:
    """Cross-entropy class weights from pixel counts per class.

    ``none``: all 1. ``inverse``: total / (classes * count), so every class carries equal total
    weight. ``median``: median frequency balancing (Eigen & Fergus), median(freq) / freq.
    A list: those weights. A class with no pixels gets weight 0.
    """
    counts = np.asarray(counts, np.float64)
    if not isinstance(mode, str):
        weights = np.asarray(list(mode), np.float64)
        if weights.shape != counts.shape or (weights < 0).any():
            raise LivedeadError(
                f"config key 'model.class_weights': expected {len(counts)} non-negative weights, found {list(mode)}"
            )
        return torch.tensor(weights, dtype=torch.float32)
    if mode not in WEIGHT_MODES:
        raise LivedeadError(
            f"config key 'model.class_weights': expected one of {WEIGHT_MODES} or a list, found {mode!r}"
        )
    present = counts > 0
    weights = np.zeros_like(counts)
    if mode == "none":
        weights[:] = 1.0
    elif mode == "inverse":
        weights[present] = counts.sum() / (len(counts) * counts[present])
    else:
        freq = counts / counts.sum()
        weights[present] = np.median(freq[present]) / freq[present]
    return torch.tensor(weights, dtype=torch.float32)


class NormalizationRecord(Protocol):
    """The data's normalisation record (:class:`livedead.data.transforms.Normalization`), as the module
    stores it: ``model`` does not import ``data``."""

    def to_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class TrainingData:
    """What the module needs of its training data, handed to :meth:`LiveDeadModule.use_data` once.

    A record rather than the datamodule itself, so that the module is built, trained and tested
    without one (``livedead.config.training.training_data`` makes it from a ``TileDataModule``).
    """

    source: str
    """What the data is (the tile file), for errors."""
    class_counts: np.ndarray
    """Pixels of each class over the training split: the class weights."""
    normalization: NormalizationRecord
    """How raw pixels become network input; checkpoints carry it so that inference does the same."""
    overlay_images: torch.Tensor | None = None
    """Fixed, normalised validation tiles shown every epoch (B, 1, H, W), and their labels (B, H, W)."""
    overlay_labels: torch.Tensor | None = None
    held_out_wells: tuple[str, ...] = ()
    """The wells of the validation split, recorded in checkpoints so that ``predict wells=held_out``
    needs no tile file."""
    pixel_size_um: float | None = None
    """The pixel size of the training images (None: unknown), recorded in checkpoints so that
    ``predict`` rescales images of another pixel size to it."""


class LiveDeadModule(L.LightningModule):
    """Train and validate a segmentation network on live/dead tiles.

    Args:
        net: the network (``livedead.model.unet.UNet``), logits (B, C, H, W) from images (B, 1, H, W).
        optimizer: ``partial`` taking ``params``.
        scheduler: ``partial`` taking ``optimizer``, or None.
        scheduler_config: Lightning's scheduler settings: ``interval``, ``frequency``, ``monitor``,
            and ``reduce_on_plateau: true`` for schedulers stepped with the monitored metric.
        class_weights: ``none``, ``inverse``, ``median`` or an explicit list.
        class_names: one name per class; metrics are logged under these names.
        pr_thresholds: score bins of the PR curves.
        overlay_tiles: validation tiles holding both stains, shown every epoch (0: none).
        init_from: checkpoint whose matching weights initialise the network (transfer learning).
        freeze_encoder: keep the contracting path fixed (with ``init_from``).
        channels_last: channels-last memory format (faster convolutions, on GPUs and on the CPU).
        compile: ``torch.compile`` the network.
        net_args: the arguments ``net`` was built with, recorded in checkpoints so that inference
            can rebuild it; taken from ``net.config`` when not given (``train.py`` passes those of
            ``model.net``).
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        scheduler_config: dict[str, Any] | None = None,
        class_weights: str | Sequence[float] = "inverse",
        class_names: Sequence[str] = CLASS_NAMES,
        pr_thresholds: int = 200,
        overlay_tiles: int = 8,
        init_from: str | None = None,
        freeze_encoder: bool = False,
        channels_last: bool = True,
        compile: bool = False,  # noqa: A002  (the config key model.compile)
        net_args: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        # the partials stay out of the checkpoint, which Lightning loads with weights_only=True
        # our own frame: see TileDataModule (Lightning's lookup of it keeps the caller's frames until a collection)
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"], logger=False, frame=inspect.currentframe())
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.net = net
        self.net_spec = net_spec(net, net_args)  # fails now, not at the first checkpoint, if it cannot be rebuilt
        self.class_names = list(class_names)
        n = len(self.class_names)
        self.register_buffer("class_weight", torch.ones(n))
        self.val_pr = BinnedPRCurve(n, pr_thresholds)
        # argmax_classes gives valid class indices: the format checks would only cost time
        self.val_confusion = MulticlassConfusionMatrix(n, validate_args=False)
        self.val_threshold = AreaMatchedThreshold(pr_thresholds)
        self.foreground_threshold: float | None = None  # counting's P(nucleus) threshold, from validation
        self._validated: dict[str, float] = {}  # the last validation's metrics of the checkpoint resumed from
        self.skipped_tiles = 0  # tiles of damaged chunks left out (data.on_bad_chunk=skip)
        self._skipped_reported = 0
        self.overlay_images: torch.Tensor | None = None
        self.overlay_labels: torch.Tensor | None = None
        self.normalization: NormalizationRecord | None = None  # how raw pixels became input, for inference
        self.held_out_wells: list[str] = []
        self.pixel_size_um: float | None = None
        if init_from:
            skipped = load_matching_weights(self.net, init_from)
            rank_zero_info(f"livedead: init_from {init_from}: skipped {len(skipped)} tensors: {', '.join(skipped)}")
        if freeze_encoder:
            for p in getattr(self.net, "encoder", self.net).parameters():
                p.requires_grad_(False)
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)

    # -- set-up ---------------------------------------------------------------------------
    def configure_model(self) -> None:
        if self.hparams.compile and not isinstance(self.net, torch._dynamo.eval_frame.OptimizedModule):
            self.net = torch.compile(self.net)

    def configure_callbacks(self) -> list[L.Callback]:
        """The module brings its own resume hooks, so every Trainer that fits it resumes exactly."""
        return [ExactResume()]

    def use_data(self, data: TrainingData) -> None:
        """Take what the module needs of its training data: class weights, overlay tiles, the normalisation."""
        counts = data.class_counts
        if len(counts) != len(self.class_names):
            raise LivedeadError(
                f"{data.source}: expected {len(self.class_names)} classes {self.class_names}, found {len(counts)}"
            )
        self.class_weight.copy_(class_weights(counts, self.hparams.class_weights))
        weights = ", ".join(f"{c} {w:.3g}" for c, w in zip(self.class_names, self.class_weight.tolist(), strict=True))
        rank_zero_info(f"livedead: class weights ({self.hparams.class_weights}): {weights}")
        self.overlay_images, self.overlay_labels = data.overlay_images, data.overlay_labels
        self.normalization = data.normalization
        self.held_out_wells = list(data.held_out_wells)
        self.pixel_size_um = data.pixel_size_um

    def on_fit_start(self) -> None:
        """Refuse a fit without :meth:`use_data`: it would train with weights of 1, show no overlays and
        write checkpoints without the normalisation that ``load_network`` requires."""
        if self.normalization is None:
            raise LivedeadError(
                "LiveDeadModule fitted without its training data: call module.use_data("
                "livedead.config.training.training_data(datamodule, overlay_tiles)) before fit"
            )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Everything inference needs besides the weights: classes, network, input normalisation, and the
        wells held out of training (``predict wells=held_out``) and the pixel size (``predict rescale``);
        written by the record's one owner."""
        CheckpointRecord(
            class_names=self.class_names,
            net=self.net_spec,
            normalization=self.normalization.to_dict() if self.normalization is not None else None,
            foreground_threshold=self.foreground_threshold,
            validated=self._last_validated(),
            held_out_wells=self.held_out_wells,
            pixel_size_um=self.pixel_size_um,
            skipped_tiles=self.skipped_tiles,
        ).save(checkpoint)

    def _last_validated(self) -> dict[str, float]:
        """This run's last validation metrics; before its first, those of the checkpoint it resumed from."""
        if self._trainer is None:
            return self._validated
        metrics = {k: float(v) for k, v in self.trainer.callback_metrics.items() if k.startswith("val/")}
        return metrics or self._validated

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A resumed run keeps what its last validation found: checkpoints saved before the next validation
        carry the counting threshold and metrics, not None and nothing (``ExactResume`` reads its own); and
        it counts on from the tiles of damaged chunks left out before it, already reported."""
        record = CheckpointRecord.of(checkpoint)
        if record is not None:
            self.foreground_threshold = record.foreground_threshold
            self._validated = dict(record.validated)
            self.skipped_tiles = self._skipped_reported = record.skipped_tiles

    def on_train_epoch_end(self) -> None:
        new = self.skipped_tiles - self._skipped_reported
        if new:
            self.print(f"livedead: epoch {self.current_epoch}: left out {new} tiles of damaged chunks")
            self._skipped_reported = self.skipped_tiles
        self.log("data/skipped_tiles", float(self.skipped_tiles))

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(params=[p for p in self.parameters() if p.requires_grad])
        if self.scheduler_factory is None:
            return optimizer
        scheduler = {"scheduler": self.scheduler_factory(optimizer=optimizer), "name": "lr"}
        scheduler.update(self.hparams.scheduler_config or {})
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    # -- steps ----------------------------------------------------------------------------
    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if self.hparams.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        return self.net(image)

    def _loss(self, logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), label.long(), weight=self.class_weight)

    def _skips(self, batch: dict[str, torch.Tensor]) -> bool:
        """A batch of a damaged chunk (``data.on_bad_chunk=skip``) holds no tiles: count it, and skip the step."""
        if "skipped" not in batch:
            return False
        self.skipped_tiles += int(batch["skipped"].sum())
        return True

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor | None:
        if self._skips(batch):
            return None
        loss = self._loss(self(batch["image"]), batch["label"])
        if not torch.isfinite(loss):  # the step after stops nothing: stop here, and say where
            raise Diverged(self.global_step, loss.detach().item())
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(batch["label"]))
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        if self._skips(batch):
            return
        logits = self(batch["image"]).float()
        label = batch["label"]
        loss = self._loss(logits, label)
        self.log("val/loss", loss, on_epoch=True, prog_bar=True, batch_size=len(label), sync_dist=True)
        probs = logits.softmax(dim=1)
        self.val_pr.update(probs, label)
        self.val_threshold.update(probs, label)
        self.val_confusion.update(argmax_classes(logits), label)

    def on_validation_epoch_end(self) -> None:
        ap = self.val_pr.compute()
        confusion = self.val_confusion.compute()
        scores = confusion_scores(confusion)
        for c, name in enumerate(self.class_names):
            if c == 0:
                continue
            self.log(f"val/pr_auc/{name}", ap[c])
            for key, values in scores.items():
                self.log(f"val/{key}/{name}", values[c])
        threshold = self.val_threshold.compute()
        self.foreground_threshold = float(threshold)
        self.log("val/foreground_threshold", threshold)
        macro = torch.nanmean(ap[1:])
        self.log("val/pr_auc/macro", macro, prog_bar=True)
        self.log("hp_metric", macro)
        if not self.trainer.sanity_checking:
            self._log_images(confusion)
        self.val_pr.reset()
        self.val_confusion.reset()
        self.val_threshold.reset()

    # -- images ---------------------------------------------------------------------------
    def _log_images(self, confusion: torch.Tensor) -> None:
        tb = next((lg for lg in self.loggers if isinstance(lg, TensorBoardLogger)), None)
        if tb is None or self.global_rank != 0:
            return
        writer, step = tb.experiment, self.current_epoch
        curves = self.val_pr.curves()
        for c, name in enumerate(self.class_names):
            if c == 0:
                continue
            writer.add_pr_curve_raw(
                f"pr_curve/{name}",
                *(curves[k][c].flip(0).cpu() for k in ("tp", "fp", "tn", "fn", "precision", "recall")),
                global_step=step,
                num_thresholds=self.hparams.pr_thresholds,
            )
        writer.add_figure("val/confusion", confusion_figure(confusion.cpu().numpy(), self.class_names), step)
        if self.overlay_images is not None:
            with torch.no_grad():
                pred = self(self.overlay_images.to(self.device)).argmax(1).cpu()
            grid = overlay_grid(self.overlay_images[:, 0], self.overlay_labels, pred)
            writer.add_image("val/overlay", grid, step, dataformats="HWC")
