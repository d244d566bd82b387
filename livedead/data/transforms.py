"""Transforms that run on whole batches on the device: normalisation and dihedral augmentation.

:class:`Normalization` is the normalisation record, and :func:`normalize_` applies it, for
training and inference alike: a checkpoint records the datamodule's record
(:meth:`Normalization.to_dict`), and inference reads it back (:meth:`Normalization.from_dict`)
and applies the same function, so a network always sees its input scaled as in training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from livedead.errors import LivedeadError

NORMALIZE_MODES = ("dataset", "percentile", "none")


@dataclass(frozen=True)
class Normalization:
    """How raw pixels become network input: ``dataset`` (``mean``, ``std`` of the training split),
    ``percentile`` (each tile between its own low and high ``percentiles``) or ``none``."""

    mode: str
    mean: float = 0.0
    std: float = 1.0
    percentiles: tuple[float, float] = (1.0, 99.0)

    def __post_init__(self) -> None:
        if self.mode not in NORMALIZE_MODES:
            raise LivedeadError(f"normalisation: expected mode one of {NORMALIZE_MODES}, found {self.mode!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain types, as a checkpoint stores it (checkpoints load with ``weights_only=True``)."""
        return {
            "mode": self.mode,
            "mean": float(self.mean),
            "std": float(self.std),
            "percentiles": list(self.percentiles),
        }

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> Normalization:
        """The record as a checkpoint stores it (every checkpoint so far has all four keys)."""
        lo, hi = record.get("percentiles", (1.0, 99.0))
        mean, std = float(record.get("mean", 0.0)), float(record.get("std", 1.0))
        return cls(str(record.get("mode")), mean, std, (float(lo), float(hi)))


def normalize_(x: torch.Tensor, normalization: Normalization) -> torch.Tensor:
    """In place: float32 pixels (B, 1, H, W) to network input, as the normalisation record says."""
    if normalization.mode == "dataset":
        return x.mul_(1.0 / normalization.std).add_(-normalization.mean / normalization.std)
    if normalization.mode == "percentile":
        flat = x.flatten(1)
        flat = flat[:, :: max(1, flat.shape[1] // 4_000_000)]  # torch.quantile's input limit; tiles stay exact
        lo_p, hi_p = normalization.percentiles
        q = torch.quantile(flat, torch.tensor([lo_p / 100, hi_p / 100], device=x.device), dim=1)
        lo, hi = q[0].view(-1, 1, 1, 1), q[1].view(-1, 1, 1, 1)
        return x.sub_(lo).div_((hi - lo).clamp_min(1e-6))
    return x


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
