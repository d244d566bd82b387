"""Benchmark: whole-well prediction against MONAI's ``sliding_window_inference``, and in bands against whole.

Predicts one 2700x3600 synthetic transmitted-light image with the same trained model three ways:
MONAI (160 px windows, overlap 0.5, Gaussian), this project's default (the same settings), and
this project's large-window option (480 px windows, 32 px margins cropped off). Ours runs the
network in channels-last memory format; MONAI is timed as a user calls it (the network in its
default layout) and, for transparency, with the same channels-last network. Prints seconds,
the speed ratio, the fraction of pixels whose argmax agrees with MONAI's, and peak memory.

Then the whole command, ``livedead.predict`` on the same image as a TIFF, twice, each in a process of
its own: in memory (``band_px=null``) and lazily in bands of ``--band-px`` pixels (the TIFF read a band
at a time). Prints each one's wall time (interpreter start included, the same for both), the speed
ratio in memory / lazy, each process's peak resident memory (``wait4``'s ``ru_maxrss``, read by a small
process that starts it), and whether their counts and class maps agree.

    python benchmarks/predict.py [--ckpt PATH] [--batch 16] [--band-px 4000000]

Without ``--ckpt`` it trains the CPU U-Net (conf/model/unet_small.yaml) for two epochs on a small
synthetic plate first, so the agreement is measured on a model that has learnt something.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import lightning as L
import numpy as np
import tifffile
import torch
from _common import RssSampler
from monai.inferers import sliding_window_inference

from livedead.config.training import training_data
from livedead.data.datamodule import TileDataModule
from livedead.data.preparation import prepare_synthetic
from livedead.inference.sliding_window import load_model, predict_image
from livedead.model.module import LiveDeadModule
from livedead.model.unet import UNet
from livedead.plates.synthetic import PlateSpec, render_image, simulate_well


def train_small(tmp: Path) -> Path:
    tiles = prepare_synthetic(tmp / "tiles.h5", {"wells": 4, "timepoints": 3, "height": 480, "width": 640}, False)
    torch.manual_seed(0)
    net = UNet(base_channels=8, depth=3, batch_norm=True)
    module = LiveDeadModule(net=net, optimizer=partial(torch.optim.SGD, lr=0.05, momentum=0.9, nesterov=True),
                            overlay_tiles=0)  # fmt: skip
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp)  # fmt: skip
    datamodule = TileDataModule(tiles, batch_size=50, num_workers=0)
    datamodule.setup("fit")
    module.use_data(training_data(datamodule, 0))
    trainer.fit(module, datamodule=datamodule)
    ckpt = tmp / "small.ckpt"
    trainer.save_checkpoint(ckpt)
    return ckpt


def timed(fn):
    with RssSampler() as rss:
        start = time.perf_counter()
        out = fn()
        seconds = time.perf_counter() - start
    return out, seconds, rss.growth


MEASURED = (
    "import os, subprocess, sys; child = subprocess.Popen(sys.argv[2:], stdout=subprocess.DEVNULL); "
    "_, status, usage = os.wait4(child.pid, 0); open(sys.argv[1], 'w').write(str(usage.ru_maxrss)); "
    "sys.exit(os.waitstatus_to_exitcode(status))"
)
"""Run argv[2:] and write its peak resident memory (kB) to argv[1]. Started from this process instead, a
command's ``ru_maxrss`` would be at least this process's peak (MONAI's and our predictions): a child's
includes the memory map it had before ``exec``, its parent's."""


def predict_process(ckpt: Path, folder: Path, out: Path, band_px: str) -> tuple[float, float]:
    """``livedead.predict`` in a process of its own: its wall time (s) and peak resident memory (MB)."""
    args = [sys.executable, "-m", "livedead.predict", f"ckpt={ckpt}", f"input={folder}", f"output={out}",
            "channels=[brightfield]", f"band_px={band_px}", "progress=false"]  # fmt: skip
    peak = out.with_name(f"{out.name}.peak_kb")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", MEASURED, str(peak), *args], stderr=subprocess.PIPE)
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"livedead.predict band_px={band_px} failed: {proc.stderr.decode()[-2000:]}")
    return seconds, int(peak.read_text()) / 1024  # kB on Linux


