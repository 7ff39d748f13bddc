"""The course's models, built by name: ``create("allcnn", c=64)``, ``names()``.

Each family lives in its own module and registers its builders here. ``create`` checks the name
and the hyper-parameters against the builder's signature, so a typo is an error that lists what
is valid instead of a silent default. The model it returns carries ``model.spec`` (name and
hyper-parameters) so that checkpoints can record how to rebuild it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import pandas as pd
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

_REGISTRY: dict[str, tuple[Callable[..., nn.Module], dict]] = {}

ACTIVATIONS = {"relu": nn.ReLU, "leakyrelu": nn.LeakyReLU, "tanh": nn.Tanh, "gelu": nn.GELU}
# The gain He initialisation uses for each activation (GELU is close enough to ReLU).
_INIT_GAIN = {"relu": "relu", "gelu": "relu", "leakyrelu": "leaky_relu", "tanh": "tanh"}


def activation(name: str) -> nn.Module:
    """A fresh activation module by name; an unknown name lists the valid ones."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; valid: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


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


def register(name: str, builder: Callable[..., nn.Module], **preset) -> None:
    """Make ``builder`` available as ``create(name)``, with ``preset`` as fixed defaults."""
    if name in _REGISTRY:
        raise ValueError(f"model name {name!r} is registered twice")
    _REGISTRY[name] = (builder, preset)


def names() -> list[str]:
    """All model names ``create`` accepts."""
    return sorted(_REGISTRY)


def hyperparameters(name: str) -> dict:
    """The hyper-parameters of model ``name`` with their defaults."""
    builder, preset = _lookup(name)
    defaults = {key: p.default for key, p in inspect.signature(builder).parameters.items()}
    return {**defaults, **preset}


def create(name: str, **hparams) -> nn.Module:
    """Build model ``name``; an unknown name or hyper-parameter is a ValueError listing the
    valid ones."""
    builder, preset = _lookup(name)
    valid = hyperparameters(name)
    unknown = sorted(set(hparams) - set(valid))
    if unknown:
        listing = ", ".join(f"{key}={value!r}" for key, value in valid.items())
        raise ValueError(f"unknown hyper-parameter(s) {', '.join(map(repr, unknown))} for model "
                         f"{name!r}; "
                         f"valid: {listing}")
    classes = {**valid, **hparams}.get("num_classes", 2)
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 2:
        raise ValueError(f"num_classes={classes!r} is not valid for model {name!r}: a classifier "
                         f"needs a whole number of at least 2 classes")
    model = builder(**{**preset, **hparams})
    model.spec = {"name": name, "hparams": dict(hparams)}
    return model


def _lookup(name: str):
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(names())}")
    return _REGISTRY[name]


def to_channels_last(model: nn.Module) -> nn.Module:
    """Store every 4-D weight channels-last (faster convolutions on most hardware); other
    tensors, such as the 5-D weights of checkered layers, stay as they are."""
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.dim() == 4:
            tensor.data = tensor.data.contiguous(memory_format=torch.channels_last)
    return model


def count_parameters(model: nn.Module) -> int:
    """Learnable parameters (what papers count; BatchNorm running statistics are buffers)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """FLOPs of one forward pass of a single input (torch's counter: a multiply-add counts 2)."""
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, *input_shape))
    model.train(was_training)
    return counter.get_total_flops()


def summary(model: nn.Module, input_shape: tuple[int, ...]) -> pd.DataFrame:
    """One row per leaf layer: name, type, output shape and learnable parameters."""
    rows, hooks = [], []
    for layer_name, layer in model.named_modules():
        if next(layer.children(), None) is None:  # leaf layers only
            def record(module, _inputs, output, layer_name=layer_name):
                rows.append({"layer": layer_name, "type": type(module).__name__,
                             "output shape": tuple(output.shape[1:]),
                             "parameters": count_parameters(module)})
            hooks.append(layer.register_forward_hook(record))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return pd.DataFrame(rows)


from . import allcnn, ccnn, densenet, inception, resnet, vgg  # noqa: E402  (each registers its own)

__all__ = ["create", "names", "hyperparameters", "register", "count_parameters", "count_flops",
           "summary", "to_channels_last", "activation", "init_weights", "allcnn", "ccnn",
           "densenet", "inception", "resnet", "vgg"]
