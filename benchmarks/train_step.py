"""Benchmark: what Lightning, logging and metrics cost next to a bare PyTorch loop.

Trains the same small U-Net on the same tiles for the same number of steps twice, under
:class:`livedead.model.module.LiveDeadModule` in a real ``Trainer`` (TensorBoard logger, progress
bar) and in a bare loop, timing the steps after a warm-up. Then times one validation epoch
with the module's metrics, PR curves, overlays and confusion image, and with the loss alone.

    python benchmarks/train_step.py [--steps 20 --base 16]

Prints ``RESULT lightning_vs_bare=<samples/s ratio> val_metrics_overhead=<extra fraction>``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from functools import partial
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger

from livedead.config.training import training_data
from livedead.data.datamodule import TileDataModule
from livedead.data.preparation import PrepareConfig, prepare
from livedead.data.transforms import dihedral_augment
from livedead.model.module import LiveDeadModule, class_weights
from livedead.model.unet import UNet
from livedead.plates.synthetic import PlateSpec, generate_plate

WARMUP = 3


class StepTimer(L.Callback):
    """Wall time from the first step after warm-up to the end of the last one."""

    def __init__(self) -> None:
        self.start = self.end = 0.0
        self.samples = 0

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if trainer.global_step == WARMUP:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if trainer.global_step > WARMUP:
            self.samples += len(batch["label"])
            self.end = time.perf_counter()


class LossOnly(LiveDeadModule):
    """The baseline validation: the loss, no metrics, no images."""

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", self._loss(self(batch["image"]), batch["label"]), batch_size=len(batch["label"]))

    def on_validation_epoch_end(self) -> None:
        pass


def module(cls: type[LiveDeadModule], base: int) -> LiveDeadModule:
    torch.manual_seed(0)
    net = UNet(base_channels=base, depth=3, batch_norm=True)  # conf/model/unet_small.yaml's network
    return cls(net=net, optimizer=partial(torch.optim.SGD, lr=0.01, momentum=0.9))


def datamodule(path: Path) -> TileDataModule:
    return TileDataModule(path, batch_size=100, num_workers=0, augment=True)


def with_data(mod: LiveDeadModule, dm: TileDataModule) -> LiveDeadModule:
    """The module with its class weights, overlay tiles and normalisation, as a run hands them over."""
    dm.setup("fit")
    mod.use_data(training_data(dm, mod.hparams.overlay_tiles))
    return mod


def lightning_rate(path: Path, root: Path, steps: int, base: int) -> float:
    timer = StepTimer()
    trainer = L.Trainer(
        default_root_dir=root,
        max_steps=WARMUP + steps,
        accelerator="cpu",
        logger=TensorBoardLogger(root, name="bench"),
        callbacks=[timer],
        limit_val_batches=0,
        enable_checkpointing=False,
        enable_model_summary=False,
        log_every_n_steps=1,
    )
    dm = datamodule(path)
    trainer.fit(with_data(module(LiveDeadModule, base), dm), datamodule=dm)
    return timer.samples / (timer.end - timer.start)


def bare_rate(path: Path, steps: int, base: int) -> float:
    dm = datamodule(path)
    dm.setup("fit")
    net = module(LiveDeadModule, base).net
    weight = class_weights(dm.train_class_counts, "inverse")
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    done = samples = 0
    start = 0.0
    while done < WARMUP + steps:
        for batch in dm.train_dataloader():
            if done == WARMUP:
                start = time.perf_counter()
            image = dm.on_after_batch_transfer(batch, 0)["image"]
            image, label = dihedral_augment(image, batch["label"])  # as the Trainer's training batches are
            loss = F.cross_entropy(net(image), label.long(), weight=weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
            done += 1
            if done > WARMUP:
                samples += len(label)
            if done == WARMUP + steps:
                break
    return samples / (time.perf_counter() - start)


def validation_seconds(path: Path, root: Path, cls: type[LiveDeadModule], base: int) -> float:
    trainer = L.Trainer(
        default_root_dir=root,
        accelerator="cpu",
        logger=TensorBoardLogger(root, name=cls.__name__),
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    dm = datamodule(path)
    mod = with_data(module(cls, base), dm)
    trainer.validate(mod, datamodule=dm, verbose=False)  # warm-up
    start = time.perf_counter()
    trainer.validate(mod, datamodule=dm, verbose=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--base", type=int, default=8, help="U-Net base channels (depth 3)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        plate = generate_plate(tmp / "plate.h5", PlateSpec(wells=4, timepoints=6), progress=False)
        tiles = tmp / "tiles.h5"
        prepare(plate, tiles, PrepareConfig(progress=False))
        bare = bare_rate(tiles, args.steps, args.base)
        light = lightning_rate(tiles, tmp, args.steps, args.base)
        with_metrics = validation_seconds(tiles, tmp, LiveDeadModule, args.base)
        loss_only = validation_seconds(tiles, tmp, LossOnly, args.base)
    print(
        f"U-Net base {args.base} depth 3, batches of 100 tiles of 160x160, "
        f"{args.steps} timed steps after {WARMUP} warm-up"
    )
    print(f"bare PyTorch loop:        {bare:7.1f} samples/s")
    print(f"LiveDeadModule + Trainer: {light:7.1f} samples/s")
    print(f"validation epoch: {with_metrics:.2f} s with metrics, PR curves and images; {loss_only:.2f} s loss only")
    print(f"RESULT lightning_vs_bare={light / bare:.3f} val_metrics_overhead={with_metrics / loss_only - 1:.3f}")


if __name__ == "__main__":
    main()
