"""Training on the CPU: keep freed memory in the process for the next step.

Each training step allocates and frees its activations; by default glibc maps such large
blocks afresh every step and the kernel zeroes their pages on first touch: system time was 32%
of a step's CPU time on the CPU U-Net with batches of 25 (``benchmarks/cpu_step.py``). With
freed memory kept (:func:`livedead.allocator.keep_freed_memory`) the step ran 1.5x as fast
(2.1x with channels-last too). A training process reaches its peak heap on its first step anyway.
"""

from __future__ import annotations

import lightning as L
from lightning.pytorch.utilities import rank_zero_info

from livedead.allocator import keep_freed_memory


class KeepFreedMemory(L.Callback):
    """On a CPU run, :func:`keep_freed_memory` before the first step (``callbacks.cpu_memory``)."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if trainer.strategy.root_device.type == "cpu" and keep_freed_memory():
            rank_zero_info("livedead: CPU run: freed memory is kept for the next step (no mmap per batch)")
