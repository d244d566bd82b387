import logging
from functools import partial
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from sklearn.metrics import average_precision_score
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from livedead.datamodule import TileDataModule
from livedead.errors import LivedeadError
from livedead.metrics import BinnedPRCurve, confusion_scores
from livedead.models import UNet
from livedead.module import LiveDeadModule, class_weights


def test_default_unet_is_the_studys_network():
    # The 23 convolutions of the study's network: (in, out, kernel), as in the slides' listing.
    convs = [
        (1, 64, 3), (64, 64, 3), (64, 128, 3), (128, 128, 3), (128, 256, 3), (256, 256, 3),
        (256, 512, 3), (512, 512, 3), (512, 1024, 3), (1024, 1024, 3),
        (1024, 512, 2), (1024, 512, 3), (512, 512, 3),
        (512, 256, 2), (512, 256, 3), (256, 256, 3),
        (256, 128, 2), (256, 128, 3), (128, 128, 3),
        (128, 64, 2), (128, 64, 3), (64, 64, 3),
        (64, 3, 1),
    ]  # fmt: skip
    expected = sum(k * k * a * b + b for a, b, k in convs)
    net = UNet()
    assert sum(p.numel() for p in net.parameters()) == expected == 31_030_723
    layers = [
        (m.in_channels, m.out_channels, m.kernel_size[0]) for m in net.modules() if isinstance(m, torch.nn.Conv2d)
    ]
    assert sorted(layers) == sorted(convs)  # the same 23 convolutions (modules() lists all up-convs first)


@pytest.mark.parametrize(("depth", "base", "side"), [(1, 4, 32), (2, 4, 48), (3, 2, 64), (4, 2, 160)])
@pytest.mark.parametrize("up_mode", ["nearest", "transpose"])
def test_output_shape_for_several_depths(depth, base, side, up_mode):
    net = UNet(base_channels=base, depth=depth, up_mode=up_mode, batch_norm=True, dropout=0.1)
    assert net(torch.zeros(2, 1, side, side)).shape == (2, 3, side, side)


def test_tile_not_divisible_is_a_clear_error():
    with pytest.raises(LivedeadError, match=r"divisible by 16, found \(40, 40\)"):
        UNet(base_channels=2)(torch.zeros(1, 1, 40, 40))


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


def test_pr_auc_matches_scikit_learn():
    gen = torch.Generator().manual_seed(0)
    target = torch.randint(0, 3, (8, 64, 64), generator=gen)
    logits = torch.randn(8, 3, 64, 64, generator=gen) + 1.5 * torch.nn.functional.one_hot(target, 3).permute(0, 3, 1, 2)
    probs = logits.softmax(1)
    metric = BinnedPRCurve(3, thresholds=200)
    for i in range(0, 8, 2):  # several updates, as over an epoch
        metric.update(probs[i : i + 2], target[i : i + 2])
    ours = metric.compute()
    for c in range(3):
        exact = average_precision_score((target == c).flatten().numpy(), probs[:, c].flatten().numpy())
        assert abs(float(ours[c]) - exact) < 0.01, (c, float(ours[c]), exact)


def test_confusion_scores():
    cm = torch.tensor([[8, 1, 1], [2, 6, 2], [0, 0, 5]])
    s = confusion_scores(cm)
    torch.testing.assert_close(s["precision"], torch.tensor([0.8, 6 / 7, 5 / 8]))
    torch.testing.assert_close(s["recall"], torch.tensor([0.8, 0.6, 1.0]))
    torch.testing.assert_close(s["iou"], torch.tensor([8 / 12, 6 / 11, 5 / 8]))


def make_module(**kw) -> LiveDeadModule:
    args = dict(
        net=UNet(base_channels=4, depth=2),
        optimizer=partial(torch.optim.SGD, lr=0.05, momentum=0.9),
        scheduler=partial(torch.optim.lr_scheduler.CosineAnnealingWarmRestarts, T_0=2),
        scheduler_config={"interval": "epoch"},
        overlay_tiles=4,
    )
    return LiveDeadModule(**{**args, **kw})


def make_trainer(root: Path, epochs: int, **kw) -> L.Trainer:
    return L.Trainer(
        default_root_dir=root,
        max_epochs=epochs,
        accelerator="cpu",
        logger=TensorBoardLogger(root, name="tb", version="run"),
        callbacks=[ModelCheckpoint(dirpath=root / "ckpt", monitor="val/pr_auc/macro", mode="max", save_last=True)],
        enable_progress_bar=False,
        enable_model_summary=False,
        **kw,
    )


@pytest.fixture(scope="module")
def fitted(tiles_path, tmp_path_factory):
    root = tmp_path_factory.mktemp("fit")
    dm = TileDataModule(tiles_path, batch_size=25, num_workers=0)
    module = make_module()
    trainer = make_trainer(root, 2)
    trainer.fit(module, datamodule=dm)
    return root, trainer, module


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
    assert overlays[0].width >= 4 * 160 and overlays[0].height == 160
    # weights came from the training split's counts: background weighs least
    w = module.class_weight
    assert w[0] < w[1] and w[0] < w[2]


