"""What the widget runs, without Qt: load a checkpoint or a bioimage.io package, predict and count one
plane as ``livedead.predict`` does, and count again from label layers a user has corrected.

The settings are :class:`~livedead.inference.predictor.PredictConfig`'s defaults, so a plane counted
here gives the row ``livedead.predict`` writes to ``counts.csv`` for the same image and model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from livedead.errors import LivedeadError
from livedead.inference.bioimageio import load_package
from livedead.inference.predictor import PredictConfig, choose_device
from livedead.inference.rescaling import rescale_factor, to_image_grid, to_model_grid
from livedead.inference.sliding_window import LoadedModel, load_model, predict_image
from livedead.nuclei.counting import Nuclei, nuclei_from_probabilities
from livedead.nuclei.size import NucleusScale


class Cancelled(Exception):
    """The user stopped a prediction (raised from its progress callback, between batches)."""


def settings() -> PredictConfig:
    """``livedead.predict``'s default settings (no input or output: the viewer holds them)."""
    return PredictConfig(ckpt="", input="", output="")


def load(source: str | Path, device: str = "auto") -> tuple[LoadedModel, str]:
    """The model of a checkpoint (``.ckpt``) or of an exported bioimage.io package (its folder or ``rdf.yaml``),
    and the device it is on."""
    path = Path(source)
    device = choose_device(device)
    if path.is_dir() or path.name.endswith(".yaml"):
        return load_package(path, device), device
    if not path.is_file():
        raise LivedeadError(f"{path}: expected a checkpoint (.ckpt) or a bioimage.io package, found nothing there")
    return load_model(path, device), device


def predict_plane(
    model: LoadedModel,
    device: str,
    image: np.ndarray,
    pixel_size_um: float | None = None,
    on_batch: Callable[[int, int], None] | None = None,
    cfg: PredictConfig | None = None,
) -> Nuclei:
    """The counted nuclei of one (H, W) image, as ``livedead.predict`` counts them (rescaled to the model's
    pixel size where both are known)."""
    cfg = cfg or settings()
    raw = np.asarray(image)
    if raw.ndim != 2:
        raise LivedeadError(f"the image layer: expected a 2-D plane of transmitted light, found shape {raw.shape}")
    factor = rescale_factor(cfg.rescale, pixel_size_um, model.pixel_size_um, "the image layer")
    seen = raw if factor == 1.0 else to_model_grid(raw, factor)
    probs = predict_image(model, seen, cfg.mode, cfg.overlap, cfg.blending, cfg.window, cfg.margin,
                          cfg.batch_size, cfg.tta, device, on_batch)  # fmt: skip
    if factor != 1.0:
        probs = to_image_grid(probs, raw.shape)
    diameter = NucleusScale(cfg.diameter, pixel_size_um, cfg.nucleus_diameter_um).fixed(pixel_size_um)
    return nuclei_from_probabilities(probs, model.foreground_threshold, diameter=diameter, **cfg.counting)


def split_live_dead(nuclei: Nuclei) -> tuple[np.ndarray, np.ndarray]:
    """Two instance maps, live and dead nuclei, each keeping the nuclei's own numbers."""
    ids = np.arange(1, len(nuclei.dead) + 1)
    dead_ids = np.zeros(len(nuclei.dead) + 1, bool)
    dead_ids[ids[nuclei.dead]] = True
    inst = nuclei.instances
    dead = np.where(dead_ids[inst], inst, 0).astype(np.int32)
    live = np.where(~dead_ids[inst] & (inst > 0), inst, 0).astype(np.int32)
    return live, dead


@dataclass
class Counts:
    """A plane's counts, as ``counts.csv`` has them."""

    live: int
    dead: int

    @property
    def total(self) -> int:
        return self.live + self.dead

    @property
    def dead_fraction(self) -> float:
        return self.dead / self.total if self.total else 0.0


def count_labels(live: np.ndarray, dead: np.ndarray) -> Counts:
    """The counts of two label maps as a user left them: each distinct label is one nucleus.

    >>> count_labels(np.array([[1, 1, 0, 4]]), np.array([[0, 0, 7, 0]]))
    Counts(live=2, dead=1)
    """
    return Counts(len(np.unique(live[live > 0])), len(np.unique(dead[dead > 0])))
