"""The course's models, built by name: ``create("allcnn", c=64)``, ``names()``.

Shaped like torchvision's ``models``: one module per family (``allcnn``, ``ccnn``, ``densenet``,
``inception``, ``resnet``, ``vgg``), each registering its builders in ``registry``; shared
building blocks in ``layers``; the published weights of UvA Tutorial 5 in ``weights``. This file
only gathers them. Counting parameters and FLOPs lives in :mod:`helpers.measure`.
"""

from . import allcnn, ccnn, densenet, inception, resnet, vgg, weights
from .layers import activation, init_weights, to_channels_last
from .registry import create, hyperparameters, names, register

__all__ = ["create", "names", "hyperparameters", "register", "activation", "init_weights",
           "to_channels_last", "allcnn", "ccnn", "densenet", "inception", "resnet", "vgg",
           "weights"]
