"""DPT dense prediction head (Ranftl et al. 2021), laid out as in Depth Anything V2.

Four backbone maps -> reassemble (project, resample into a 1/4 .. 1/32 pyramid for ViTs) ->
3x3 convs to a common width -> fusion blocks from coarse to fine (residual conv units,
upsample, skip) -> output head (conv, upsample to the input size, conv, ReLU, 1x1 conv, and a
final non-negative activation).

The final activation keeps disparity non-negative. Depth Anything ends in a ReLU; trained from
scratch with the shift-invariant losses, a ReLU head parks the far background below zero,
where its gradient is zero: the default teacher output exactly 0 on 21% of the valid pixels of
the target evaluation set, losing the order of everything far away, and those pixels never
recover. Softplus (the default, `ModelConfig.output_activation`) keeps a gradient everywhere:
same teacher recipe, target pair accuracy 0.706 -> 0.729, AbsRel 0.278 -> 0.277. A randomly
initialised ReLU head can also output all zeros, which makes least-squares alignment singular;
the last layer's bias therefore starts at ``OUTPUT_BIAS`` so a fresh model predicts strictly
positive with either activation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

OUTPUT_BIAS = 1.0


def _upsample(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)


class Reassemble(nn.Module):
    """Projects each map to its width; resamples single-scale (ViT) maps by 4x, 2x, 1x, 0.5x."""

    def __init__(self, in_channels: Sequence[int], out_channels: Sequence[int], single_scale: bool):
        super().__init__()
        self.projects = nn.ModuleList(
            nn.Conv2d(c_in, c_out, kernel_size=1) for c_in, c_out in zip(in_channels, out_channels)
        )
        if single_scale:
            c = out_channels
            self.resamples = nn.ModuleList(
                [
                    nn.ConvTranspose2d(c[0], c[0], kernel_size=4, stride=4),
                    nn.ConvTranspose2d(c[1], c[1], kernel_size=2, stride=2),
                    nn.Identity(),
                    nn.Conv2d(c[3], c[3], kernel_size=3, stride=2, padding=1),
                ]
            )
        else:
            self.resamples = nn.ModuleList(nn.Identity() for _ in out_channels)

    def forward(self, maps: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return [
            resample(project(x))
            for x, project, resample in zip(maps, self.projects, self.resamples)
        ]


class ResidualConvUnit(nn.Module):
    """x + conv(relu(conv(relu(x)))): refines a map without changing its size."""

    def __init__(self, features: int):
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(features, features, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(x))
        out = self.conv2(F.relu(out))
        return x + out


class FeatureFusionBlock(nn.Module):
    """Adds the refined skip map to the coarser path, refines, upsamples to ``size``, projects."""

    def __init__(self, features: int, has_skip: bool = True):
        super().__init__()
        self.skip_unit = ResidualConvUnit(features) if has_skip else None
        self.path_unit = ResidualConvUnit(features)
        self.out_conv = nn.Conv2d(features, features, kernel_size=1)

    def forward(
        self, path: torch.Tensor, skip: torch.Tensor | None, size: Sequence[int]
    ) -> torch.Tensor:
        """``skip`` is ignored by the coarsest block, which has nothing finer to add yet."""
        if self.skip_unit is not None:
            path = path + self.skip_unit(skip)
        path = self.path_unit(path)
        return self.out_conv(_upsample(path, size))


def _activation(name: str) -> nn.Module:
    if name == "softplus":
        return nn.Softplus()
    if name == "relu":
        return nn.ReLU()
    raise ValueError(f"output_activation must be 'softplus' or 'relu', got {name!r}")


class DPTHead(nn.Module):
    """Four feature maps (finest first) -> ``(B, 1, H, W)`` non-negative disparity."""

    def __init__(
        self,
        in_channels: Sequence[int],
        features: int,
        out_channels: Sequence[int],
        single_scale: bool,
        output_activation: str = "softplus",
    ):
        super().__init__()
        if len(in_channels) != 4 or len(out_channels) != 4:
            raise ValueError(
                f"DPT head needs 4 input and 4 output widths, got {tuple(in_channels)} and "
                f"{tuple(out_channels)}"
            )
        self.reassemble = Reassemble(in_channels, out_channels, single_scale)
        self.layers_rn = nn.ModuleList(
            nn.Conv2d(c, features, kernel_size=3, padding=1, bias=False) for c in out_channels
        )
        # fusions[i] produces the path at level i; the coarsest one (3) has no skip input.
        self.fusions = nn.ModuleList(FeatureFusionBlock(features, has_skip=i < 3) for i in range(4))

        half = max(features // 2, 1)
        hidden = max(features // 2, 8)  # 32 at features=64, as in Depth Anything V2
        self.output_conv1 = nn.Conv2d(features, half, kernel_size=3, padding=1)
        self.output_conv2 = nn.Sequential(
            nn.Conv2d(half, hidden, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden, 1, kernel_size=1),
            _activation(output_activation),
        )
        nn.init.constant_(self.output_conv2[2].bias, OUTPUT_BIAS)

    def forward(self, maps: Sequence[torch.Tensor], size: Sequence[int]) -> torch.Tensor:
        """``maps`` from the backbone, ``size`` = (H, W) of the (padded) input image."""
        l1, l2, l3, l4 = (conv(x) for conv, x in zip(self.layers_rn, self.reassemble(maps)))
        # Coarse to fine: each fusion upsamples the path to the next finer level's size.
        path = self.fusions[3](l4, None, l3.shape[-2:])
        path = self.fusions[2](path, l3, l2.shape[-2:])
        path = self.fusions[1](path, l2, l1.shape[-2:])
        path = self.fusions[0](path, l1, [2 * s for s in l1.shape[-2:]])
        out = self.output_conv1(path)
        out = _upsample(out, size)
        return self.output_conv2(out)
