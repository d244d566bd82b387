import h5py
import numpy as np
import pytest
import tifffile
import torch
from torch import nn

from livedead.data.transforms import Normalization
from livedead.errors import LivedeadError
from livedead.inference.sliding_window import LoadedModel, load_model, predict_bands, predict_image
from livedead.plates.images import read_image


class Constant(nn.Module):
    """A network whose output is the same logits everywhere."""

    def __init__(self, logits):
        super().__init__()
        self.register_buffer("logits", torch.tensor(logits).view(1, -1, 1, 1))

    def forward(self, x):
        return self.logits.expand(x.shape[0], -1, *x.shape[-2:])


def constant_model(logits=(0.3, 1.2, -0.5)):
    return LoadedModel(Constant(list(logits)), ["background", "dapi", "cy5"], Normalization("none"), 160, 16)


@pytest.mark.parametrize(("mode", "blending"), [("blend", "gaussian"), ("blend", "constant"), ("crop", "gaussian")])
def test_blending_a_constant_output_gives_the_constant_with_no_seams(mode, blending):
    model = constant_model()
    expected = torch.tensor([0.3, 1.2, -0.5]).softmax(0).numpy()
    probs = predict_image(model, np.zeros((517, 701), np.uint16), mode=mode, blending=blending, batch_size=7)
    assert probs.shape == (3, 517, 701)
    np.testing.assert_allclose(probs, np.broadcast_to(expected[:, None, None], probs.shape), rtol=1e-5)


@pytest.mark.parametrize("shape", [(333, 251), (160, 160), (401, 517)])
@pytest.mark.parametrize("mode", ["blend", "crop"])
def test_image_not_a_multiple_of_the_stride(tiny_ckpt, shape, mode):
    model = load_model(tiny_ckpt)
    image = np.random.default_rng(0).integers(1500, 2500, shape).astype(np.uint16)
    probs = predict_image(model, image, mode=mode, window=192 if mode == "crop" else None, margin=16)
    assert probs.shape == (3, *shape)
    np.testing.assert_allclose(probs.sum(0), 1.0, rtol=1e-5)


def test_crop_mode_agrees_with_blending(tiny_ckpt, plate_path):
    model = load_model(tiny_ckpt)
    with h5py.File(plate_path) as f:
        image = f["images"][0, 0, 0]
    a = predict_image(model, image).argmax(0)
    b = predict_image(model, image, mode="crop", window=256, margin=32).argmax(0)
    assert (a == b).mean() > 0.97


def test_image_smaller_than_a_tile_in_python():
    with pytest.raises(LivedeadError, match="at least one 160x160 tile"):
        predict_image(constant_model(), np.zeros((100, 300)))


def test_normalising_leaves_a_float32_image_as_it_was():
    model = LoadedModel(Constant([0.0, 0.0, 0.0]), ["background", "dapi", "cy5"],
                        Normalization("dataset", mean=100.0, std=10.0), 160, 16)  # fmt: skip
    image = np.full((32, 32), 120.0, np.float32)
    x = model.normalize(image)
    assert float(x.mean()) == pytest.approx(2.0)
    assert (image == 120.0).all(), "the plate's image is not overwritten before its overlay is drawn"


class Brightness(nn.Module):
    """A network whose background logit is the input pixel itself: its output shows what input it saw."""

    def forward(self, x):
        return torch.cat([x, torch.zeros_like(x), torch.zeros_like(x)], 1)


def test_percentile_normalisation_scales_each_window_as_training_scaled_each_tile():
    """Training scales every 160-px tile between its own percentiles; so must prediction, window by window,
    or the network sees a day's dim and bright regions otherwise than it learnt them."""
    ramp = np.tile(np.linspace(0, 100, 160, dtype=np.float32), (160, 1))
    image = np.concatenate([ramp, ramp * 3 + 5000], axis=1)  # two windows, the second brighter and more contrasted
    model = LoadedModel(Brightness(), ["background", "dapi", "cy5"], Normalization("percentile"), 160, 16)
    probs = predict_image(model, image, overlap=0.0, blending="constant")
    np.testing.assert_allclose(probs[:, :, :160], probs[:, :, 160:], atol=1e-5)
    # each window spans its own 0..1 (its 1st to 99th percentile): P(background) = e^x / (e^x + 2)
    assert probs[0, 0, 1] == pytest.approx(1 / 3, abs=0.01)
    assert probs[0, 0, 158] == pytest.approx(np.e / (np.e + 2), abs=0.01)


@pytest.mark.parametrize(("mode", "window"), [("blend", None), ("crop", 192)])
def test_bands_of_rows_put_together_are_the_whole_image_bit_for_bit(tmp_path, mode, window):
    """The same windows, batches and sums as the whole image, read from a TIFF a band at a time (the network a
    random convolution, whose output varies from pixel to pixel as a trained one's does, and costs nothing)."""
    torch.manual_seed(0)
    net = nn.Conv2d(1, 3, 5, padding=2).eval()
    model = LoadedModel(net, ["background", "dapi", "cy5"], Normalization("dataset", 2000.0, 300.0), 160, 16)
    image = np.random.default_rng(0).integers(1500, 2500, (333, 251)).astype(np.uint16)
    whole = predict_image(model, image, mode=mode, window=window, margin=16, batch_size=5)
    tifffile.imwrite(tmp_path / "a.tif", image, tile=(64, 64), compression="zlib", photometric="minisblack")
    lazy, _ = read_image(tmp_path / "a.tif", lazy_px=0)
    for source, rows in ((image, 7), (lazy[0], 100)):
        bands = list(predict_bands(model, source, rows, mode=mode, window=window, margin=16, batch_size=5))
        assert [y for y, _ in bands] == list(range(0, 333, rows))
        np.testing.assert_array_equal(np.concatenate([p for _, p in bands], axis=1), whole)


def test_bands_of_a_percentile_model_are_its_whole_image_and_nan_rows_are_named():
    """Each window is scaled between its own percentiles, so bands change nothing; NaN rows name their rows."""
    pixels = np.random.default_rng(0).random((400, 320), dtype=np.float32) * 100
    model = LoadedModel(Brightness(), ["background", "dapi", "cy5"], Normalization("percentile"), 160, 16)
    whole = predict_image(model, pixels)
    bands = list(predict_bands(model, pixels, 100))
    np.testing.assert_array_equal(np.concatenate([p for _, p in bands], axis=1), whole)
    image = np.zeros((400, 200), np.float32)
    image[350, 10] = np.nan
    with pytest.raises(LivedeadError, match="rows 320 to 400: expected finite pixels, found 1 NaN"):
        list(predict_bands(constant_model(), image, 100, batch_size=1))
