"""VGG networks with free layer widths, as used by Mundt et al.'s feature-amount sweep.

Simonyan & Zisserman's VGG (ICLR 2015) stacks 3x3 convolutions in five blocks, each ending with a
2x2 max-pooling, and classifies with fully connected layers. This version follows the sweep's
code: convolutions without bias, BatchNorm (eps 1e-4) and ReLU; at 32x32 input the five poolings
leave 1x1, so the classifier is two hidden linear layers with BatchNorm and ReLU, dropout 0.5 and
the output layer; Kaiming-normal initialisation. ``widths`` lists the convolutions' widths and
then the two hidden layers', so any profile of feature amounts can be built.
"""

from __future__ import annotations

import torch
from torch import nn

from ._registry import register

# Convolutions per block for a given number of convolutions (VGG-A, the sweep's depth 10, B and
# depth 13, D, E).
BLOCKS = {8: (1, 1, 2, 2, 2), 7: (2, 2, 1, 1, 1), 10: (2, 2, 2, 2, 2), 13: (2, 2, 3, 3, 3),
          16: (2, 2, 4, 4, 4)}
STANDARD_WIDTHS = {  # Simonyan & Zisserman's configurations, with 512-unit hidden layers
    "A": (64, 128, 256, 256, 512, 512, 512, 512, 512, 512),
    "B": (64, 64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512),
    "D": (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512, 512, 512),
    "E": (64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512, 512, 512, 512, 512, 512, 512),
}


def blocks_for(widths) -> tuple:
    """The convolutions per block for a width list (convolutions, then two hidden layers)."""
    convs = len(widths) - 2
    if convs not in BLOCKS:
        raise ValueError(f"{len(widths)} widths give {convs} convolutions; valid: "
                         f"{', '.join(str(c + 2) for c in sorted(BLOCKS))} widths")
    return BLOCKS[convs]


# Simonyan & Zisserman's configurations by name: VGG-A, B, D and E have 11, 13, 16 and 19 weight
# layers; VGG-D is the sweep's baseline.
@register("vgg-e", widths=STANDARD_WIDTHS["E"])
@register("vgg-d", widths=STANDARD_WIDTHS["D"])
@register("vgg-b", widths=STANDARD_WIDTHS["B"])
@register("vgg-a", widths=STANDARD_WIDTHS["A"])
@register("vgg")
class VGG(nn.Module):
    """VGG with the given layer ``widths`` (the convolutions', then the two hidden layers')."""

    def __init__(self, widths=STANDARD_WIDTHS["D"], num_classes: int = 10, in_channels: int = 3,
                 bn_eps: float = 1e-4, dropout: float = 0.5):
        super().__init__()
        widths = [int(w) for w in widths]
        layers, c_in, index = [], in_channels, 0
        for convs in blocks_for(widths):
            for _ in range(convs):
                layers += [nn.Conv2d(c_in, widths[index], 3, padding=1, bias=False),
                           nn.BatchNorm2d(widths[index], eps=bn_eps), nn.ReLU(inplace=True)]
                c_in, index = widths[index], index + 1
            layers.append(nn.MaxPool2d(2, 2))
        self.features = nn.Sequential(*layers)
        hidden1, hidden2 = widths[-2:]
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c_in, hidden1, bias=False), nn.BatchNorm1d(hidden1, eps=bn_eps),
            nn.ReLU(inplace=True),
            nn.Linear(hidden1, hidden2, bias=False), nn.BatchNorm1d(hidden2, eps=bn_eps),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(hidden2, num_classes))
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight)  # PyTorch's defaults: fan_in, gain sqrt(2)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def _convolutions(widths, in_channels: int, size: int):
    """(input channels, output channels, input size) of each 3x3 convolution, in order."""
    c_in, index = in_channels, 0
    for convs in blocks_for(widths):
        for _ in range(convs):
            yield c_in, widths[index], size
            c_in, index = widths[index], index + 1
        size //= 2


def macs(widths, num_classes: int = 10, in_channels: int = 3, size: int = 32) -> int:
    """Multiply-accumulates of one forward pass (convolutions and linear layers)."""
    layers = _convolutions(widths, in_channels, size)
    convs = sum(9 * c_in * c_out * s * s for c_in, c_out, s in layers)
    flat, (hidden1, hidden2) = widths[-3] * (size // 32) ** 2, widths[-2:]  # after 5 poolings
    return convs + flat * hidden1 + hidden1 * hidden2 + hidden2 * num_classes


def parameter_count(widths, num_classes: int = 10, in_channels: int = 3, size: int = 32) -> int:
    """Learnable parameters of ``VGG(widths)``, without building it: 3x3 convolution weights,
    BatchNorm scales and shifts, hidden linear weights and the output layer with its bias."""
    layers = _convolutions(widths, in_channels, size)
    convs = sum(9 * c_in * c_out + 2 * c_out for c_in, c_out, _ in layers)  # weights, BN
    flat, (hidden1, hidden2) = widths[-3] * (size // 32) ** 2, widths[-2:]  # after 5 poolings
    return (convs + flat * hidden1 + 2 * hidden1 + hidden1 * hidden2 + 2 * hidden2
            + hidden2 * num_classes + num_classes)
