from functools import partial

import lightning as L
import pytest
import torch
from torch import nn

from livedead.config.training import training_data
from livedead.data.datamodule import TileDataModule
from livedead.errors import LivedeadError
from livedead.inference.sliding_window import load_model
from livedead.model.checkpoint import load_matching_weights
from livedead.model.module import LiveDeadModule
from livedead.model.unet import UNet


class TwoConvs(nn.Module):
    """A network that is not the U-Net and keeps no record of its arguments."""

    def __init__(self, width: int, num_classes: int = 3) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, num_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def test_checkpoint_holds_what_inference_needs(fitted):
    root, _, _ = fitted
    ckpt = torch.load(root / "ckpt" / "last.ckpt", weights_only=True)  # as Lightning loads it
    info = ckpt["livedead"]
    assert info["class_names"] == ["background", "dapi", "cy5"]
    assert info["net"]["_target_"] == "livedead.model.unet.UNet"
    assert info["net"]["base_channels"] == 4
    assert info["net"]["depth"] == 2
    assert info["normalization"]["mode"] == "dataset"
    assert info["normalization"]["std"] > 0
    assert 0 < info["foreground_threshold"] < 1  # calibrated on the validation split
    assert ckpt["lr_schedulers"]
    assert ckpt["optimizer_states"]


def test_inference_rebuilds_whatever_network_was_trained(tiles_path, tmp_path):
    module = LiveDeadModule(net=TwoConvs(6), optimizer=partial(torch.optim.Adam, lr=0.01), overlay_tiles=0,
                            net_args={"width": 6})  # fmt: skip
    trainer = L.Trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=1, accelerator="cpu", logger=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)  # fmt: skip
    datamodule = TileDataModule(tiles_path, batch_size=25, num_workers=0)
    datamodule.setup("fit")
    module.use_data(training_data(datamodule, 0))
    trainer.fit(module, datamodule=datamodule)
    trainer.save_checkpoint(tmp_path / "two.ckpt")
    model = load_model(tmp_path / "two.ckpt")
    assert isinstance(model.net, TwoConvs)
    assert model.net.body[0].out_channels == 6
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.net(x), module.net.eval()(x))


def test_a_network_that_cannot_be_rebuilt_is_refused_at_once():
    with pytest.raises(LivedeadError, match="TwoConvs: expected its constructor's arguments"):
        LiveDeadModule(net=TwoConvs(6), optimizer=partial(torch.optim.Adam))


def test_a_checkpoint_without_normalisation_is_refused(tiny_ckpt, tmp_path):
    ckpt = torch.load(tiny_ckpt, weights_only=True)
    ckpt["livedead"]["normalization"] = None
    torch.save(ckpt, tmp_path / "bare.ckpt")
    with pytest.raises(LivedeadError, match="bare.ckpt: expected the input normalisation of training"):
        load_model(tmp_path / "bare.ckpt")


def test_a_checkpoint_naming_a_missing_network_is_one_line(tiny_ckpt, tmp_path):
    ckpt = torch.load(tiny_ckpt, weights_only=True)
    ckpt["livedead"]["net"]["_target_"] = "nowhere.Net"
    torch.save(ckpt, tmp_path / "moved.ckpt")
    with pytest.raises(LivedeadError, match="moved.ckpt: expected an importable network class, found 'nowhere.Net'"):
        load_model(tmp_path / "moved.ckpt")


def test_init_from_reports_skipped(fitted):
    root, _, _ = fitted
    skipped = load_matching_weights(UNet(base_channels=4, depth=2, num_classes=5), root / "ckpt" / "last.ckpt")
    assert skipped == ["head.bias", "head.weight"]
    with pytest.raises(LivedeadError, match="not found"):
        load_matching_weights(UNet(base_channels=4, depth=2), root / "missing.ckpt")
