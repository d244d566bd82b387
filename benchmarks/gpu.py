"""Benchmark: the study's full U-Net on one CUDA GPU, as ``python train.py experiment=paper`` trains it.

The network of ``conf/model/unet.yaml`` (31,030,723 weights), batches of 100 tiles of 160x160,
bf16-mixed precision, channels-last, SGD with momentum, the real ``Trainer`` and datamodule on a
synthetic tile file; first in eager mode, then under ``torch.compile``. For each it prints:

* training tiles/s over ``--steps`` steps after ``--warmup`` steps (the compile happens there);
* validation tiles/s over the validation split, with every metric of a real run, after a warm-up;
* the peak GPU memory that PyTorch allocated.

Then the whole-image prediction time of one 2700x3600 image (160 px windows, overlap 0.5,
Gaussian blend, the eager network). The study trained at about 486 tiles/s per model.

    python benchmarks/gpu.py [--steps 100 --warmup 20 --batch 100 --workers 4]
    python benchmarks/gpu.py --accelerator cpu --base 8 --steps 3 --warmup 1 --batch 25   # a smoke run

Prints ``RESULT train_tiles_per_s=... compiled_train_tiles_per_s=... val_tiles_per_s=...
peak_gpu_gb=... predict_2700x3600_s=... vs_study=...``. ``benchmarks/gpu.sh`` runs it on a
machine whose Python already has PyTorch with CUDA, without installing anything.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from functools import partial
from pathlib import Path

import lightning as L
import torch

from livedead.config.training import training_data
from livedead.data.datamodule import TileDataModule
from livedead.data.preparation import prepare_synthetic
from livedead.inference.sliding_window import load_model, predict_image
from livedead.model.module import LiveDeadModule
from livedead.model.unet import UNet
from livedead.plates.synthetic import PlateSpec, render_image, simulate_well

STUDY_TILES_PER_S = 486.0
PLATE = {"wells": 4, "timepoints": 6, "height": 1080, "width": 1440}  # about 5,000 tiles


def sync() -> None:
    """Wait for the GPU's queued work, so that the wall clock times it (nothing to wait for on a CPU)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class StepTimer(L.Callback):
    """Training tiles/s from the end of the warm-up steps to the end of the last step, synchronised."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.start = self.end = 0.0
        self.tiles = 0

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if trainer.global_step < self.warmup:
            return
        sync()
        if trainer.global_step == self.warmup:
            self.start = time.perf_counter()
        else:
            self.tiles += len(batch["label"])
            self.end = time.perf_counter()

    @property
    def rate(self) -> float:
        return self.tiles / (self.end - self.start)


def network(compiled: bool, base: int) -> LiveDeadModule:
    torch.manual_seed(0)
    return LiveDeadModule(
        net=UNet(base_channels=base),  # the study's with base 64: depth 4, no batch norm
        optimizer=partial(torch.optim.SGD, lr=0.01, momentum=0.9, nesterov=True),
        channels_last=True,
        compile=compiled,
        overlay_tiles=8,
    )


def trainer(root: Path, accelerator: str, **settings: object) -> L.Trainer:
    return L.Trainer(
        default_root_dir=root,
        accelerator=accelerator,
        devices=1,
        precision="bf16-mixed",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **settings,
    )


def measure(tiles: Path, root: Path, args: argparse.Namespace, compiled: bool) -> dict[str, float]:
    """Training and validation rates and peak memory of one configuration."""
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    dm = TileDataModule(tiles, batch_size=args.batch, num_workers=args.workers)
    module, timer = network(compiled, args.base), StepTimer(args.warmup)
    dm.setup("fit")
    module.use_data(training_data(dm, module.hparams.overlay_tiles))
    fit = trainer(
        root, args.accelerator, max_steps=args.warmup + args.steps, limit_val_batches=0, num_sanity_val_steps=0,
        callbacks=[timer],
    )  # fmt: skip
    fit.fit(module, datamodule=dm)
    check = trainer(root, args.accelerator)
    check.validate(module, datamodule=dm, verbose=False)  # warm-up (and, compiled, the eval graphs)
    sync()
    start = time.perf_counter()
    check.validate(module, datamodule=dm, verbose=False)
    sync()
    seconds = time.perf_counter() - start
    n_val = sum(b - a for a, b in dm.info.val_ranges)
    if not compiled:
        fit.save_checkpoint(root / "eager.ckpt")
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
    return {"train": timer.rate, "val": n_val / seconds, "peak": peak}


def predict_seconds(ckpt: Path, batch: int, size: tuple[int, int]) -> float:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_model(ckpt, device=device)
    spec = PlateSpec(wells=1, timepoints=1, height=size[0], width=size[1], seed=1)
    image = render_image(spec, next(simulate_well(spec, 0)), 0, 0)[0][0]
    predict_image(model, image[:640, :640], batch_size=batch, device=device)  # warm-up
    sync()
    start = time.perf_counter()
    predict_image(model, image, batch_size=batch, device=device)
    sync()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--workers", type=int, default=4, help="DataLoader workers")
    parser.add_argument("--base", type=int, default=64, help="U-Net base channels (64: the study's)")
    parser.add_argument("--accelerator", default="gpu", help="gpu; cpu only for a smoke run of this script")
    parser.add_argument("--predict-size", type=int, nargs=2, default=(2700, 3600), metavar=("H", "W"))
    args = parser.parse_args()
    if args.accelerator == "gpu" and not torch.cuda.is_available():
        raise SystemExit("benchmarks/gpu.py: expected a CUDA GPU, found none (torch.cuda.is_available() is False)")
    torch.backends.cudnn.benchmark = True
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tiles = prepare_synthetic(root / "tiles.h5", PLATE, progress=False)
        eager = measure(tiles, root, args, compiled=False)
        compiled = measure(tiles, root, args, compiled=True)
        predict = predict_seconds(root / "eager.ckpt", args.batch, args.predict_size)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    print(f"{device}, torch {torch.__version__}, U-Net base {args.base} depth 4, batches of {args.batch}, "
          f"bf16-mixed, channels-last")  # fmt: skip
    for name, r in (("eager", eager), ("torch.compile", compiled)):
        print(f"{name:<14} train {r['train']:8,.0f} tiles/s   validate {r['val']:8,.0f} tiles/s   "
              f"peak GPU memory {r['peak']:5.1f} GiB")  # fmt: skip
    h, w = args.predict_size
    print(f"predict one {h}x{w} image: {predict:.2f} s (160 px windows, overlap 0.5, gaussian)")
    print(
        f"RESULT train_tiles_per_s={eager['train']:.0f} compiled_train_tiles_per_s={compiled['train']:.0f} "
        f"val_tiles_per_s={eager['val']:.0f} compiled_val_tiles_per_s={compiled['val']:.0f} "
        f"peak_gpu_gb={max(eager['peak'], compiled['peak']):.1f} predict_{h}x{w}_s={predict:.2f} "
        f"vs_study={max(eager['train'], compiled['train']) / STUDY_TILES_PER_S:.1f}"
    )


if __name__ == "__main__":
    main()
