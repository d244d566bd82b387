import pytest
import torch

from livedead.errors import LivedeadError
from livedead.model.unet import UNet


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
