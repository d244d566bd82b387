"""What the tests share besides fixtures (those are in ``tests/conftest.py``): the small plate's spec, a tiny module
and Trainer, the package's commands run as a user runs them, the real images of ``tests/data`` and how a figure's
pixels are read."""

from __future__ import annotations

import gc
import importlib
import io
import os
import subprocess
import sys
import weakref
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import tifffile
import torch
from hydra.core.global_hydra import GlobalHydra
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from matplotlib.colors import to_rgb
from PIL import Image
from scipy import ndimage
from skimage.transform import rescale

from livedead.config.training import training_data
from livedead.data.datamodule import TileDataModule
from livedead.data.preparation import PrepareConfig, prepare
from livedead.inference.predictor import PredictConfig
from livedead.inference.predictor import run as run_predict
from livedead.model.module import LiveDeadModule
from livedead.model.unet import UNet
from livedead.plates.omezarr import write_hcs
from livedead.plates.platefile import PLATE_CHANNELS, PlateAttrs, write_plate
from livedead.plates.sources import open_plate
from livedead.plates.synthetic import PlateSpec

ROOT = Path(__file__).resolve().parents[1]


SMALL = PlateSpec(wells=3, timepoints=3, height=256, width=320, seed=3)


NAMES = {"brightfield": "BF", "hoechst": "DAPI", "draq7": "Cy5"}
"""The plate's channels as a microscope names them in ``omero``."""


