"""DenseNet for small images (Huang et al., "Densely Connected Convolutional Networks", CVPR 2017).

One configurable class builds every DenseNet of the course: the paper's DenseNet (L=40, k=12),
DenseNet-BC (L=100, k=12), the original notebook's variants and UvA Tutorial 5's four-block
model (the class defaults). Inside a dense block each layer sees the concatenation of the
block's input and all earlier layers' outputs, and adds ``growth_rate`` new feature maps.

Module names follow UvA Tutorial 5 (``input_net``, ``blocks.N.block.K.net``,
``blocks.N.transition``, ``output_net``) so that its published weights load unchanged; a layer
concatenates its new maps *before* its input, as Tutorial 5 does (the order only matters for
loading weights).

``memory_efficient=True`` builds the blocks from :class:`MemoryEfficientDenseLayer`, which
recomputes each layer's concatenation, BatchNorm, activation and first convolution in the
backward pass instead of storing them (gradient checkpointing), as the DenseNet authors'
efficient implementation does: the stored activations then grow linearly with depth
instead of quadratically, for the price of a second forward pass through those operations.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .layers import activation, init_weights
from ._registry import register


def layers_per_block(depth: int, bottleneck: bool, blocks: int = 3) -> int:
    """Dense layers per block of a DenseNet of ``depth`` L (the paper's count of weighted layers:
    the stem, every convolution in the blocks, the transitions and the classifier).

    With 3 blocks: L = 3n + 4 without bottlenecks (one conv per layer), L = 6n + 4 with them."""
    convs_per_layer = 2 if bottleneck else 1
    layers, remainder = divmod(depth - (blocks + 1), blocks * convs_per_layer)
    if remainder or layers < 1:
        step = blocks * convs_per_layer
        raise ValueError(f"depth {depth} does not fit {blocks} blocks of "
                         f"{'bottleneck' if bottleneck else 'plain'} layers: it must be "
                         f"{blocks + 1} + a multiple of {step} (e.g. {blocks + 1 + step * 12})")
    return layers


@contextlib.contextmanager
def _batchnorm_statistics_frozen(module: nn.Module):
    """Restore every BatchNorm's running statistics afterwards (for a recomputation, which must
    not count the batch a second time)."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [[buffer.clone() for buffer in m.buffers()] for m in norms]
    try:
        yield
    finally:
        for norm, buffers in zip(norms, saved):
            for buffer, value in zip(norm.buffers(), buffers):
                buffer.copy_(value)


class DenseLayer(nn.Module):
    """BN-act-Conv3x3 (plain), or BN-act-Conv1x1-BN-act-Conv3x3 (bottleneck, DenseNet-B);
    optional dropout after each convolution. Takes the list of the block's feature maps so far,
    concatenates them, and returns ``growth_rate`` new maps."""

    def __init__(self, c_in: int, growth_rate: int, bottleneck_width: int, dropout: float,
                 act_fn: str):
        super().__init__()
        drop = [nn.Dropout(dropout)] if dropout else []
        if bottleneck_width:
            layers = [nn.BatchNorm2d(c_in), activation(act_fn),
                      nn.Conv2d(c_in, bottleneck_width, 1, bias=False), *drop,
                      nn.BatchNorm2d(bottleneck_width), activation(act_fn),
                      nn.Conv2d(bottleneck_width, growth_rate, 3, padding=1, bias=False), *drop]
        else:
            layers = [nn.BatchNorm2d(c_in), activation(act_fn),
                      nn.Conv2d(c_in, growth_rate, 3, padding=1, bias=False), *drop]
        self.net = nn.Sequential(*layers)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = torch.cat(features[::-1], dim=1)  # newest maps first, as Tutorial 5 orders them
        return self.net(x)


class MemoryEfficientDenseLayer(DenseLayer):
    """The same layer, storing less for the backward pass: the concatenation, the first
    BatchNorm, its activation and the first convolution are recomputed there instead of kept
    (gradient checkpointing). Their outputs are the large ones: the concatenation grows with
    every layer of the block."""

    def _first_conv(self, *features: torch.Tensor) -> torch.Tensor:
        return self.net[:3](torch.cat(features[::-1], dim=1))

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        if not (self.training and torch.is_grad_enabled()):  # nothing is stored: no need
            return super().forward(features)
        calls = []

        def first_conv(*inputs):
            calls.append(None)
            if len(calls) == 1:
                return self._first_conv(*inputs)
            with _batchnorm_statistics_frozen(self.net[:3]):  # the backward-pass recomputation
                return self._first_conv(*inputs)

        return self.net[3:](checkpoint(first_conv, *features, use_reentrant=False))


