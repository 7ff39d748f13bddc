"""Building blocks shared by the model families.

Activations by name, the conv-BN-activation unit, the He initialisation of the CIFAR models, and
the channels-last weight layout."""

from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "leakyrelu": nn.LeakyReLU, "tanh": nn.Tanh, "gelu": nn.GELU}
# The gain He initialisation uses for each activation (GELU is close enough to ReLU).
_INIT_GAIN = {"relu": "relu", "gelu": "relu", "leakyrelu": "leaky_relu", "tanh": "tanh"}


def activation(name: str) -> nn.Module:
    """A fresh activation module by name; an unknown name lists the valid ones."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; valid: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def conv_bn_act(c_in: int, c_out: int, kernel_size: int, act_fn: str) -> list[nn.Module]:
    """A same-size convolution (with bias), BatchNorm and the activation, as a list to splice
    into an ``nn.Sequential`` (flat module names, as Tutorial 5's published weights have)."""
    return [nn.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2),
            nn.BatchNorm2d(c_out), activation(act_fn)]


def init_weights(model: nn.Module, act_fn: str, mode: str = "fan_in") -> None:
    """He-normal convolutions for the activation, BatchNorm scale 1 and shift 0, zero linear
    biases: the initialisation of torchvision's and UvA Tutorial 5's CIFAR models."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode=mode, nonlinearity=_INIT_GAIN[act_fn])
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.zeros_(module.bias)


def to_channels_last(model: nn.Module) -> nn.Module:
    """Store every 4-D weight channels-last (faster convolutions on most hardware); other
    tensors, such as the 5-D weights of checkered layers, stay as they are."""
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.dim() == 4:
            # clone, not contiguous(): that keeps a one-channel weight's usual strides
            tensor.data = tensor.data.clone(memory_format=torch.channels_last)
    return model
