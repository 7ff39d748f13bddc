"""Measuring models: their size, a training step's peak memory, and throughput.

Size: parameters, FLOPs and a layer table. Throughput: of inference, and of a training step
(timed as :mod:`helpers._machinery.timing` says).

Peak memory is exact on a CUDA GPU (the allocator's peak) and on Linux (the peak resident memory
of a fresh process; how: :mod:`helpers._machinery.memory`); elsewhere it is reported as None.
"""

from __future__ import annotations

import statistics

import pandas as pd
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ._machinery import timing
from ._machinery.timing import Rate
from ._machinery.memory import peak_step_memory  # noqa: F401 (how: in there)
from .models import count_parameters


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


def inference_throughput(model: torch.nn.Module, input_shape=(3, 32, 32), batch_size: int = 256,
                         batches: int = 5) -> float:
    """Images per second of ``model``'s forward pass on this machine's device, in eval mode with
    the training path's settings (bf16 autocast and channels_last where they help), timed over
    ``batches`` batches after two warm-up batches."""
    return timing.throughput(model, input_shape, batch_size, batches, train=False)


def inference_rate(model: torch.nn.Module, input_shape=(3, 32, 32), batch_size: int = 256,
                   batches: int = 5, repeats: int = 3) -> Rate:
    """:func:`inference_throughput`, timed ``repeats`` times."""
    rates = sorted(inference_throughput(model, input_shape, batch_size, batches)
                   for _ in range(repeats))
    return Rate(statistics.median(rates), rates[0], rates[-1])


def training_throughput(model: torch.nn.Module, input_shape=(3, 32, 32), batch_size: int = 128,
                        batches: int = 3, batch: tuple | None = None,
                        precision: str | None = None, channels_last: bool | None = None,
                        warm_up: int = 2) -> float:
    """Images per second of a training step of ``model`` (forward, cross-entropy, backward,
    SGD update) with the training path's settings, timed over ``batches`` steps after
    ``warm_up`` steps. ``batch``: real (images, labels) to time with, instead of random images
    (which some models process markedly slower on a CPU). ``precision``: the Lightning
    precision to time in (default: this machine's). ``channels_last``: the memory layout
    (default: channels-last on CUDA and CPUs). The steps change the model's weights."""
    return timing.throughput(model, input_shape, batch_size, batches, train=True, batch=batch,
                       precision=precision, channels_last=channels_last, warm_up=warm_up)
