"""Benchmark: whole-well prediction against MONAI's ``sliding_window_inference``.

Predicts one 2700x3600 synthetic transmitted-light image with the same trained model three ways:
MONAI (160 px windows, overlap 0.5, Gaussian), this project's default (the same settings), and
this project's large-window option (480 px windows, 32 px margins cropped off). Ours runs the
network in channels-last memory format; MONAI is timed as a user calls it (the network in its
default layout) and, for transparency, with the same channels-last network. Prints seconds,
the speed ratio, the fraction of pixels whose argmax agrees with MONAI's, and peak memory.

    python benchmarks/predict.py [--ckpt PATH] [--batch 16]

Without ``--ckpt`` it trains the CPU U-Net (conf/model/unet_small.yaml) for two epochs on a small
synthetic plate first, so the agreement is measured on a model that has learnt something.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from functools import partial
from pathlib import Path

import lightning as L
import numpy as np
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", type=Path)
    parser.add_argument("--batch", type=int, default=16)
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
    print(
        f"RESULT speed_vs_monai={t_monai / t_default:.2f} agreement={agree:.4f} "
        f"large_speed_vs_monai={t_monai / t_large:.2f} large_agreement={large_agree:.4f}"
    )


if __name__ == "__main__":
    main()