def lazy_vs_in_memory(ckpt: Path, image: np.ndarray, tmp: Path, band_px: int) -> dict[str, float]:
    """The whole command on one image, in memory and in bands; their counts and class maps must agree."""
    folder = tmp / "tiff"
    folder.mkdir()
    tifffile.imwrite(folder / "A1_t000.tif", image, photometric="minisblack")
    runs = {}
    for name, setting in (("in_memory", "null"), ("lazy", str(band_px))):
        runs[name] = predict_process(ckpt, folder, tmp / name, setting)
    with open(tmp / "in_memory" / "counts.csv") as a, open(tmp / "lazy" / "counts.csv") as b:
        same_counts = list(csv.DictReader(a)) == list(csv.DictReader(b))
    maps = [tifffile.imread(tmp / name / "A1_t000_classes.tif") for name in runs]
    (t_mem, peak_mem), (t_lazy, peak_lazy) = runs["in_memory"], runs["lazy"]
    return {"t_mem": t_mem, "t_lazy": t_lazy, "peak_mem": peak_mem, "peak_lazy": peak_lazy,
            "same": float(same_counts and np.array_equal(*maps))}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", type=Path)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--band-px", type=int, default=4_000_000, help="pixels a band holds, for the lazy run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = args.ckpt or train_small(Path(tmp))
        model = load_model(ckpt)
        spec = PlateSpec(wells=1, timepoints=1, height=2700, width=3600, seed=1)
        image = render_image(spec, next(simulate_well(spec, 0)), 0, 0)[0][0]

        def monai() -> np.ndarray:
            x = model.normalize(image)[None, None]
            with torch.no_grad():
                out = sliding_window_inference(x, (160, 160), args.batch, lambda b: model.net(b).softmax(1),
                                               overlap=0.5, mode="gaussian")  # fmt: skip
            return out[0].numpy()

        def monai_channels_last() -> np.ndarray:  # the same network layout as ours, for transparency
            x = model.normalize(image)[None, None]
            with torch.no_grad():
                out = sliding_window_inference(
                    x, (160, 160), args.batch,
                    lambda b: model.net(b.contiguous(memory_format=torch.channels_last)).softmax(1),
                    overlap=0.5, mode="gaussian",
                )  # fmt: skip
            return out[0].numpy()

        ours = partial(predict_image, model, image, batch_size=args.batch)
        predict_image(model, image[:640, :640], batch_size=args.batch)  # warm-up
        model.net.to(memory_format=torch.contiguous_format)  # MONAI as a user calls it: a default-layout network
        ref, t_monai, m_monai = timed(monai)
        model.net.to(memory_format=torch.channels_last)
        _, t_monai_cl, m_monai_cl = timed(monai_channels_last)
        default, t_default, m_default = timed(ours)
        large, t_large, m_large = timed(partial(ours, mode="crop", window=480, margin=32))
        lazy = lazy_vs_in_memory(ckpt, image, Path(tmp), args.band_px)
    ref_class = ref.argmax(0)
    agree = float((default.argmax(0) == ref_class).mean())
    large_agree = float((large.argmax(0) == ref_class).mean())
    print(f"image 2700x3600, U-Net {model.net.config['base_channels']}x{model.net.config['depth']}, "
          f"{torch.get_num_threads()} CPU threads, batches of {args.batch} windows")  # fmt: skip
    rows = [
        ("MONAI sliding_window_inference (160, overlap 0.5, gaussian)", t_monai, m_monai, None),
        ("  the same, the network in channels-last format", t_monai_cl, m_monai_cl, None),
        ("livedead blend (160, overlap 0.5, gaussian)", t_default, m_default, agree),
        ("livedead crop (480 windows, 32 px margins)", t_large, m_large, large_agree),
    ]
    for name, seconds, memory, agreement in rows:
        extra = f", speed x{t_monai / seconds:.2f}, argmax agreement {agreement:.4f}" if agreement is not None else ""
        print(f"{name:<62} {seconds:6.2f} s, peak +{memory / 1e6:.0f} MB{extra}")
    rows_per_band = min(image.shape[0], args.band_px // image.shape[1])
    print(f"livedead.predict in memory (band_px=null)                       {lazy['t_mem']:6.2f} s, "
          f"peak {lazy['peak_mem']:.0f} MB")  # fmt: skip
    print(f"livedead.predict lazily, bands of {rows_per_band} rows (band_px={args.band_px})      "
          f"{lazy['t_lazy']:6.2f} s, peak {lazy['peak_lazy']:.0f} MB, counts and class map "
          f"{'the same' if lazy['same'] else 'DIFFERENT'}")  # fmt: skip
    print(
        f"RESULT speed_vs_monai={t_monai / t_default:.2f} agreement={agree:.4f} "
        f"large_speed_vs_monai={t_monai / t_large:.2f} large_agreement={large_agree:.4f} "
        f"lazy_vs_in_memory={lazy['t_mem'] / lazy['t_lazy']:.2f} lazy_peak_mb={lazy['peak_lazy']:.0f} "
        f"in_memory_peak_mb={lazy['peak_mem']:.0f} lazy_same={int(lazy['same'])}"
    )


if __name__ == "__main__":
    main()
