"""Images of another pixel size than the model's: the factor to its training grid, and the resampling there and back.

A network learns nuclei at the size they had in training; at twice the magnification it sees
them twice as large and splits or misses them. So, as Cellpose rescales each image to its training
diameter, ``predict`` resamples an image to the pixel size its checkpoint was trained at
(:attr:`livedead.model.checkpoint.CheckpointRecord.pixel_size_um`) before the network, and the
probabilities back to the image's own grid, where the outputs are drawn. The nuclei are counted on the
finer of the two grids: an image coarser than the model's pixels (a 10x image for a 20x model) is counted
on the network's grid and its nuclei mapped back (:func:`nuclei_on_image_grid`), since a nucleus of a few
pixels there may cover less than a pixel of the image's and vanish when its probabilities are resampled.
"""

from __future__ import annotations

import numpy as np
from skimage.transform import resize

from livedead.errors import LivedeadError
from livedead.nuclei.counting import Nuclei

RESCALE_MODES = ("auto", "off")
"""Config key ``rescale``: ``auto`` to the checkpoint's pixel size where both are known, ``off`` as is."""
TOLERANCE = 0.01
"""Pixel sizes closer than this (relative) are the same: resampling would only blur."""


def rescale_factor(setting: str, image_um: float | None, model_um: float | None, where: str) -> float:
    """The factor that takes an image to the model's grid (its pixel size over the model's); 1.0 for none.

    A checkpoint that records no pixel size (trained on a plate without one, or written before they
    recorded it) predicts as is, as before; one that records it refuses an image of unknown pixel
    size in one line (``where`` names the checkpoint and the input), since the two may differ.
    """
    if setting == "off" or model_um is None:
        return 1.0
    if image_um is None:
        raise LivedeadError(
            f"{where}: the model was trained at {model_um:g} µm/px and the images' pixel size is unknown: "
            "give config key 'pixel_size_um' (µm/px), or 'rescale=off' to predict them as they are"
        )
    factor = image_um / model_um
    return 1.0 if abs(factor - 1.0) <= TOLERANCE else factor


def to_model_grid(image: np.ndarray, factor: float) -> np.ndarray:
    """An (H, W) image resampled by ``factor`` (linear, anti-aliased when shrunk), as float32 in its own range."""
    shape = tuple(max(1, round(n * factor)) for n in image.shape)
    out = resize(image.astype(np.float32), shape, order=1, preserve_range=True, anti_aliasing=factor < 1)
    return out.astype(np.float32)


def to_image_grid(probs: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Class probabilities (C, h, w) resampled linearly to the image's (H, W); linear keeps them summing to one."""
    out = resize(probs, (probs.shape[0], *shape), order=1, preserve_range=True, anti_aliasing=False)
    return out.astype(np.float32)


def nuclei_on_image_grid(fine: Nuclei, shape: tuple[int, int]) -> Nuclei:
    """Nuclei counted on a finer grid, on the image's (H, W): centroids and areas scaled, the diameter too, and
    the instance labels resampled by nearest neighbour (a nucleus under an image pixel may leave no label
    there; it is counted all the same)."""
    assert fine.instances is not None
    assert fine.areas is not None
    scale = np.array([fine.instances.shape[0] / shape[0], fine.instances.shape[1] / shape[1]])
    instances = resize(fine.instances, shape, order=0, preserve_range=True, anti_aliasing=False).astype(np.int32)
    centroids = (fine.centroids + 0.5) / scale - 0.5  # pixel centres, as resize maps them
    areas = np.maximum(1, np.round(fine.areas / scale.prod())).astype(np.int64)
    diameter = fine.diameter / float(np.sqrt(scale.prod())) if fine.diameter else None
    return Nuclei(instances, centroids.reshape(-1, 2), fine.dead, diameter, areas)
