"""ResNet and pre-activation ResNet for small images, as in UvA Deep Learning Tutorial 5.

He et al., "Deep Residual Learning for Image Recognition" (CVPR 2016) adds the input of a block
to its output, so that a block only has to learn a residual. The pre-activation variant (He et
al., "Identity Mappings in Deep Residual Networks", ECCV 2016) moves BatchNorm and the activation
in front of each convolution, leaving the identity path free of any non-linearity.

Three groups of blocks at 32x32, 16x16 and 8x8 (widths 16, 32, 64, 3 blocks each by default);
the first block of each later group halves the resolution with a stride-2 convolution, and its
shortcut is a stride-2 1x1 convolution. Module names follow Tutorial 5, so that its published
weights load unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import activation, init_weights
from ._registry import register


class ResNetBlock(nn.Module):
    """Conv3x3-BN-act-Conv3x3-BN, plus the (projected) input, then the activation."""

    def __init__(self, c_in: int, act_fn: str, subsample: bool = False, c_out: int = -1):
        super().__init__()
        c_out = c_out if subsample else c_in
        self.net = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, padding=1, stride=2 if subsample else 1, bias=False),
            nn.BatchNorm2d(c_out), activation(act_fn),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out))
        self.downsample = nn.Conv2d(c_in, c_out, 1, stride=2) if subsample else None
        self.act_fn = activation(act_fn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.downsample(x) if self.downsample is not None else x
        return self.act_fn(self.net(x) + shortcut)


class PreActResNetBlock(nn.Module):
    """BN-act-Conv3x3-BN-act-Conv3x3, plus the input; no activation after the sum. A subsampling
    shortcut is BN-act-Conv1x1, since its input has not been through a non-linearity yet."""

    def __init__(self, c_in: int, act_fn: str, subsample: bool = False, c_out: int = -1):
        super().__init__()
        c_out = c_out if subsample else c_in
        self.net = nn.Sequential(
            nn.BatchNorm2d(c_in), activation(act_fn),
            nn.Conv2d(c_in, c_out, 3, padding=1, stride=2 if subsample else 1, bias=False),
            nn.BatchNorm2d(c_out), activation(act_fn),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False))
        self.downsample = nn.Sequential(
            nn.BatchNorm2d(c_in), activation(act_fn),
            nn.Conv2d(c_in, c_out, 1, stride=2, bias=False)) if subsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.downsample(x) if self.downsample is not None else x
        return self.net(x) + shortcut


@register("preact-resnet", preact=True)
@register("resnet")
class ResNet(nn.Module):
    """``num_blocks[i]`` blocks of width ``c_hidden[i]`` per group; ``preact`` picks the block.

    The stem is a 3x3 convolution (followed by BN and the activation for the original block;
    a pre-activation network applies those inside its first block instead)."""

    def __init__(self, num_classes: int = 10, num_blocks: tuple = (3, 3, 3),
                 c_hidden: tuple = (16, 32, 64), act_fn: str = "relu", preact: bool = False,
                 in_channels: int = 3):
        super().__init__()
        if len(num_blocks) != len(c_hidden):
            raise ValueError(f"model 'resnet': num_blocks={num_blocks!r} and c_hidden="
                             f"{c_hidden!r} must be as long as each other: one width per "
                             f"group of blocks")
        block = PreActResNetBlock if preact else ResNetBlock
        stem = [nn.Conv2d(in_channels, c_hidden[0], 3, padding=1, bias=False)]
        self.input_net = nn.Sequential(
            *stem, *([] if preact else [nn.BatchNorm2d(c_hidden[0]), activation(act_fn)]))
        blocks = []
        for group, count in enumerate(num_blocks):
            for index in range(count):
                subsample = index == 0 and group > 0
                blocks.append(block(c_hidden[group - 1 if subsample else group], act_fn,
                                    subsample=subsample, c_out=c_hidden[group]))
        self.blocks = nn.Sequential(*blocks)
        self.output_net = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                        nn.Linear(c_hidden[-1], num_classes))
        init_weights(self, act_fn, mode="fan_out")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_net(self.blocks(self.input_net(x)))

