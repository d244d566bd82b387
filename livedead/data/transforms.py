"""Transforms that run on whole batches on the device: normalisation, and dihedral and intensity augmentation.

:class:`Normalization` is the normalisation record, and :func:`normalize_` applies it, for
training and inference alike: a checkpoint records the datamodule's record
(:meth:`Normalization.to_dict`), and inference reads it back (:meth:`Normalization.from_dict`)
and applies the same function, so a network always sees its input scaled as in training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

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


@dataclass(frozen=True)
class IntensityAugment:
    """Random brightfield appearance per tile (config key ``data.intensity``): what changes between the
    experiment days of a real plate (lamp, condenser, focus, camera) and not the cells.

    Each tile is drawn, independently: a contrast factor ``exp(U(-contrast, contrast))`` about its
    mean and a shift of ``U(-brightness, brightness)`` of its standard deviation; a gamma
    ``exp(U(-gamma, gamma))`` over its own range (the same range out as in); and, with probability
    ``blur_p``, a Gaussian blur of sigma ``U(0, blur)`` px (slight defocus). Zeros switch a part off.
    """

    contrast: float = 0.0
    brightness: float = 0.0
    gamma: float = 0.0
    blur: float = 0.0
    blur_p: float = 0.5

    def __post_init__(self) -> None:
        for key in ("contrast", "brightness", "gamma", "blur"):
            if not getattr(self, key) >= 0:
                raise LivedeadError(f"config key 'data.intensity.{key}': expected >= 0, found {getattr(self, key)}")
        if not 0 <= self.blur_p <= 1:
            raise LivedeadError(f"config key 'data.intensity.blur_p': expected in [0, 1], found {self.blur_p}")


def _uniform(n: int, half_width: float, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """``n`` draws of U(-half_width, half_width), drawn on the CPU (the same draws on any device)."""
    return ((torch.rand(n, generator=generator) * 2 - 1) * half_width).to(device).view(n, 1, 1, 1)


def intensity_augment(
    image: torch.Tensor, augment: IntensityAugment, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A new batch (B, 1, H, W) of normalised tiles, each with its own contrast, brightness, gamma and blur
    (:class:`IntensityAugment`); labels are unchanged, since none of these moves a pixel."""
    n, device = image.shape[0], image.device
    x = image.clone()
    if augment.gamma > 0:
        lo = x.amin(dim=(1, 2, 3), keepdim=True)
        span = (x.amax(dim=(1, 2, 3), keepdim=True) - lo).clamp_min(1e-6)
        gamma = _uniform(n, augment.gamma, generator, device).exp()
        x = ((x - lo) / span).clamp_(0, 1).pow_(gamma).mul_(span).add_(lo)
    if augment.contrast > 0 or augment.brightness > 0:
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        std = x.std(dim=(1, 2, 3), keepdim=True)
        factor = _uniform(n, augment.contrast, generator, device).exp()
        shift = _uniform(n, augment.brightness, generator, device) * std
        x = (x - mean).mul_(factor).add_(mean + shift)
    if augment.blur > 0:
        sigma = (torch.rand(n, generator=generator) * augment.blur).to(device)
        sigma = torch.where((torch.rand(n, generator=generator) < augment.blur_p).to(device), sigma, 0)
        x = gaussian_blur(x, sigma, math.ceil(3 * augment.blur))
    return x


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """Each tile (B, 1, H, W) blurred by its own ``sigma`` (B,) px, separably, edges reflected; sigma 0 leaves it."""
    if radius < 1:
        return x
    offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    s = sigma.to(x.dtype).view(-1, 1)
    kernel = torch.exp(-(offsets**2) / (2 * s.clamp_min(1e-3) ** 2))
    kernel = torch.where(s > 0.05, kernel, (offsets == 0).to(x.dtype))  # a tiny sigma is the identity
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    n = x.shape[0]
    y = F.pad(x.reshape(1, n, *x.shape[2:]), (radius, radius, radius, radius), mode="reflect")
    y = F.conv2d(y, kernel.view(n, 1, 1, -1), groups=n)
    y = F.conv2d(y, kernel.view(n, 1, -1, 1), groups=n)
    return y.view_as(x)
