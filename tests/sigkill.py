"""A callback that SIGKILLs its own training process at one exact point: a kill test's kill, at no racy moment.

``+callbacks.kill._target_=tests.sigkill.KillAt`` adds it to a run; it kills only where the
environment names a point (``LIVEDEAD_KILL_AT=<hook>:<global step>``), so the same run resumed
without it goes on.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import lightning as L

ENV = "LIVEDEAD_KILL_AT"


class KillAt(L.Callback):
    def _at(self, trainer: L.Trainer, hook: str) -> None:
        where, _, step = os.environ.get(ENV, "").partition(":")
        if where == hook and not trainer.sanity_checking and trainer.global_step == int(step):
            os.kill(os.getpid(), signal.SIGKILL)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, i: int) -> None:
        self._at(trainer, "train_batch_start")

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self._at(trainer, "validation_batch_end")
