"""The registry of the course's models: every architecture is built by name.

A family module registers each builder (a class, or a function for a preset such as
``densenet_bc_100_k12``) with the ``@register("name")`` decorator. ``create`` checks the name and
the hyper-parameters against the builder's signature, so that a typo is an error listing what is
valid instead of a silent default, and marks the model with ``model.blueprint`` (its name and the
hyper-parameters it was given), from which a run record can rebuild it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from torch import nn

from .._machinery import arguments as _arguments

_BUILDERS: dict[str, tuple[Callable[..., nn.Module], dict]] = {}


def register(name: str, **fixed):
    """Decorator: make the decorated builder available as ``create(name)``. ``fixed`` sets
    hyper-parameters that the name implies (``preact-resnet`` is ``ResNet`` with
    ``preact=True``); they can still be overridden."""
    def decorate(builder: Callable[..., nn.Module]):
        if name in _BUILDERS:
            raise ValueError(f"model name {name!r} is registered twice")
        _BUILDERS[name] = (builder, fixed)
        return builder
    return decorate


def names() -> list[str]:
    """All model names ``create`` accepts."""
    return sorted(_BUILDERS)


def hyperparameters(name: str) -> dict:
    """The hyper-parameters of model ``name`` with their defaults."""
    builder, fixed = _lookup(name)
    defaults = {key: p.default for key, p in inspect.signature(builder).parameters.items()}
    return {**defaults, **fixed}


def create(name: str, **hparams) -> nn.Module:
    """Build model ``name``; an unknown name or hyper-parameter is a ValueError listing the
    valid ones."""
    builder, fixed = _lookup(name)
    valid = hyperparameters(name)
    unknown = sorted(set(hparams) - set(valid))
    if unknown:
        listing = ", ".join(f"{key}={value!r}" for key, value in valid.items())
        raise ValueError(f"unknown hyper-parameter(s) {', '.join(map(repr, unknown))} for model "
                         f"{name!r}; valid: {listing}")
    classes = {**valid, **hparams}.get("num_classes", 2)
    if not (_arguments.is_whole(classes) and classes >= 2):
        raise ValueError(f"num_classes={classes!r} is not valid for model {name!r}: a classifier "
                         f"needs a whole number of at least 2 classes")
    _arguments.check(f"model {name!r}", builder, hparams)  # types and ranges, by annotation
    model = builder(**{**fixed, **hparams})
    model.blueprint = {"name": name, "hparams": dict(hparams)}
    return model


def count_parameters(model: nn.Module) -> int:
    """Learnable parameters (what papers count; BatchNorm running statistics are buffers)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def definition(model: nn.Module) -> dict:
    """What a run records of its model: for a model built by :func:`create`, its name and every
    hyper-parameter, defaults included; for any other module, its class, parameter count and
    parameter shapes."""
    blueprint = getattr(model, "blueprint", None)
    if blueprint:
        return definition_of(blueprint["name"], **blueprint["hparams"])
    shapes = [[key, list(value.shape)] for key, value in model.state_dict().items()]
    return {"class": type(model).__qualname__, "parameters": count_parameters(model),
            "shapes": shapes}


def definition_of(name: str, **hparams) -> dict:
    """:func:`definition` of ``create(name, **hparams)``, without building the model."""
    return {"name": name, "hparams": {**hyperparameters(name), **hparams}}


def _lookup(name: str):
    if name not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(names())}")
    return _BUILDERS[name]
