"""Checkpoints written whole or not at all, so that a kill or a full disk never loses the last good one.

Lightning's own checkpoint writer stages the file in the system's temporary folder and moves it
into place, which is a copy, not an atomic rename, when that folder is on another device, and
it does not flush the file to the disk. :class:`AtomicCheckpointIO` writes a temporary sibling,
flushes it, renames it over the old file and flushes the folder (:func:`livedead.files.atomic_path`).
``conf/trainer/default.yaml`` gives it to every Trainer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from livedead.files import atomic_path


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` into a temporary sibling, fsync, then rename over the checkpoint."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO.save_checkpoint takes no storage_options")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            torch.save(checkpoint, f)
