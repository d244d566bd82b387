import logging
from functools import partial

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.data import DataLoader

from livedead.data.transforms import Normalization
from livedead.errors import LivedeadError
from livedead.model.module import LiveDeadModule, TrainingData, class_weights
from livedead.model.unet import UNet
from tests.helpers import data_for, keeps_caller_frames, make_module, make_trainer


def test_class_weight_modes_on_known_counts():
    counts = np.array([900, 90, 10])
    torch.testing.assert_close(class_weights(counts, "none"), torch.ones(3))
    torch.testing.assert_close(class_weights(counts, "inverse"), torch.tensor([1000 / 2700, 1000 / 270, 1000 / 30]))
    torch.testing.assert_close(class_weights(counts, "median"), torch.tensor([0.1, 1.0, 9.0]))
    torch.testing.assert_close(class_weights(counts, [1, 2, 3.5]), torch.tensor([1.0, 2.0, 3.5]))
    torch.testing.assert_close(
        class_weights(np.array([900, 100, 0]), "inverse"), torch.tensor([1000 / 2700, 1000 / 300, 0])
    )
    with pytest.raises(LivedeadError, match="expected 3 non-negative weights"):
        class_weights(counts, [1, 2])
    with pytest.raises(LivedeadError, match="class_weights"):
        class_weights(counts, "sqrt")


def test_a_module_keeps_no_frame_of_its_caller_alive():
    """As the datamodule's (tests/data/test_datamodule.py): its hyperparameters are saved from its own frame."""

    assert not keeps_caller_frames(make_module)


