"""Batch transforms, :mod:`livedead.data.transforms`: the normalisation record and its application, and augmentation."""

import pytest
import torch

from livedead.data.transforms import Normalization, dihedral_augment, normalize_
from livedead.errors import LivedeadError


def test_the_record_survives_a_checkpoint_file(tmp_path):
    """Plain types: a checkpoint loads with ``weights_only=True``, as Lightning and inference load it."""
    record = Normalization("percentile", 1500.0, 120.5, (2.0, 98.0))
    torch.save({"normalization": record.to_dict()}, tmp_path / "n.ckpt")
    back = torch.load(tmp_path / "n.ckpt", weights_only=True)["normalization"]
    assert back == {"mode": "percentile", "mean": 1500.0, "std": 120.5, "percentiles": [2.0, 98.0]}
    assert Normalization.from_dict(back) == record


def test_an_unknown_mode_is_one_line():
    with pytest.raises(LivedeadError, match=r"normalisation: expected mode one of .*, found 'zscore'"):
        Normalization.from_dict({"mode": "zscore", "mean": 0.0, "std": 1.0, "percentiles": [1, 99]})


def test_dataset_mode_standardises_with_the_training_statistics():
    x = torch.tensor([[[[1000.0, 1200.0], [1400.0, 1600.0]]]])
    out = normalize_(x.clone(), Normalization("dataset", mean=1300.0, std=200.0))
    torch.testing.assert_close(out, (x - 1300.0) / 200.0)


def test_percentile_mode_scales_each_tile_between_its_own_percentiles():
    x = torch.stack([torch.linspace(0, 100, 101).view(1, 1, 101), torch.linspace(500, 700, 101).view(1, 1, 101)])
    out = normalize_(x.clone(), Normalization("percentile", percentiles=(10.0, 90.0)))
    for tile in out:  # the same scaled values whatever each tile's own range
        torch.testing.assert_close(tile.flatten()[[10, 50, 90]], torch.tensor([0.0, 0.5, 1.0]))
    x = torch.full((1, 1, 4, 4), 7.0)
    assert torch.isfinite(normalize_(x, Normalization("percentile"))).all()  # a flat tile divides by no zero


def test_none_mode_leaves_the_pixels():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    torch.testing.assert_close(normalize_(x.clone(), Normalization("none")), x)


def test_augmentation_moves_image_and_label_together_and_is_seeded():
    image = torch.arange(64 * 36.0).view(64, 1, 6, 6)
    label = image[:, 0].clone()
    a_image, a_label = dihedral_augment(image, label, torch.Generator().manual_seed(3))
    torch.testing.assert_close(a_image[:, 0], a_label)  # the same flip or rotation for both
    torch.testing.assert_close(image[:, 0], label)  # the inputs are left as they were
    base = image.amin(dim=(1, 2, 3))
    kinds = {
        tuple((a_image[i, 0, 0, :2] - base[i]).tolist()) for i in range(64)
    }  # where pixels (0, 0) and (0, 1) came from
    assert len(kinds) == 8  # every one of the eight transforms drawn
    for i in range(64):  # each tile is a transform of itself: the same pixels
        assert sorted(a_image[i].flatten().tolist()) == sorted(image[i].flatten().tolist())
    b_image, _ = dihedral_augment(image, label, torch.Generator().manual_seed(3))
    torch.testing.assert_close(a_image, b_image)
