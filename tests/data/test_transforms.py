"""Batch transforms, :mod:`livedead.data.transforms`: the normalisation record and its application, and augmentation."""

import pytest
import torch

from livedead.data.transforms import (
    IntensityAugment,
    Normalization,
    dihedral_augment,
    gaussian_blur,
    intensity_augment,
    normalize_,
)
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


def test_intensity_augmentation_draws_each_tile_its_own_look_and_is_seeded():
    torch.manual_seed(0)
    image = torch.rand(32, 1, 24, 24)
    before = image.clone()
    settings = IntensityAugment(contrast=0.4, brightness=0.3, gamma=0.4, blur=2.0, blur_p=0.5)
    a = intensity_augment(image, settings, torch.Generator().manual_seed(1))
    assert a.shape == image.shape
    assert torch.isfinite(a).all()
    assert not torch.equal(a, image)
    assert torch.equal(image, before)  # a new batch; the input left as it was
    torch.testing.assert_close(a, intensity_augment(image, settings, torch.Generator().manual_seed(1)))
    assert not torch.allclose(a, intensity_augment(image, settings, torch.Generator().manual_seed(2)))
    stds = a.std(dim=(1, 2, 3))
    assert stds.max() > 1.3 * stds.min()  # tiles drawn apart, not one change for the batch
    off = intensity_augment(image, IntensityAugment(), torch.Generator().manual_seed(1))
    torch.testing.assert_close(off, image)  # every part switched off: the batch as it was


def test_contrast_and_gamma_keep_the_order_of_pixels_and_gamma_the_range():
    image = torch.linspace(-1, 2, 100).view(1, 1, 10, 10).repeat(8, 1, 1, 1)
    for settings in (IntensityAugment(gamma=0.5), IntensityAugment(contrast=0.5, brightness=0.5)):
        out = intensity_augment(image, settings, torch.Generator().manual_seed(0))
        assert (out.flatten(1).diff(dim=1) > 0).all()  # brighter stays brighter: nothing the labels see moves
    out = intensity_augment(image, IntensityAugment(gamma=0.5), torch.Generator().manual_seed(0))
    torch.testing.assert_close(out.amin(dim=(1, 2, 3)), image.amin(dim=(1, 2, 3)))
    torch.testing.assert_close(out.amax(dim=(1, 2, 3)), image.amax(dim=(1, 2, 3)))
    assert (out[:, 0, 5, 5] - image[:, 0, 5, 5]).abs().max() > 0.05  # the middle is bent


def test_gaussian_blur_keeps_the_mean_smooths_and_leaves_sigma_zero_alone():
    x = torch.zeros(2, 1, 21, 21)
    x[:, 0, 10, 10] = 1.0
    out = gaussian_blur(x, torch.tensor([0.0, 1.5]), 5)
    torch.testing.assert_close(out[0], x[0])
    assert out[1].sum().item() == pytest.approx(1.0, abs=1e-5)
    # the impulse response is the Gaussian of that sigma: neighbour over centre = exp(-1 / (2 sigma^2))
    assert (out[1, 0, 10, 11] / out[1, 0, 10, 10]).item() == pytest.approx(torch.exp(torch.tensor(-1 / 4.5)).item())


@pytest.mark.parametrize(("key", "value"), [("gamma", -0.1), ("blur", float("nan")), ("blur_p", 1.5)])
def test_bad_intensity_settings_are_one_line(key, value):
    with pytest.raises(LivedeadError, match=rf"config key 'data.intensity.{key}': expected"):
        IntensityAugment(**{key: value})
