"""Measuring models: their size, a training step's peak memory, and throughput.

Size: parameters, FLOPs and a layer table. Throughput: of inference, and of a training step.

Peak memory is exact on a CUDA GPU (the allocator's peak) and on Linux (the peak resident memory
of a fresh process; how: :mod:`helpers._machinery.memory`); elsewhere it is reported as None.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import statistics
import sys
import time
from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ._machinery import allocator as _allocator, config, memory
from . import models
from .models.registry import count_parameters


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


def peak_step_memory(model_name: str, batch_sizes: list[int], input_shape=(3, 32, 32),
                     **hparams) -> dict:
    """Peak memory (MiB) of one training step of ``create(model_name, **hparams)`` per batch size.

    Returns ``{"device": ..., "method": ..., "peak_mib": {batch_size: MiB or None}}``."""
    if config.device_type() == "cuda":
        peaks = memory.measure_peaks(model_name, batch_sizes, input_shape, hparams, "cuda")
        return {"device": config.hardware(), "method": "CUDA allocator peak",
                "peak_mib": peaks}
    if not os.access("/proc/self/clear_refs", os.W_OK):
        return {"device": config.hardware(), "method": "not measurable on this system",
                "peak_mib": {b: None for b in batch_sizes}}
    request = json.dumps({"model": model_name, "batch_sizes": batch_sizes,
                          "input_shape": list(input_shape), "hparams": hparams})
    done = subprocess.run([sys.executable, "-m", "helpers._machinery.memory", request], check=True,
                          capture_output=True, text=True)
    peaks = {int(b): mib for b, mib in json.loads(done.stdout.splitlines()[-1]).items()}
    return {"device": config.hardware(), "method": "peak resident memory (Linux VmHWM)",
            "peak_mib": peaks}


def inference_throughput(model: torch.nn.Module, input_shape=(3, 32, 32), batch_size: int = 256,
                         batches: int = 5) -> float:
    """Images per second of ``model``'s forward pass on this machine's device, in eval mode with
    the training path's settings (bf16 autocast and channels_last where they help), timed over
    ``batches`` batches after two warm-up batches."""
    return _throughput(model, input_shape, batch_size, batches, train=False)


@dataclass(frozen=True)
class Rate:
    """Images per second timed several times: the median and the range, so that a table shows
    how much one timing moves."""
    median: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.median:,.0f} ({self.low:,.0f}–{self.high:,.0f})"


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
    return _throughput(model, input_shape, batch_size, batches, train=True, batch=batch,
                       precision=precision, channels_last=channels_last, warm_up=warm_up)


_LAYOUTS: dict = {}  # prefers_channels_last's answers in this process


def prefers_channels_last(model: torch.nn.Module, input_shape: tuple, batch_size: int,
                          precision: str | None = None) -> bool:
    """Whether a training step of ``model`` runs faster with channels-last memory on this
    machine: both layouts timed on copies of the model (one warm-up step, then two timed
    ones each), once per process for a model's blueprint, input shape, batch size and
    precision. The model and the random number generators are left as they were."""
    blueprint = getattr(model, "blueprint", None) or type(model).__name__
    key = (json.dumps(blueprint, sort_keys=True, default=str), tuple(input_shape), batch_size,
           precision or config.precision())
    if key not in _LAYOUTS:
        with torch.random.fork_rng():
            rates = {layout: training_throughput(copy.deepcopy(model), input_shape, batch_size,
                                                 batches=2, precision=precision,
                                                 channels_last=layout, warm_up=1)
                     for layout in (False, True)}
        _LAYOUTS[key] = rates[True] > rates[False]
    return _LAYOUTS[key]


def _throughput(model, input_shape, batch_size: int, batches: int, train: bool,
                batch: tuple | None = None, precision: str | None = None,
                channels_last: bool | None = None, warm_up: int = 2) -> float:
    device = config.device_type()
    _allocator.keep_freed_blocks()  # as training.fit does
    model = model.to(device).train(train)
    if batch is not None:
        x = batch[0].to(device)
        batch_size = len(x)
    else:
        x = torch.randn(batch_size, *input_shape, device=device)
    if channels_last is None:
        channels_last = device in ("cuda", "cpu")
    if channels_last:
        model = models.layers.to_channels_last(model)
        x = x.contiguous(memory_format=torch.channels_last)
    dtype = config.autocast_dtype(precision)
    autocast = torch.autocast(device, dtype=dtype or torch.bfloat16, enabled=dtype is not None)
    if train:
        labels = (batch[1].to(device) if batch is not None
                  else torch.zeros(batch_size, dtype=torch.long, device=device))
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

        def step():
            with autocast:
                loss = torch.nn.functional.cross_entropy(model(x), labels)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    else:
        def step():
            with torch.inference_mode(), autocast:
                model(x)
    for _ in range(warm_up):
        step()
    _synchronize(device)
    start = time.perf_counter()
    for _ in range(batches):
        step()
    _synchronize(device)
    return batch_size * batches / (time.perf_counter() - start)


def _synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()
    elif device == "mps":
        torch.mps.synchronize()