def to_zarr(plate_h5: Path, out: Path, version: str = "0.5", fields: int = 1) -> Path:
    """The synthetic plate as an OME-Zarr HCS plate, wells ``W01``... as row W: one field per well, or
    ``fields`` x ``fields`` overlapping crops of it translated to where they lie (exact crops)."""
    plate, _ = open_plate(plate_h5)
    assert plate.reader is not None
    h, w = plate.shape
    wells = {}
    for wi, name in enumerate(plate.wells):
        data = np.stack([np.stack([plate.reader((wi, t)).channels[c] for c in PLATE_CHANNELS]) for t in range(3)])
        if fields == 1:
            wells[name] = [(data, (0.0, 0.0))]
            continue
        size = (h // fields + 24, w // fields + 24)
        starts = [(r * (h - size[0]) // (fields - 1), c * (w - size[1]) // (fields - 1)) for r in range(fields)
                  for c in range(fields)]  # fmt: skip
        crops = [(data[..., y : y + size[0], x : x + size[1]], (y * 0.65, x * 0.65)) for y, x in starts[::-1]]
        wells[name] = crops  # listed in reverse: the grid is read off the translations, not the order
    return write_hcs(out, wells, [NAMES[c] for c in PLATE_CHANNELS], version, 0.65, 0.25)


def make_module(**kw) -> LiveDeadModule:
    """A tiny U-Net module with SGD and warm restarts, showing four overlay tiles."""
    args = dict(
        net=UNet(base_channels=4, depth=2),
        optimizer=partial(torch.optim.SGD, lr=0.05, momentum=0.9),
        scheduler=partial(torch.optim.lr_scheduler.CosineAnnealingWarmRestarts, T_0=2),
        scheduler_config={"interval": "epoch"},
        overlay_tiles=4,
    )
    return LiveDeadModule(**{**args, **kw})


def data_for(module: LiveDeadModule, tiles: Path, **kw: Any) -> TileDataModule:
    """A set-up datamodule of ``tiles`` (batches of 25 unless ``kw`` says otherwise) whose training data
    ``module`` has taken, as a run hands it over."""
    datamodule = TileDataModule(tiles, **{"batch_size": 25, "num_workers": 0, **kw})
    datamodule.setup("fit")
    module.use_data(training_data(datamodule, module.hparams.overlay_tiles))
    return datamodule


def make_trainer(root: Path, epochs: int, **kw) -> L.Trainer:
    """A real Trainer writing TensorBoard events to ``root/tb/run`` and checkpoints to ``root/ckpt``."""
    return L.Trainer(
        default_root_dir=root,
        max_epochs=epochs,
        accelerator="cpu",
        logger=TensorBoardLogger(root, name="tb", version="run"),
        callbacks=[ModelCheckpoint(dirpath=root / "ckpt", monitor="val/pr_auc/macro", mode="max", save_last=True)],
        enable_progress_bar=False,
        enable_model_summary=False,
        **kw,
    )


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def run_cli(module: str, *overrides: str, cwd: Path | None = None) -> CliResult:
    """Run one of the package's commands as a user would (its argv, its output, its exit code), in this process.

    The command's own entry point runs, Hydra and all; only the interpreter start and the imports are
    saved. :func:`run_subprocess` runs a command in a process of its own, for what only a process shows.
    """
    cli = importlib.import_module(module).cli
    out, err = io.StringIO(), io.StringIO()
    old_argv, old_cwd = sys.argv, Path.cwd()
    GlobalHydra.instance().clear()
    code = 0
    try:
        sys.argv = [module, *overrides]
        os.chdir(cwd or ROOT)
        with redirect_stdout(out), redirect_stderr(err):
            try:
                cli()
            except SystemExit as exit_:
                if isinstance(exit_.code, str):  # sys.exit("message"): Python prints it and exits 1
                    print(exit_.code, file=sys.stderr)
                    code = 1
                else:
                    code = exit_.code or 0
    finally:
        sys.argv = old_argv
        os.chdir(old_cwd)
        GlobalHydra.instance().clear()
    return CliResult(code, out.getvalue(), err.getvalue())


def run_subprocess(*args: str, cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """Run ``python <args>`` in a process of its own."""
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=cwd or ROOT, timeout=timeout, env=env
    )


MEASURED = (
    "import os, subprocess, sys; child = subprocess.Popen(sys.argv[2:]); _, status, usage = os.wait4(child.pid, 0); "
    "open(sys.argv[1], 'w').write(str(usage.ru_maxrss)); sys.exit(os.waitstatus_to_exitcode(status))"
)
"""Run argv[2:] and write its peak resident memory (kB) to argv[1]: see :func:`run_measured`."""


def run_measured(args: list[str], peak_file: Path, cwd: Path | None = None) -> tuple[CliResult, float]:
    """Run a command in a process of its own: its result, and its peak resident memory (MB).

    The command is started by a small Python process that reads the peak as ``wait4`` gives it. Started
    from the test process instead, it would report at least the test process's own peak: a child's
    ``ru_maxrss`` includes the memory map it had before ``exec``, its parent's (measured: a child that held
    14 MB, started by a process that once held 981 MB, reported 981 MB)."""
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    proc = subprocess.run([sys.executable, "-c", MEASURED, str(peak_file), *args], capture_output=True, text=True,
                          cwd=cwd or ROOT, env=env)  # fmt: skip
    return CliResult(proc.returncode, proc.stdout, proc.stderr), int(peak_file.read_text()) / 1024


def assert_one_line_error(proc: CliResult | subprocess.CompletedProcess[str], *fragments: str) -> None:
    """Bad input: non-zero exit, one line on stderr naming what was wrong, no traceback."""
    assert proc.returncode != 0, proc.stdout + proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1, proc.stderr
    for frag in fragments:
        assert frag in lines[0], lines[0]


STARDIST = ROOT / "tests" / "data" / "stardist"


def real_nuclei(scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Stardist's img2d.tif (uint16, 125 hand-outlined nuclei, BSD-3) and its instance mask, rescaled.

    The image is resampled with anti-aliasing when shrunk, the mask by nearest neighbour, as
    skimage.transform.rescale does for each.
    """
    image = tifffile.imread(STARDIST / "img2d.tif")
    mask = tifffile.imread(STARDIST / "mask2d.tif").astype(np.int32)
    if scale == 1.0:
        return image, mask
    image = rescale(image.astype(np.float32), scale, order=1, preserve_range=True, anti_aliasing=scale < 1)
    mask = rescale(mask, scale, order=0, preserve_range=True, anti_aliasing=False).astype(np.int32)
    return image.astype(np.uint16), mask


def nuclei_with_micronuclei(scale: float = 2.0, per: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The stardist image as an 8-bit image with a black background and bright micronuclei around its nuclei.

    Each nucleus gets ``per`` dots 6-10% of a nucleus across (Gaussian, near saturation), just outside
    its outline: micronuclei then outnumber the nuclei 3 to 1, as in the fields where one diameter per
    image was measured at about 4 px. Returns the image and the hand-drawn instances of the nuclei.
    """
    image, mask = real_nuclei(scale)
    img = image.astype(np.float32)
    background = np.percentile(img, 30)
    out = np.clip((img - background) / (np.percentile(img, 99.5) - background) * 200, 0, 255)
    rng = np.random.default_rng(seed)
    typical = 23.7 * scale  # the hand-drawn nuclei's median diameter at 1x
    for box in ndimage.find_objects(mask):
        if box is None:
            continue
        cy, cx = (box[0].start + box[0].stop) / 2, (box[1].start + box[1].stop) / 2
        radius = max(box[0].stop - box[0].start, box[1].stop - box[1].start) / 2
        for _ in range(per):
            angle, reach = rng.uniform(0, 2 * np.pi), radius + rng.uniform(0.15, 0.4) * typical
            y, x = cy + reach * np.sin(angle), cx + reach * np.cos(angle)
            sigma = rng.uniform(0.06, 0.1) * typical / 1.2
            r = int(5 * sigma) + 1  # the dot's window: beyond 5 sigma it adds nothing to an 8-bit image
            y0, y1 = max(0, int(y) - r), min(out.shape[0], int(y) + r + 1)
            x0, x1 = max(0, int(x) - r), min(out.shape[1], int(x) + r + 1)
            if y0 >= y1 or x0 >= x1:
                continue
            yy, xx = np.mgrid[y0:y1, x0:x1]
            dot = 255 * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * sigma**2))
            out[y0:y1, x0:x1] = np.maximum(out[y0:y1, x0:x1], dot)
    return np.round(out).astype(np.uint8), mask


SCRATCH = ROOT / "tests" / "data" / "ndev" / "scratch-assay.tif"


def resampled(image: np.ndarray, scale: float) -> np.ndarray:
    """A uint16 image resampled by ``scale`` (linear, anti-aliased when shrunk), as a camera of that pixel size."""
    out = rescale(image.astype(np.float32), scale, order=1, preserve_range=True, anti_aliasing=scale < 1)
    return out.round().astype(np.uint16)


SCRATCH_UM = 0.619
"""The scratch assay's pixel size (its OME metadata), µm."""


def scratch_assay_plate(path: Path, frames: list[int], scale: float = 1.0) -> Path:
    """A plate file of the ndev scratch assay's ``frames`` (one well, a time point each): its oblique transmitted
    light as the brightfield, its Hoechst 33342, an empty dead-stain channel (the assay has none: every nucleus
    is live) and its hand-drawn nuclei as the truth; ``scale`` resamples it (nearest for the nuclei), at the
    pixel size that gives."""
    data = tifffile.imread(SCRATCH)  # (C, T, Y, X): Hoechst, oblique light, hand-drawn nuclei
    h, w = (round(n * scale) for n in data.shape[2:])
    attrs = PlateAttrs(wells=["S01"], pixel_size_um=SCRATCH_UM / scale)
    with write_plate(path, attrs, (1, len(frames), 3, h, w), np.dtype(np.uint16), PLATE_CHANNELS, truth=True) as plate:
        for i, t in enumerate(frames):
            hoechst, oblique, drawn = data[0, t], data[1, t], data[2, t]
            if scale != 1.0:
                hoechst, oblique = (resampled(c, scale) for c in (hoechst, oblique))
                drawn = rescale(drawn, scale, order=0, preserve_range=True, anti_aliasing=False).astype(drawn.dtype)
            plate.write_image(0, i, np.stack([oblique, hoechst, np.zeros_like(hoechst)]))
            instances = drawn.astype(np.uint32)
            n = len(np.unique(instances[instances > 0]))
            plate.write_truth(0, i, (instances > 0).astype(np.uint8), instances, n, 0)
    return path


SCRATCH_TRAIN, SCRATCH_HELD_OUT = [0, 1, 2, 3, 4, 5], [7, 8, 9]
"""The scratch assay's frames the tiny U-Net trains on (one of them validates) and those it is scored on."""
SCRATCH_EPOCHS = 5
SCRATCH_TILE = 64
"""Tiles of 64 px (stride 32) rather than the default 160: the same pixels in six times the tiles, so that the
few training steps the suite can afford see many small batches rather than a handful of large ones."""


@dataclass
class ScratchModel:
    """The tiny U-Net trained on the scratch assay: its checkpoint, the held-out plate and its predictions."""

    ckpt: Path
    held_out: Path
    predictions: Path
    drawn: int
    """Hand-drawn nuclei in the held-out frames."""


def train_scratch_model(root: Path, **predict: Any) -> ScratchModel:
    """Real transmitted light end to end, at the suite's size, into ``root``: ``prepare`` labels the training frames
    from their Hoechst channel (one frame validates, which calibrates counting's threshold), the real Trainer fits
    the tiny U-Net with Adam, and ``predict`` counts the held-out frames at the plate's pixel size (``predict``:
    more of its settings). ``docs/real_assay.py`` draws the README's figure from the same run."""
    train = scratch_assay_plate(root / "train.h5", SCRATCH_TRAIN)
    held_out = scratch_assay_plate(root / "held_out.h5", SCRATCH_HELD_OUT)
    tiling = {"tile": SCRATCH_TILE, "stride": SCRATCH_TILE // 2}
    labelling = PrepareConfig(**tiling, chunk=50, split_by="image", val_fraction=0.1, progress=False)
    prepare(train, root / "tiles.h5", labelling)
    torch.manual_seed(0)
    module = make_module(
        net=UNet(base_channels=8, depth=2),
        optimizer=partial(torch.optim.Adam, lr=3e-3),
        scheduler=partial(torch.optim.lr_scheduler.CosineAnnealingLR, T_max=SCRATCH_EPOCHS),
    )
    trainer = make_trainer(root, SCRATCH_EPOCHS, log_every_n_steps=1)
    trainer.fit(module, datamodule=data_for(module, root / "tiles.h5", batch_size=16))
    ckpt = root / "ckpt" / "last.ckpt"
    out = root / "pred"
    cfg = {"save": "none", "overlays": False, "progress": False, "tile": SCRATCH_TILE, **predict}
    run_predict(PredictConfig(ckpt=str(ckpt), input=str(held_out), output=str(out), **cfg))
    drawn = sum(len(np.unique(d[d > 0])) for d in tifffile.imread(SCRATCH)[2, SCRATCH_HELD_OUT])
    return ScratchModel(ckpt, held_out, out, drawn)


def png_pixels(path: Path) -> np.ndarray:
    """A PNG as written, (H, W, 3) uint8: figures are checked by what they show, not by their file size."""
    return np.asarray(Image.open(path).convert("RGB"))


def colour_mask(rgb: np.ndarray, colour: str | tuple[float, float, float], tol: int = 12) -> np.ndarray:
    """Pixels within ``tol`` (per channel, of 255) of a matplotlib colour (``"C0"``, ``"black"``, an RGB triple)."""
    target = np.round(np.array(to_rgb(colour)) * 255)
    return (np.abs(rgb.astype(int) - target) <= tol).all(axis=-1)


def keeps_caller_frames(make: Callable[[], object]) -> bool:
    """Whether ``make()`` leaves its caller's locals alive once the caller returns, with garbage collection off:
    a frame held in a reference cycle keeps every frame above it, and their locals, until a collection."""

    class Local:
        pass

    def caller() -> weakref.ref:
        local = Local()
        make()
        return weakref.ref(local)

    gc.disable()
    try:
        return caller()() is not None
    finally:
        gc.enable()
