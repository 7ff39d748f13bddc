"""The toy checkered CNN of Sadigh & Sen's MNIST demo, and its plain twin.

Five 3x3 convolutions with BatchNorm and ReLU (32, 32, 45, 45, 64 channels), the third with
stride 2, then dropout, global average pooling and a linear classifier. In the checkered
version the stride-2 convolution makes two submaps, and the last convolution (depth 2, a
2x3x3 kernel) merges them again: 93,833 parameters for 1-channel inputs. The twin is the same
network with ordinary layers (and an ordinary 3x3 last convolution): 67,913 parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from .checkered import CheckeredConv2d, convert_to_checkered
from ._registry import register

WIDTHS = (32, 32, 45, 45, 64)


@register("ccnn-toy")
class CCNNToy(nn.Module):
    """The checkered toy model; takes ordinary (N, C, H, W) images."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, dropout: float = 0.2,
                 sampling: str = "naive"):
        super().__init__()
        layers, c_in = [], in_channels
        for index, c_out in enumerate(WIDTHS):
            layers += [CheckeredConv2d(c_in, c_out, 3, stride=2 if index == 2 else 1, padding=1,
                                       depth=2 if index == 4 else 1, sampling=sampling),
                       nn.BatchNorm3d(c_out), nn.ReLU(inplace=True)]
            c_in = c_out
        self.features = nn.Sequential(*layers, nn.Dropout3d(dropout))
        self.classifier = nn.Linear(WIDTHS[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.features(x.unsqueeze(2))       # (N, 64, 1, 14, 14) for 28x28 input
        return self.classifier(features.mean(dim=(2, 3, 4)))


@register("cnn-toy")
class CNNToy(nn.Module):
    """The same network with ordinary 2-D layers."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, dropout: float = 0.2):
        super().__init__()
        layers, c_in = [], in_channels
        for index, c_out in enumerate(WIDTHS):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2 if index == 2 else 1, padding=1),
                       nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            c_in = c_out
        self.features = nn.Sequential(*layers, nn.Dropout2d(dropout), nn.AdaptiveAvgPool2d(1),
                                      nn.Flatten())
        self.classifier = nn.Linear(WIDTHS[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register("cnn-toy-checkered")
def cnn_toy_checkered(num_classes: int = 10, in_channels: int = 1, dropout: float = 0.2,
                      sampling: str = "naive") -> nn.Module:
    """The plain twin converted by ``convert_to_checkered``: checkered from its stride-2
    convolution on, with exactly the twin's 67,913 parameters (its last convolution stays
    3x3 and the global pooling averages the submaps), so that it compares with the twin at
    equal parameters where the toy CCNN has 38 % more."""
    return convert_to_checkered(CNNToy(num_classes, in_channels, dropout), sampling,
                                input_shape=(in_channels, 28, 28))

