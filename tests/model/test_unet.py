"""The U-Net: the study's network layer for layer, its parameter count and receptive field by the classic
formulas, that it learns, and odd inputs or settings refused in one line."""

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


def classic_parameters(depth: int, base: int, cin: int = 1, classes: int = 3) -> int:
    """The classic U-Net's parameter count: per level two 3x3 convolutions (with biases) down, a 2x2 one that
    halves the channels up, two 3x3 on the concatenation, and a 1x1 head."""
    w = [base * 2**i for i in range(depth + 1)]
    double = lambda a, b: 9 * a * b + b + 9 * b * b + b  # noqa: E731
    down = double(cin, w[0]) + sum(double(w[i - 1], w[i]) for i in range(1, depth + 1))
    up = sum(4 * w[i + 1] * w[i] + w[i] + double(2 * w[i], w[i]) for i in range(depth))
    return down + up + w[0] * classes + classes


@pytest.mark.parametrize(("depth", "base"), [(4, 64), (1, 4), (2, 4), (2, 8), (3, 2), (5, 3)])
@pytest.mark.parametrize("up_mode", ["nearest", "transpose"])
def test_depth_and_width_change_the_parameters_as_the_classic_formula_says(depth, base, up_mode):
    net = UNet(base_channels=base, depth=depth, up_mode=up_mode)  # a 2x2 transposed conv has the same weights
    assert sum(p.numel() for p in net.parameters()) == classic_parameters(depth, base)


def receptive_rows(depth: int, row: int) -> tuple[int, int]:
    """The input rows an output row sees, derived from the layers: 3x3 'same' convolutions widen by 1 a side,
    2x2 max-pooling maps row k to rows 2k and 2k+1, and the upsampling's 2x2 convolution (padded after)
    maps row q to rows q//2 and (q+1)//2 of the level below."""

    def encoder(level: int, lo: int, hi: int) -> tuple[int, int]:
        lo, hi = lo - 2, hi + 2
        return (lo, hi) if level == 0 else encoder(level - 1, 2 * lo, 2 * hi + 1)

    def decoder(level: int, lo: int, hi: int) -> tuple[int, int]:
        lo, hi = lo - 2, hi + 2
        skip = encoder(level, lo, hi)
        below = (encoder if level == depth - 1 else decoder)(level + 1, lo // 2, (hi + 1) // 2)
        return min(skip[0], below[0]), max(skip[1], below[1])

    return decoder(0, row, row)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_the_receptive_field_is_the_layers_and_grows_with_depth(depth):
    torch.manual_seed(0)
    net = UNet(base_channels=4, depth=depth).double()
    x = torch.randn(8, 1, 128, 128, dtype=torch.double, requires_grad=True)
    net(x)[:, :, 64, 64].sum().backward()
    seen = torch.nonzero(x.grad.abs().sum((0, 1)))  # over 8 images: max-pooling passes one pixel of four
    lo, hi = receptive_rows(depth, 64)
    assert (int(seen[:, 0].min()), int(seen[:, 0].max())) == (lo, hi)
    assert (int(seen[:, 1].min()), int(seen[:, 1].max())) == (lo, hi)
    assert hi - lo + 1 == {1: 18, 2: 48, 3: 100}[depth]  # a cell of 40 px is seen whole from depth 2


@pytest.mark.slow
def test_it_learns_a_tiny_batch_by_heart():
    """Bright blobs are DAPI, brighter ones Cy5: a small U-Net overfits two tiles to the pixel."""
    torch.manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    labels = torch.zeros(2, 32, 32, dtype=torch.long)
    for i, (cy, cx, cls) in enumerate([(8, 8, 1), (20, 22, 2), (24, 6, 1), (10, 24, 2)]):
        labels[i % 2][(yy - cy) ** 2 + (xx - cx) ** 2 <= 25] = cls
    images = (labels.float() * 0.5 + 0.1 * torch.randn(2, 32, 32)).unsqueeze(1)
    net = UNet(base_channels=8, depth=2)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(200):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(images), labels)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    accuracy = float((net(images).argmax(1) == labels).float().mean())
    assert losses[-1] < losses[0] / 10
    assert accuracy > 0.98


@pytest.mark.parametrize(("depth", "base", "side"), [(1, 4, 32), (2, 4, 48), (3, 2, 64), (4, 2, 160)])
@pytest.mark.parametrize("up_mode", ["nearest", "transpose"])
def test_output_shape_for_several_depths(depth, base, side, up_mode):
    net = UNet(base_channels=base, depth=depth, up_mode=up_mode, batch_norm=True, dropout=0.1)
    assert net(torch.zeros(2, 1, side, side)).shape == (2, 3, side, side)


def test_tile_not_divisible_is_a_clear_error():
    with pytest.raises(LivedeadError, match=r"divisible by 16, found \(40, 40\)"):
        UNet(base_channels=2)(torch.zeros(1, 1, 40, 40))


@pytest.mark.parametrize(
    ("depth", "shape", "message"),
    [(2, (30, 32), r"divisible by 4, found \(30, 32\)"), (3, (48, 44), r"divisible by 8, found \(48, 44\)")],
)
def test_odd_sizes_are_refused_in_one_line(depth, shape, message):
    with pytest.raises(LivedeadError, match=message) as err:
        UNet(base_channels=2, depth=depth)(torch.zeros(1, 1, *shape))
    assert "\n" not in str(err.value)
    assert f"U-Net of depth {depth}" in str(err.value)


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [({"up_mode": "bilinear"}, "model.net.up_mode"), ({"depth": 0}, "model.net.depth"),
     ({"base_channels": 0}, "base_channels")],
)  # fmt: skip
def test_bad_settings_name_the_key_in_one_line(kwargs, key):
    with pytest.raises(LivedeadError, match=key) as err:
        UNet(**kwargs)
    assert "\n" not in str(err.value)
