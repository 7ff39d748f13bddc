"""The course's models, built by name: ``create("allcnn", c=64)``, ``names()``.

Shaped like torchvision's ``models``: one module per family (``allcnn``, ``ccnn``, ``densenet``,
``inception``, ``resnet``, ``vgg``), each registering its builders with ``@register`` (the
registry is the private ``_registry``, as timm's); shared building blocks in ``layers``, and the
checkered layers in ``checkered``, as timm keeps its layers beside its models; the published
weights of UvA Tutorial 5 in ``weights``. This file only gathers them. Measuring a model
(parameters, FLOPs, memory, speed) is :mod:`helpers.measure`'s.
"""

from . import allcnn, ccnn, checkered, densenet, inception, resnet, vgg, weights
from .layers import activation, init_weights, to_channels_last
from ._registry import (count_parameters, create, definition, definition_of, hyperparameters,
                        names, register)

__all__ = ["create", "names", "count_parameters", "hyperparameters", "definition",
           "definition_of", "register", "activation", "init_weights", "to_channels_last",
           "allcnn", "ccnn", "checkered", "densenet", "inception", "resnet", "vgg", "weights"]