def test_checkpoint_holds_what_inference_needs(fitted):
    root, _, _ = fitted
    ckpt = torch.load(root / "ckpt" / "last.ckpt", weights_only=True)  # as Lightning loads it
    info = ckpt["livedead"]
    assert info["class_names"] == ["background", "dapi", "cy5"]
    assert info["net"]["base_channels"] == 4 and info["net"]["depth"] == 2
    assert info["normalization"]["mode"] == "dataset" and info["normalization"]["std"] > 0
    assert ckpt["lr_schedulers"] and ckpt["optimizer_states"]


def test_init_from_with_a_different_head(fitted, caplog):
    root, _, _ = fitted
    net = UNet(base_channels=4, depth=2, num_classes=2)
    fresh_head = net.head.weight.detach().clone()
    caplog.set_level(logging.INFO)
    transferred = LiveDeadModule(
        net=net,
        optimizer=partial(torch.optim.Adam),
        class_names=["bg", "nucleus"],
        init_from=str(root / "ckpt" / "last.ckpt"),
        freeze_encoder=True,
    )
    assert any("skipped 2 tensors: head.bias, head.weight" in r.getMessage() for r in caplog.records)
    trained = torch.load(root / "ckpt" / "last.ckpt", weights_only=False)["state_dict"]
    torch.testing.assert_close(transferred.net.down[0][0].weight, trained["net.down.0.0.weight"])
    torch.testing.assert_close(transferred.net.head.weight, fresh_head)
    assert not any(p.requires_grad for p in transferred.net.encoder.parameters())
    assert all(p.requires_grad for p in transferred.net.merge.parameters())


def test_init_from_reports_skipped(fitted, capsys):
    from livedead.module import load_matching_weights

    root, _, _ = fitted
    skipped = load_matching_weights(UNet(base_channels=4, depth=2, num_classes=5), root / "ckpt" / "last.ckpt")
    assert skipped == ["head.bias", "head.weight"]
    with pytest.raises(LivedeadError, match="not found"):
        load_matching_weights(UNet(base_channels=4, depth=2), root / "missing.ckpt")


def test_resume_continues_at_the_right_epoch_with_scheduler_state(tiles_path, tmp_path):
    def lrs(trainer):
        return [g["lr"] for g in trainer.optimizers[0].param_groups]

    torch.manual_seed(0)
    straight = make_trainer(tmp_path / "straight", 3)
    straight.fit(make_module(), datamodule=TileDataModule(tiles_path, batch_size=25, num_workers=0))

    torch.manual_seed(0)
    first = make_trainer(tmp_path / "split", 2)
    first.fit(make_module(), datamodule=TileDataModule(tiles_path, batch_size=25, num_workers=0))
    last = tmp_path / "split" / "ckpt" / "last.ckpt"
    resumed = make_trainer(tmp_path / "split", 3)
    module = make_module()
    resumed.fit(module, datamodule=TileDataModule(tiles_path, batch_size=25, num_workers=0), ckpt_path=last)
    assert resumed.current_epoch == 3 and resumed.global_step == straight.global_step
    scheduler = resumed.lr_scheduler_configs[0].scheduler
    assert scheduler.last_epoch == straight.lr_scheduler_configs[0].scheduler.last_epoch == 3
    assert lrs(resumed) == pytest.approx(lrs(straight))
    events = EventAccumulator(str(tmp_path / "split" / "tb" / "run"))
    events.Reload()
    assert sorted({e.step for e in events.Scalars("val/pr_auc/macro")})[-1] >= 2 * resumed.num_training_batches


@pytest.mark.parametrize("fmt", ["mp4", "gif"])
def test_video_of_the_overlays(fitted, tmp_path, fmt):
    import imageio.v2 as imageio

    from livedead.video import make_video

    root, _, _ = fitted
    out = make_video(root, tmp_path / f"v.{fmt}", fmt=fmt, fps=2)
    if fmt == "gif":
        frames = imageio.mimread(out, memtest=False)
        count, first = len(frames), frames[0]
    else:
        reader = imageio.get_reader(out, format="FFMPEG")
        count, first = reader.count_frames(), reader.get_data(0)
    assert count == 2
    assert first.shape[0] % 16 == 0 and first.shape[1] >= 4 * 160


def test_video_cli_bad_run(tmp_path):
    from .conftest import assert_one_line_error, run_cli

    assert_one_line_error(run_cli("livedead.video", f"run={tmp_path / 'nope'}"), "nope", "run folder not found")
    (tmp_path / "empty").mkdir()
    assert_one_line_error(run_cli("livedead.video", f"run={tmp_path / 'empty'}"), "empty", "event files")


def test_fast_argmax_and_confusion_match_torch():
    from livedead.metrics import ConfusionMatrix, argmax_classes

    gen = torch.Generator().manual_seed(1)
    scores = torch.randn(4, 3, 32, 32, generator=gen)
    scores[0, :, 0, 0] = 1.0  # a tie goes to the lower class, as with argmax
    target = torch.randint(0, 3, (4, 32, 32), generator=gen, dtype=torch.uint8)
    assert torch.equal(argmax_classes(scores), scores.argmax(1))
    cm = ConfusionMatrix(3)
    cm.update(argmax_classes(scores), target)
    expected = torch.zeros(3, 3, dtype=torch.long)
    for t, p in zip(target.flatten().tolist(), scores.argmax(1).flatten().tolist(), strict=True):
        expected[t, p] += 1
    assert torch.equal(cm.compute(), expected)
