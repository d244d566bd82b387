"""Checkpoints that describe their own network: read them, rebuild the network, load its weights.

Training (:class:`livedead.model.module.LiveDeadModule`) writes a ``livedead`` entry into every
checkpoint: the class names, the network as ``{"_target_": "<module>.<Class>", **arguments}``
and the input normalisation. With it, inference rebuilds whatever network was trained from the
checkpoint alone, with torch and nothing else of the training stack.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from livedead.errors import LivedeadError

LEGACY_NET = "livedead.model.unet.UNet"
"""The network of checkpoints written before they named their ``_target_``."""


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


def load_network(path: str | Path, key: str = "ckpt") -> tuple[nn.Module, dict[str, Any]]:
    """The trained network of a livedead checkpoint (weights loaded, eval mode) and its ``livedead`` entry.

    The entry holds ``class_names``, ``net`` (the spec) and ``normalization``; a checkpoint
    without them cannot be used for inference, since its input scaling would be a guess.
    """
    checkpoint = read_checkpoint(path, key)
    info = checkpoint.get("livedead")
    if not info or not info.get("net"):
        raise LivedeadError(f"{path}: expected a livedead checkpoint (with a 'livedead' entry), found none")
    if not info.get("normalization"):
        raise LivedeadError(
            f"{path}: expected the input normalisation of training in the checkpoint, found none "
            "(saved outside a run with a datamodule?)"
        )
    net = build_net(info["net"], path)
    net.load_state_dict(net_state_dict(checkpoint))
    return net.eval(), info
