"""Transforms that run on whole batches on the device: normalisation and dihedral augmentation.

:func:`normalize_` is shared by training and inference: a checkpoint records the normalisation
the datamodule used, and inference applies the same function with that record, so a network
always sees its input scaled as in training.
"""

from __future__ import annotations

from typing import Any

import torch

from livedead.errors import LivedeadError

NORMALIZE_MODES = ("dataset", "percentile", "none")


def normalize_(x: torch.Tensor, normalization: dict[str, Any]) -> torch.Tensor:
    """In place: float32 pixels (B, 1, H, W) to network input, as a normalisation record says.

    The record is :meth:`livedead.data.datamodule.TileDataModule.normalization`: ``mode`` is
    ``dataset`` (``mean``, ``std``), ``percentile`` (``percentiles``: low and high, per tile) or ``none``.
    """
    mode = normalization.get("mode")
    if mode == "dataset":
        return x.mul_(1.0 / normalization["std"]).add_(-normalization["mean"] / normalization["std"])
    if mode == "percentile":
        flat = x.flatten(1)
        flat = flat[:, :: max(1, flat.shape[1] // 4_000_000)]  # torch.quantile's input limit; tiles stay exact
        lo_p, hi_p = normalization["percentiles"]
        q = torch.quantile(flat, torch.tensor([lo_p / 100, hi_p / 100], device=x.device), dim=1)
        lo, hi = q[0].view(-1, 1, 1, 1), q[1].view(-1, 1, 1, 1)
        return x.sub_(lo).div_((hi - lo).clamp_min(1e-6))
    if mode == "none":
        return x
    raise LivedeadError(f"normalisation: expected mode one of {NORMALIZE_MODES}, found {mode!r}")


def dihedral_augment(
    image: torch.Tensor, label: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random flips and 90-degree rotations per tile, identical for image and label, on the whole batch."""
    k = torch.randint(0, 8, (image.shape[0],), generator=generator, device="cpu").to(image.device)
    image, label = image.clone(), label.clone()
    for g in range(1, 8):
        idx = (k == g).nonzero().squeeze(1)
        if idx.numel() == 0:
            continue
        im, lab = image[idx], label[idx]
        if g >= 4:
            im, lab = im.flip(-1), lab.flip(-1)
        im, lab = torch.rot90(im, g % 4, (-2, -1)), torch.rot90(lab, g % 4, (-2, -1))
        image[idx], label[idx] = im, lab
    return image, label
