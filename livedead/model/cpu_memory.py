"""Training on the CPU: keep freed memory in the process for the next step.

glibc serves every allocation above its mmap threshold (32 MB at most) with a fresh ``mmap``
and returns it with ``munmap`` when freed. A U-Net's activations on a batch of tiles are such
allocations (50 tiles x 8 channels x 160x160 float32 is 41 MB), so every training step maps
them afresh and the kernel zeroes each page on first touch. Measured on the CPU U-Net with
batches of 25 (``benchmarks/cpu_step.py``): system time, that page-fault work, was 32% of a
step's CPU time. With ``mmap`` off for the heap and no trimming, freed blocks are reused by the
next step, and the step ran 1.5x as fast (2.1x with channels-last too).
The price: the process keeps its peak heap until it ends, which a training process reaches on
its first step anyway.
"""

from __future__ import annotations

import ctypes
import ctypes.util

import lightning as L
from lightning.pytorch.utilities import rank_zero_info

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
NEVER_TRIM = 2**31 - 1


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to serve large blocks from the heap and keep what is freed; False where
    the C library is not glibc (macOS, musl), which then goes on as before."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018  (glibc only: other libcs have other mallopt codes)
    except (OSError, AttributeError):
        return False
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, NEVER_TRIM))


class KeepFreedMemory(L.Callback):
    """On a CPU run, :func:`keep_freed_memory` before the first step (``callbacks.cpu_memory``)."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if trainer.strategy.root_device.type == "cpu" and keep_freed_memory():
            rank_zero_info("livedead: CPU run: freed memory is kept for the next step (no mmap per batch)")
