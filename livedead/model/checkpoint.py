"""Checkpoints that describe their own network: read them, rebuild the network, load its weights.

Training (:class:`livedead.model.module.LiveDeadModule`) writes a ``livedead`` entry into every
checkpoint, :class:`CheckpointRecord`: the class names, the network as
``{"_target_": "<module>.<Class>", **arguments}``, the input normalisation, the counting
threshold, the last validation's metrics, the wells held out for validation and the pixel size. With it,
inference rebuilds whatever network was trained from the checkpoint alone, with torch and nothing
else of the training stack. This module is the one that writes and reads that entry.
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from livedead.errors import LivedeadError

LEGACY_NET = "livedead.model.unet.UNet"
"""The network of checkpoints written before they named their ``_target_``."""
RECORD_KEY = "livedead"
"""The checkpoint's entry that holds the :class:`CheckpointRecord`."""


@dataclass
class CheckpointRecord:
    """What a checkpoint says about its run besides the weights, stored as plain types under ``livedead``."""

    class_names: list[str]
    net: dict[str, Any]
    """How to rebuild the network: ``_target_`` and the constructor's arguments (:func:`net_spec`)."""
    normalization: dict[str, Any] | None = None
    """The normalisation record as plain types (:class:`livedead.data.transforms.Normalization`);
    None for a module saved outside a run with a datamodule."""
    foreground_threshold: float | None = None
    """Counting's calibrated P(nucleus) threshold (None before the first validation, or in older checkpoints)."""
    validated: dict[str, float] = field(default_factory=dict)
    """The last validation's metrics (``val/...``)."""
    held_out_wells: list[str] | None = None
    """The wells the training data held out for validation; None in checkpoints written before they
    recorded them (their tile file still says)."""
    pixel_size_um: float | None = None
    """The pixel size (µm/px) of the training images, to which ``predict`` rescales images of another;
    None where the plate did not record one, and in checkpoints written before they recorded it."""
    skipped_tiles: int = 0
    """Tiles of damaged chunks the run has left out so far (``data.on_bad_chunk=skip``), so that a resumed run
    reports the whole run's; 0 in checkpoints written before they recorded it."""

    def save(self, checkpoint: dict[str, Any]) -> None:
        """Into a checkpoint being saved."""
        checkpoint[RECORD_KEY] = asdict(self)

    @classmethod
    def of(cls, checkpoint: dict[str, Any]) -> CheckpointRecord | None:
        """A checkpoint's record; None if it has none (not a livedead checkpoint)."""
        entry = checkpoint.get(RECORD_KEY)
        if not entry:
            return None
        return cls(
            class_names=list(entry.get("class_names") or []),
            net=dict(entry.get("net") or {}),
            normalization=entry.get("normalization"),
            foreground_threshold=entry.get("foreground_threshold"),
            validated=dict(entry.get("validated") or {}),
            held_out_wells=None if entry.get("held_out_wells") is None else list(entry["held_out_wells"]),
            pixel_size_um=None if entry.get("pixel_size_um") is None else float(entry["pixel_size_um"]),
            skipped_tiles=int(entry.get("skipped_tiles") or 0),
        )


def read_checkpoint(path: str | Path, key: str) -> dict[str, Any]:
    """A checkpoint's contents, or one line naming the config ``key`` that pointed at a bad file."""
    path = Path(path)
    if not path.is_file():
        raise LivedeadError(f"{path}: checkpoint not found (config key '{key}')")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for a file that is not a checkpoint
        raise LivedeadError(
            f"{path}: expected a checkpoint ('{key}'), found an unreadable file ({type(err).__name__})"
        ) from None
    if not isinstance(checkpoint, dict):
        raise LivedeadError(f"{path}: expected a checkpoint ('{key}'), found a {type(checkpoint).__name__}")
    return checkpoint


def net_state_dict(checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The network's weights: from a Lightning checkpoint (``net.`` prefix, compiled or not) or a bare state dict."""
    if "state_dict" not in checkpoint:
        return checkpoint
    state = {k.removeprefix("net."): v for k, v in checkpoint["state_dict"].items() if k.startswith("net.")}
    return {k.replace("_orig_mod.", ""): v for k, v in state.items()}


def load_matching_weights(net: nn.Module, ckpt_path: str | Path) -> list[str]:
    """Load every weight of a checkpoint whose name and shape match; return the names skipped."""
    state = net_state_dict(read_checkpoint(ckpt_path, "model.init_from"))
    own = net.state_dict()
    matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    net.load_state_dict(matched, strict=False)
    return sorted(set(own) - set(matched))


def net_spec(net: nn.Module, args: dict[str, Any] | None = None) -> dict[str, Any]:
    """How to rebuild ``net``: its class as ``_target_`` and its constructor's arguments.

    The arguments are ``args`` if given, else the network's own ``config`` attribute (as
    :class:`livedead.model.unet.UNet` keeps one).
    """
    net = getattr(net, "_orig_mod", net)  # torch.compile wraps the network
    args = args if args is not None else getattr(net, "config", None)
    if args is None:
        raise LivedeadError(
            f"network {type(net).__name__}: expected its constructor's arguments (a 'config' attribute, "
            "or the module's net_args), found none: inference could not rebuild it"
        )
    return {"_target_": f"{type(net).__module__}.{type(net).__qualname__}", **args}


def build_net(spec: dict[str, Any], source: str | Path) -> nn.Module:
    """The network a spec describes, freshly initialised (``source`` names the checkpoint in errors)."""
    spec = dict(spec)
    target = spec.pop("_target_", LEGACY_NET)
    module_name, _, name = target.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError):
        raise LivedeadError(f"{source}: expected an importable network class, found '{target}'") from None
    try:
        return cls(**spec)
    except TypeError as err:
        raise LivedeadError(f"{source}: network '{target}' cannot be built from {spec}: {err}") from None


def load_network(path: str | Path, key: str = "ckpt") -> tuple[nn.Module, CheckpointRecord]:
    """The trained network of a livedead checkpoint (weights loaded, eval mode) and its record.

    A checkpoint without the network's spec or the normalisation cannot be used for inference,
    since its input scaling would be a guess.
    """
    checkpoint = read_checkpoint(path, key)
    record = CheckpointRecord.of(checkpoint)
    if record is None or not record.net:
        raise LivedeadError(f"{path}: expected a livedead checkpoint (with a 'livedead' entry), found none")
    if not record.normalization:
        raise LivedeadError(
            f"{path}: expected the input normalisation of training in the checkpoint, found none "
            "(saved outside a run with a datamodule?)"
        )
    net = build_net(record.net, path)
    net.load_state_dict(net_state_dict(checkpoint))
    return net.eval(), record
