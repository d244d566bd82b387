"""Turn a run's per-epoch validation overlays into a video, each frame labelled with its epoch and PR-AUC.

The overlays and metrics are read from the run's TensorBoard event files (``val/overlay``,
``val/pr_auc/*``), so any run made by this project can be turned into a video afterwards.

The command line is :mod:`livedead.video`.
"""

from __future__ import annotations

import io
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from livedead.errors import LivedeadError
from livedead.files import atomic_path

OVERLAY_TAG = "val/overlay"


def read_overlays(run: Path) -> list[tuple[int, np.ndarray, dict[str, float]]]:
    """(epoch, RGB overlay, PR-AUC by class) for every validation epoch in the run's event files."""
    if not run.is_dir():
        raise LivedeadError(f"{run}: run folder not found (config key 'run')")
    event_dirs = sorted({p.parent for p in run.rglob("events.out.tfevents.*")})
    if not event_dirs:
        raise LivedeadError(f"{run}: expected TensorBoard event files in the run folder, found none")
    with_overlays = [d for d in event_dirs if _has_overlays(d)]
    if len(with_overlays) > 1:
        names = ", ".join(str(d.relative_to(run)) for d in with_overlays)
        raise LivedeadError(f"{run}: expected one run's overlays, found {len(with_overlays)} ({names}); name one")
    frames: dict[int, tuple[np.ndarray, dict[str, float]]] = {}
    for folder in with_overlays:
        events = EventAccumulator(str(folder), size_guidance={"images": 0, "scalars": 0})
        events.Reload()
        tags = events.Tags()
        epoch_at = {e.step: int(e.value) for e in events.Scalars("epoch")} if "epoch" in tags["scalars"] else {}
        scores: dict[int, dict[str, float]] = {}
        for tag in tags["scalars"]:
            if tag.startswith("val/pr_auc/"):
                for e in events.Scalars(tag):
                    scores.setdefault(epoch_at.get(e.step, -1), {})[tag.removeprefix("val/pr_auc/")] = e.value
        for image in events.Images(OVERLAY_TAG):
            pixels = np.asarray(Image.open(io.BytesIO(image.encoded_image_string)).convert("RGB"))
            frames[image.step] = (pixels, scores.get(image.step, {}))
    if not frames:
        raise LivedeadError(f"{run}: expected '{OVERLAY_TAG}' images in the event files, found none")
    return [(epoch, *frames[epoch]) for epoch in sorted(frames)]


def _has_overlays(folder: Path) -> bool:
    events = EventAccumulator(str(folder), size_guidance={"images": 1, "scalars": 1, "tensors": 1})
    events.Reload()
    return OVERLAY_TAG in events.Tags()["images"]


def label_frame(pixels: np.ndarray, epoch: int, scores: dict[str, float], size: int = 16) -> np.ndarray:
    """Put a caption strip above a frame and pad it to a multiple of 16 pixels (for video codecs)."""
    font = ImageFont.load_default(size=size)
    strip = size + 12
    h, w = pixels.shape[:2]
    height, width = -(-(h + strip) // 16) * 16, -(-w // 16) * 16
    canvas = Image.new("RGB", (width, height), "white")
    canvas.paste(Image.fromarray(pixels), (0, strip))
    parts = [f"epoch {epoch}"] + [f"PR-AUC {k} {v:.3f}" for k, v in sorted(scores.items())]
    ImageDraw.Draw(canvas).text((6, 5), "   ".join(parts), fill="black", font=font)
    return np.asarray(canvas)


def make_video(run: str | Path, output: str | Path | None = None, fmt: str = "mp4", fps: float = 4.0) -> Path:
    """Write the video; returns its path (default ``<run>/overlays.<fmt>``)."""
    if fmt not in ("mp4", "gif"):
        raise LivedeadError(f"config key 'format': expected 'mp4' or 'gif', found {fmt!r}")
    run = Path(run)
    frames = [label_frame(pixels, epoch, scores) for epoch, pixels, scores in read_overlays(run)]
    out = Path(output) if output else run / f"overlays.{fmt}"
    with atomic_path(out) as tmp:
        if fmt == "mp4":
            imageio.mimsave(tmp, frames, format="FFMPEG", fps=fps, codec="libx264", macro_block_size=16)
        else:
            imageio.mimsave(tmp, frames, format="GIF", duration=1000 / fps, loop=0)
    return out
