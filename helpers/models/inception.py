"""A GoogleNet for small images, as in UvA Deep Learning Tutorial 5.

Szegedy et al., "Going Deeper with Convolutions" (CVPR 2015): an Inception block runs 1x1, 3x3
and 5x5 convolutions and a max-pooling in parallel and concatenates their outputs, so the network
can pick the right receptive field per feature. 1x1 convolutions reduce the channels in front of
the expensive 3x3 and 5x5 branches. This CIFAR version (260,650 parameters) follows the tutorial,
with BatchNorm after every convolution and module names that load its published weights.
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import conv_bn_act, init_weights
from ._registry import register


class InceptionBlock(nn.Module):
    """Four branches, concatenated in the order 1x1, 3x3, 5x5, max-pool.

    ``c_red``: channels of the 1x1 reductions before the 3x3 and 5x5 convolutions;
    ``c_out``: output channels of each branch (keys "1x1", "3x3", "5x5", "max")."""

    def __init__(self, c_in: int, c_red: dict, c_out: dict, act_fn: str):
        super().__init__()
        self.conv_1x1 = nn.Sequential(*conv_bn_act(c_in, c_out["1x1"], 1, act_fn))
        self.conv_3x3 = nn.Sequential(*conv_bn_act(c_in, c_red["3x3"], 1, act_fn),
                                      *conv_bn_act(c_red["3x3"], c_out["3x3"], 3, act_fn))
        self.conv_5x5 = nn.Sequential(*conv_bn_act(c_in, c_red["5x5"], 1, act_fn),
                                      *conv_bn_act(c_red["5x5"], c_out["5x5"], 5, act_fn))
        self.max_pool = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1),
                                      *conv_bn_act(c_in, c_out["max"], 1, act_fn))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.conv_1x1, self.conv_3x3, self.conv_5x5, self.max_pool)
        return torch.cat([branch(x) for branch in branches], dim=1)


# (c_in, reductions 3x3/5x5, outputs 1x1/3x3/5x5/max) per block; None marks a stride-2 max-pool.
TUTORIAL5_BLOCKS = [
    (64, (32, 16), (16, 32, 8, 8)), (64, (32, 16), (24, 48, 12, 12)), None,
    (96, (32, 16), (24, 48, 12, 12)), (96, (32, 16), (16, 48, 16, 16)),
    (96, (32, 16), (16, 48, 16, 16)), (96, (32, 16), (32, 48, 24, 24)), None,
    (128, (48, 16), (32, 64, 16, 16)), (128, (48, 16), (32, 64, 16, 16)),
]


@register("googlenet")
class GoogleNet(nn.Module):
    """A 3x3 stem with 64 channels, eight Inception blocks with two stride-2 max-pools between
    them (32x32 -> 16x16 -> 8x8), global average pooling and a linear classifier."""

    def __init__(self, num_classes: int = 10, act_fn: str = "relu", in_channels: int = 3):
        super().__init__()
        self.input_net = nn.Sequential(*conv_bn_act(in_channels, 64, 3, act_fn))
        blocks = []
        for spec in TUTORIAL5_BLOCKS:
            if spec is None:
                blocks.append(nn.MaxPool2d(3, stride=2, padding=1))
                continue
            c_in, (red3, red5), (out1, out3, out5, out_max) = spec
            blocks.append(InceptionBlock(c_in, {"3x3": red3, "5x5": red5},
                                         {"1x1": out1, "3x3": out3, "5x5": out5, "max": out_max},
                                         act_fn))
        self.inception_blocks = nn.Sequential(*blocks)
        self.output_net = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                        nn.Linear(128, num_classes))
        init_weights(self, act_fn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_net(self.inception_blocks(self.input_net(x)))