class DenseBlock(nn.Module):
    """``num_layers`` dense layers; the output concatenates the input and all new maps."""

    def __init__(self, c_in: int, num_layers: int, growth_rate: int, bottleneck_width: int,
                 dropout: float, act_fn: str, memory_efficient: bool):
        super().__init__()
        layer = MemoryEfficientDenseLayer if memory_efficient else DenseLayer
        self.block = nn.Sequential(*[
            layer(c_in + i * growth_rate, growth_rate, bottleneck_width, dropout, act_fn)
            for i in range(num_layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.block:
            features.append(layer(features))
        return torch.cat(features[::-1], dim=1)


class TransitionLayer(nn.Module):
    """BN-act-Conv1x1-AvgPool2x2: halves the resolution, and with compression the width."""

    def __init__(self, c_in: int, c_out: int, act_fn: str):
        super().__init__()
        self.transition = nn.Sequential(nn.BatchNorm2d(c_in), activation(act_fn),
                                        nn.Conv2d(c_in, c_out, 1, bias=False),
                                        nn.AvgPool2d(2, stride=2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.transition(x)


@register("densenet")
class DenseNet(nn.Module):
    """A DenseNet for 32x32 (or 28x28) inputs.

    ``block_config``: layers per dense block (3 blocks in the paper; the defaults are Tutorial
    5's four blocks). ``bottleneck_width``: width of the 1x1 bottleneck convolution, 0 for none
    (the paper's DenseNet-B uses 4 x growth_rate). ``compression``: a transition keeps
    floor(compression x width) channels (DenseNet-C: 0.5). ``stem_channels``: width of the first
    3x3 convolution (paper: 16, or 2 x growth_rate for DenseNet-BC). ``dropout``: after every
    convolution in the blocks (the paper: 0.2 when training without augmentation).
    """

    def __init__(self, num_classes: int = 10, block_config: tuple = (6, 6, 6, 6),
                 growth_rate: int = 16, bottleneck_width: int = 32, compression: float = 0.5,
                 stem_channels: int = 32, stem_bias: bool = True, dropout: float = 0.0,
                 act_fn: str = "relu", in_channels: int = 3, memory_efficient: bool = False):
        super().__init__()
        self.input_net = nn.Sequential(
            nn.Conv2d(in_channels, stem_channels, 3, padding=1, bias=stem_bias))
        blocks, width = [], stem_channels
        self.widths = [width]  # channel count after the stem, each block and each transition
        for index, num_layers in enumerate(block_config):
            blocks.append(DenseBlock(width, num_layers, growth_rate, bottleneck_width, dropout,
                                     act_fn, memory_efficient))
            width += num_layers * growth_rate
            self.widths.append(width)
            if index < len(block_config) - 1:
                blocks.append(TransitionLayer(width, int(compression * width), act_fn))
                width = int(compression * width)
                self.widths.append(width)
        self.blocks = nn.Sequential(*blocks)
        self.output_net = nn.Sequential(nn.BatchNorm2d(width), activation(act_fn),
                                        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                        nn.Linear(width, num_classes))
        init_weights(self, act_fn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_net(self.blocks(self.input_net(x)))


def densenet(depth: int, growth_rate: int = 12, bc: bool = False, **hparams) -> DenseNet:
    """The paper's 3-block CIFAR DenseNet of depth L: plain (no bottleneck, no compression,
    16-channel stem) or DenseNet-BC (bottleneck 4k, compression 0.5, 2k-channel stem)."""
    n = layers_per_block(depth, bottleneck=bc)
    paper = {"block_config": (n, n, n), "growth_rate": growth_rate,
             "bottleneck_width": 4 * growth_rate if bc else 0, "compression": 0.5 if bc else 1.0,
             "stem_channels": 2 * growth_rate if bc else 16, "stem_bias": False}
    return DenseNet(**{**paper, **hparams})


@register("densenet-40-k12")
def densenet_40_k12(num_classes: int = 10, dropout: float = 0.0, act_fn: str = "relu",
                    in_channels: int = 3, memory_efficient: bool = False) -> DenseNet:
    """The paper's DenseNet (L=40, k=12): 1,019,722 parameters for CIFAR-10 (the paper: 1.0M)."""
    return densenet(40, 12, bc=False, num_classes=num_classes, dropout=dropout, act_fn=act_fn,
                    in_channels=in_channels, memory_efficient=memory_efficient)


@register("densenet-bc-100-k12")
def densenet_bc_100_k12(num_classes: int = 10, dropout: float = 0.0, act_fn: str = "relu",
                        in_channels: int = 3, memory_efficient: bool = False) -> DenseNet:
    """The paper's DenseNet-BC (L=100, k=12): 769,162 parameters for CIFAR-10 (the paper: 0.8M)."""
    return densenet(100, 12, bc=True, num_classes=num_classes, dropout=dropout, act_fn=act_fn,
                    in_channels=in_channels, memory_efficient=memory_efficient)
