"""The callbacks of :mod:`livedead.model.callbacks` in a real Trainer; and no private Lightning in the package."""

from __future__ import annotations

import re

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from livedead.model.callbacks import ExactResume, KeepFreedMemory, StepCheckpoint, first_unsaved_step
from tests.helpers import ROOT, data_for, make_module

PRIVATE = re.compile(r"\b(trainer|loop)\._")


def test_the_package_uses_no_private_lightning_attribute():
    """Lightning's private attributes change without notice: resume goes through its public interfaces."""
    hits = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in sorted((ROOT / "livedead").rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if PRIVATE.search(line)
    ]
    assert not hits, "\n".join(hits)
    assert PRIVATE.search("x = trainer._logger_connector")
    assert PRIVATE.search("loop._batches_that_stepped")
    assert not PRIVATE.search("self._trainer is None")


def test_step_checkpoints_carry_their_unlogged_step_and_none_is_saved_at_an_epochs_end(tiles_path, tmp_path):
    """54 training tiles in batches of 25: 3 steps; a step checkpoint after steps 1 and 2, not 3 (last.ckpt follows)."""
    torch.manual_seed(0)
    module = make_module(overlay_tiles=0)
    assert [type(c) for c in module.configure_callbacks()] == [ExactResume]
    steps = StepCheckpoint(dirpath=tmp_path / "ckpt", filename="step_{step}", every_n_train_steps=1, save_top_k=-1,
                           auto_insert_metric_name=False)  # fmt: skip
    trainer = L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=TensorBoardLogger(tmp_path, name="tb", version="run"),
        callbacks=[steps, KeepFreedMemory()],
        log_every_n_steps=1,
        limit_val_batches=1,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, datamodule=data_for(module, tiles_path))
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["step_1.ckpt", "step_2.ckpt"]
    events = EventAccumulator(str(tmp_path / "tb" / "run"), size_guidance={"scalars": 0})
    events.Reload()
    logged = {e.step: e.value for e in events.Scalars("train/loss_step")}
    for global_step in (1, 2):
        ckpt = torch.load(tmp_path / "ckpt" / f"step_{global_step}.ckpt", weights_only=True)
        unlogged = ckpt["livedead_unlogged"]
        # saved at the end of the batch logged at step global_step - 1, before Lightning logged it
        assert unlogged["step"] == global_step - 1 == first_unsaved_step(ckpt)
        assert set(unlogged["metrics"]) == {"train/loss_step", "epoch"}
        assert unlogged["metrics"]["train/loss_step"] == logged[global_step - 1]
        assert set(ckpt["livedead_rng"]) >= {"torch"}
