"""All-convolutional networks: the course's AllCNN and All-CNN-C.

The AllCNN is the original notebook's ("The AllConv Net"); All-CNN-C is Springenberg et al.'s.

Both replace max-pooling by stride-2 convolutions and the fully connected classifier by a 1x1
convolution to one map per class followed by global average pooling.

``AllCNN`` keeps the original notebook's layer layout and parameter count exactly (1,387,044 for
c=64 and 100 classes) but fixes its bugs: the head ends with a plain 1x1 convolution (the original
applied Dropout2d and ReLU to the class maps; ``seed_head=True`` restores that for comparison),
the output is flattened instead of squeezed (batch size 1 works), and shortcuts are only added
where they are switched on.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ._registry import register


class ConvUnit(nn.Sequential):
    """Conv (with bias, as in the original notebook) -> BatchNorm -> Dropout2d. The ReLU is
    applied by the network, after an optional shortcut is added."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 3, stride: int = 1,
                 dropout: float = 0.2):
        super().__init__(
            nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=kernel_size // 2),
            nn.BatchNorm2d(c_out),
            nn.Dropout2d(dropout),
        )
        # An identity shortcut fits wherever the unit keeps the shape.
        self.keeps_shape = stride == 1 and c_in == c_out


@register("allcnn")
class AllCNN(nn.Module):
    """The original notebook's all-convolutional net: widths c, 2c, 4c; stride-2 downsampling.

    Layers: conv1 3->c, conv2 c->c, conv3 c->2c (stride 2), conv4, conv5 2c->2c,
    conv6 2c->4c (stride 2), conv7 4c->4c, conv8 4c->4c (1x1), classifier 4c->classes (1x1),
    then global average pooling. With ``residual=True`` an identity shortcut is added before the
    ReLU of every unit that keeps its shape (conv2, 4, 5, 7, 8): same parameters, new paths.
    """

    def __init__(self, c: int = 32, num_classes: int = 100, residual: bool = False,
                 dropout: float = 0.2, in_channels: int = 3, seed_head: bool = False):
        super().__init__()
        self.residual = residual
        self.seed_head = seed_head
        self.units = nn.ModuleList([
            ConvUnit(in_channels, c, dropout=dropout),
            ConvUnit(c, c, dropout=dropout),
            ConvUnit(c, 2 * c, stride=2, dropout=dropout),
            ConvUnit(2 * c, 2 * c, dropout=dropout),
            ConvUnit(2 * c, 2 * c, dropout=dropout),
            ConvUnit(2 * c, 4 * c, stride=2, dropout=dropout),
            ConvUnit(4 * c, 4 * c, dropout=dropout),
            ConvUnit(4 * c, 4 * c, kernel_size=1, dropout=dropout),
        ])
        self.classifier = nn.Conv2d(4 * c, num_classes, kernel_size=1)  # one map per class
        self.head_dropout = nn.Dropout2d(dropout) if seed_head else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for unit in self.units:
            y = unit(x)
            if self.residual and unit.keeps_shape:
                y = y + x
            x = F.relu(y)
        maps = self.classifier(x)
        if self.seed_head:  # the original's head: dropout and ReLU on the class maps
            maps = F.relu(self.head_dropout(maps))
        return maps.mean(dim=(2, 3))  # global average pooling -> (N, classes), also for N = 1


@register("allcnn-c")
class AllCNNC(nn.Module):
    """All-CNN-C as published (Springenberg et al., ICLR 2015 workshop, Table 2 model C).

    Conv biases, ReLU after every conv but the class conv, no BatchNorm; 20% dropout on the input
    and 50% after each stride-2 conv; a 3x3 'valid' conv (8x8 -> 6x6), two 1x1 convs, global
    average pooling. 1,369,738 parameters for 10 classes, 1,387,108 for 100.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, input_dropout: float = 0.2,
                 dropout: float = 0.5):
        super().__init__()

        def conv(c_in, c_out, kernel_size=3, stride=1, padding=1):
            return [nn.Conv2d(c_in, c_out, kernel_size, stride, padding), nn.ReLU(inplace=True)]

        self.features = nn.Sequential(
            nn.Dropout(input_dropout),
            *conv(in_channels, 96), *conv(96, 96), *conv(96, 96, stride=2), nn.Dropout(dropout),
            *conv(96, 192), *conv(192, 192), *conv(192, 192, stride=2), nn.Dropout(dropout),
            *conv(192, 192, padding=0), *conv(192, 192, kernel_size=1, padding=0),
        )
        self.classifier = nn.Conv2d(192, num_classes, kernel_size=1)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):  # He initialisation for a ReLU net without BN
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x)).mean(dim=(2, 3))