def test_two_epoch_fit_writes_scalars_pr_curves_and_images(fitted):
    root, _, module = fitted
    events = EventAccumulator(str(root / "tb" / "run"), size_guidance={"images": 0, "tensors": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    for name in (
        "train/loss_epoch",
        "val/loss",
        "val/pr_auc/dapi",
        "val/pr_auc/cy5",
        "val/pr_auc/macro",
        "val/precision/dapi",
        "val/recall/cy5",
        "val/f1/dapi",
        "val/iou/cy5",
        "hp_metric",
    ):
        assert name in tags["scalars"], name
    assert len(events.Scalars("val/pr_auc/dapi")) >= 2
    for tag in ("pr_curve/dapi", "pr_curve/cy5"):
        assert events.SummaryMetadata(tag).plugin_data.plugin_name == "pr_curves"
        assert len(events.Tensors(tag)) == 2
    assert {"val/overlay", "val/confusion"} <= set(tags["images"])
    overlays = events.Images("val/overlay")
    assert [o.step for o in overlays] == [0, 1]
    assert overlays[0].width >= 4 * 160
    assert overlays[0].height == 160
    # weights came from the training split's counts: background weighs least
    w = module.class_weight
    assert w[0] < w[1]
    assert w[0] < w[2]


def test_init_from_with_a_different_head(fitted, caplog):
    root, _, _ = fitted
    net = UNet(base_channels=4, depth=2, num_classes=2)
    fresh_head = net.head.weight.detach().clone()
    caplog.set_level(logging.INFO)
    # Lightning's own logger may not propagate to the root (it does not once Lightning has set its handler)
    lightning_log = logging.getLogger("lightning.pytorch")
    lightning_log.addHandler(caplog.handler)
    transferred = LiveDeadModule(
        net=net,
        optimizer=partial(torch.optim.Adam),
        class_names=["bg", "nucleus"],
        init_from=str(root / "ckpt" / "last.ckpt"),
        freeze_encoder=True,
    )
    lightning_log.removeHandler(caplog.handler)
    assert any("skipped 2 tensors: head.bias, head.weight" in r.getMessage() for r in caplog.records)
    trained = torch.load(root / "ckpt" / "last.ckpt", weights_only=False)["state_dict"]
    torch.testing.assert_close(transferred.net.down[0][0].weight, trained["net.down.0.0.weight"])
    torch.testing.assert_close(transferred.net.head.weight, fresh_head)
    assert not any(p.requires_grad for p in transferred.net.encoder.parameters())
    assert all(p.requires_grad for p in transferred.net.merge.parameters())


@pytest.mark.slow
def test_resume_continues_at_the_right_epoch_with_scheduler_state(tiles_path, tmp_path):
    def lrs(trainer):
        return [g["lr"] for g in trainer.optimizers[0].param_groups]

    torch.manual_seed(0)
    straight = make_trainer(tmp_path / "straight", 3)
    module = make_module()
    straight.fit(module, datamodule=data_for(module, tiles_path))

    torch.manual_seed(0)
    first = make_trainer(tmp_path / "split", 2)
    module = make_module()
    first.fit(module, datamodule=data_for(module, tiles_path))
    last = tmp_path / "split" / "ckpt" / "last.ckpt"
    resumed = make_trainer(tmp_path / "split", 3)
    module = make_module()
    resumed.fit(module, datamodule=data_for(module, tiles_path), ckpt_path=last)
    assert resumed.current_epoch == 3
    assert resumed.global_step == straight.global_step
    scheduler = resumed.lr_scheduler_configs[0].scheduler
    assert scheduler.last_epoch == straight.lr_scheduler_configs[0].scheduler.last_epoch == 3
    assert lrs(resumed) == pytest.approx(lrs(straight))
    events = EventAccumulator(str(tmp_path / "split" / "tb" / "run"))
    events.Reload()
    assert sorted({e.step for e in events.Scalars("val/pr_auc/macro")})[-1] >= 2 * resumed.num_training_batches


def test_the_module_trains_and_validates_without_a_datamodule(tmp_path):
    """What the module needs of the data comes in one record: no datamodule, no tile file."""
    rng = torch.Generator().manual_seed(0)
    labels = torch.zeros(8, 32, 32, dtype=torch.long)
    labels[:, 8:20, 8:20] = torch.randint(1, 3, (8, 1, 1), generator=rng)
    images = labels[:, None].float() + 0.1 * torch.randn(8, 1, 32, 32, generator=rng)
    tiles = [{"image": i, "label": lb} for i, lb in zip(images, labels, strict=True)]
    norm = {"mode": "dataset", "mean": 100.0, "std": 10.0, "percentiles": [1.0, 99.0]}
    record = Normalization.from_dict(norm)
    counts = np.bincount(labels.flatten().numpy(), minlength=3)
    module = make_module(overlay_tiles=2)
    with pytest.raises(LivedeadError, match=r"^tiles.h5: expected 3 classes \['background', 'dapi', 'cy5'\], found 2"):
        module.use_data(TrainingData(source="tiles.h5", class_counts=counts[:2], normalization=record))
    module.use_data(TrainingData("memory", counts, record, overlay_images=images[:2], overlay_labels=labels[:2]))
    torch.testing.assert_close(module.class_weight, class_weights(counts, "inverse"))
    trainer = make_trainer(tmp_path, 1, log_every_n_steps=1)
    trainer.fit(
        module, train_dataloaders=DataLoader(tiles, batch_size=4), val_dataloaders=DataLoader(tiles, batch_size=4)
    )
    assert trainer.global_step == 2
    assert {"train/loss_epoch", "val/loss", "val/pr_auc/macro"} <= set(trainer.callback_metrics)
    ckpt = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    assert ckpt["livedead"]["normalization"] == norm
    events = EventAccumulator(str(tmp_path / "tb" / "run"), size_guidance={"images": 0})
    events.Reload()
    assert "val/overlay" in events.Tags()["images"]


def test_a_fit_without_the_training_data_is_refused_before_it_trains(tmp_path):
    """Without ``use_data`` a fit would train with weights of 1 and write checkpoints inference refuses."""
    tiles = [{"image": torch.zeros(1, 32, 32), "label": torch.zeros(32, 32, dtype=torch.long)}] * 4
    trainer = make_trainer(tmp_path, 1)
    with pytest.raises(LivedeadError, match=r"^LiveDeadModule fitted without its training data: call module\.use_data"):
        trainer.fit(make_module(), train_dataloaders=DataLoader(tiles, batch_size=4))
    assert trainer.global_step == 0
    assert not (tmp_path / "ckpt").exists()


def test_a_resumed_module_counts_on_from_the_tiles_left_out_before():
    """``result.json``'s ``skipped_tiles`` is the whole run's: a resumed module starts from the checkpoint's count
    (reported already, so the next epoch reports only its own), and from 0 with a checkpoint older than it."""
    module = make_module()
    module.skipped_tiles = 50
    saved: dict = {}
    module.on_save_checkpoint(saved)
    resumed = make_module()
    resumed.on_load_checkpoint(saved)
    assert resumed.skipped_tiles == 50
    older = {"livedead": {k: v for k, v in saved["livedead"].items() if k != "skipped_tiles"}}
    resumed.on_load_checkpoint(older)
    assert resumed.skipped_tiles == 0


@pytest.mark.slow
def test_a_resumed_module_keeps_the_last_validations_threshold_and_metrics(fitted):
    """Checkpoints saved after a resume, before the next validation, carry what the checkpoint resumed from had."""
    _, _, trained = fitted
    saved: dict = {}
    trained.on_save_checkpoint(saved)
    assert 0 < saved["livedead"]["foreground_threshold"] < 1
    assert "val/loss" in saved["livedead"]["validated"]
    resumed = make_module()
    resumed.on_load_checkpoint(saved)
    assert resumed.foreground_threshold == trained.foreground_threshold
    again: dict = {}
    resumed.on_save_checkpoint(again)  # no validation since: the loaded record's
    assert again["livedead"]["foreground_threshold"] == saved["livedead"]["foreground_threshold"]
    assert again["livedead"]["validated"] == saved["livedead"]["validated"]
