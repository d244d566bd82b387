"""The U-Net of the original study, with the options a segmentation researcher expects.

With its defaults it is exactly the classic network: 23 convolutions, channels
1→64→128→256→512→1024→512→256→128→64→3, two 3x3 'same' convolutions with ReLU per level,
2x2 max-pooling down, and on the way up a x2 nearest upsampling followed by a 2x2 convolution
that halves the channels, concatenated with the skip connection, so the first convolution
after it takes twice the channels. A 1x1 convolution gives the class logits.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from livedead.errors import LivedeadError

UP_MODES = ("nearest", "transpose")


class DoubleConv(nn.Sequential):
    """Two 3x3 'same' convolutions, each followed by (optional batch norm and) ReLU."""

    def __init__(self, cin: int, cout: int, batch_norm: bool, dropout: float) -> None:
        layers: list[nn.Module] = []
        for a, b in ((cin, cout), (cout, cout)):
            layers.append(nn.Conv2d(a, b, 3, padding="same", bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(b))
            layers.append(nn.ReLU(inplace=True))
        if dropout > 0:
            layers.append(nn.Dropout2d(dropout))
        super().__init__(*layers)


class Up(nn.Module):
    """x2 upsampling that halves the channels: nearest + 2x2 conv (the study's), or transposed conv."""

    def __init__(self, cin: int, cout: int, mode: str) -> None:
        super().__init__()
        if mode == "nearest":
            # a 2x2 'same' convolution pads one pixel right and below, as padding="same" would
            self.up = nn.Sequential(
                nn.Upsample(scale_factor=2, mode="nearest"), nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(cin, cout, 2)
            )
        else:
            self.up = nn.ConvTranspose2d(cin, cout, 2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(x)


class UNet(nn.Module):
    """U-Net for per-pixel classification of transmitted-light tiles.

    Args:
        in_channels: input channels (1: transmitted light).
        num_classes: output classes (3: background, DAPI, Cy5).
        base_channels: channels of the first level; doubled at each level down.
        depth: number of poolings; tiles must be divisible by ``2**depth``.
        batch_norm: batch norm after every 3x3 convolution (off in the study).
        dropout: ``Dropout2d`` probability after each double convolution (off in the study).
        up_mode: ``nearest`` (upsample + 2x2 conv, the study's) or ``transpose``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 3,
        base_channels: int = 64,
        depth: int = 4,
        batch_norm: bool = False,
        dropout: float = 0.0,
        up_mode: str = "nearest",
    ) -> None:
        super().__init__()
        if up_mode not in UP_MODES:
            raise LivedeadError(f"config key 'model.net.up_mode': expected one of {UP_MODES}, found {up_mode!r}")
        if depth < 1 or base_channels < 1:
            raise LivedeadError(
                f"config keys 'model.net.depth' and 'base_channels': expected >= 1, found {depth} and {base_channels}"
            )
        self.config: dict[str, Any] = dict(
            in_channels=in_channels,
            num_classes=num_classes,
            base_channels=base_channels,
            depth=depth,
            batch_norm=batch_norm,
            dropout=dropout,
            up_mode=up_mode,
        )
        self.depth = depth
        widths = [base_channels * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList(
            DoubleConv(a, b, batch_norm, dropout) for a, b in zip([in_channels, *widths[:-1]], widths, strict=True)
        )
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList(Up(widths[i + 1], widths[i], up_mode) for i in reversed(range(depth)))
        self.merge = nn.ModuleList(
            DoubleConv(2 * widths[i], widths[i], batch_norm, dropout) for i in reversed(range(depth))
        )
        self.head = nn.Conv2d(base_channels, num_classes, 1)

    @property
    def size_divisor(self) -> int:
        """Input sides must be multiples of this (one halving per pooling)."""
        return 2**self.depth

    @property
    def encoder(self) -> nn.ModuleList:
        """The contracting path (for ``freeze_encoder``)."""
        return self.down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        factor = self.size_divisor
        if x.shape[-1] % factor or x.shape[-2] % factor:
            raise LivedeadError(
                f"U-Net of depth {self.depth}: expected tile sides divisible by {factor}, found {tuple(x.shape[-2:])}"
            )
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for up, merge in zip(self.up, self.merge, strict=True):
            x = merge(torch.cat([skips.pop(), up(x)], dim=1))
        return self.head(x)
