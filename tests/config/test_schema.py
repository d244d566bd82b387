"""Typed configs: values checked against the dataclasses and the targets' signatures."""

import pytest
from omegaconf import OmegaConf

from livedead.config.schema import TrainSettings, check_targets, schema_of
from livedead.errors import LivedeadError
from livedead.plates.synthetic import PlateSpec


def check(node: dict) -> None:
    check_targets(OmegaConf.create(node))


def test_signature_types_are_enforced():
    trainer = {"_target_": "lightning.pytorch.Trainer"}
    check({"trainer": {**trainer, "max_epochs": 3, "precision": "bf16-mixed", "devices": [0, 1]}})
    with pytest.raises(LivedeadError, match=r"'trainer.max_epochs': expected int or None, found 'abc'"):
        check({"trainer": {**trainer, "max_epochs": "abc"}})
    with pytest.raises(LivedeadError, match=r"'trainer.max_epochs': expected int or None, found 2.5"):
        check({"trainer": {**trainer, "max_epochs": 2.5}})
    with pytest.raises(LivedeadError, match=r"'trainer.precision': expected .*'bf16-mixed'.*, found 'fp13'"):
        check({"trainer": {**trainer, "precision": "fp13"}})


def test_nested_targets_and_partials():
    model = {
        "_target_": "livedead.model.module.LiveDeadModule",
        "net": {"_target_": "livedead.model.unet.UNet", "depth": 2, "batch_norm": True},
        "optimizer": {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.1, "nesterov": True},
        "class_weights": [1.0, 2, 3],
    }
    check({"model": model})
    with pytest.raises(LivedeadError, match=r"'model.net.batch_norm': expected bool, found 'yes'"):
        check({"model": {**model, "net": {**model["net"], "batch_norm": "yes"}}})
    with pytest.raises(LivedeadError, match=r"'model.optimizer.lr': expected float or Tensor, found 'fast'"):
        check({"model": {**model, "optimizer": {**model["optimizer"], "lr": "fast"}}})
    with pytest.raises(LivedeadError, match=r"'model.net.width': expected one of the arguments of .*UNet"):
        check({"model": {**model, "net": {**model["net"], "width": 3}}})
    with pytest.raises(LivedeadError, match=r"'model.net._target_': expected an importable class"):
        check({"model": {**model, "net": {"_target_": "livedead.nowhere.Net"}}})


def test_schema_of_copies_fields_and_defaults():
    schema = OmegaConf.structured(schema_of(PlateSpec, output=(str, "p.h5")))
    assert schema.wells == PlateSpec.wells
    assert schema.output == "p.h5"
    schema.wells = "12"  # OmegaConf converts what it can
    assert schema.wells == 12
    with pytest.raises(Exception, match="could not be converted to Integer"):
        schema.wells = "many"
    train = OmegaConf.structured(TrainSettings)
    assert train.seed == 0
    assert train.resume is None
