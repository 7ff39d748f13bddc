"""How ``measure`` times a model: forward passes or training steps, after warm-up steps.

Timed with the training path's settings: the device, autocast, the memory layout and the
allocator's handling of big blocks."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from . import allocator as _allocator, config
from .layout import images_in_layout
from .. import models


@dataclass(frozen=True)
class Rate:
    """Images per second timed several times: the median and the range, so that a table shows
    how much one timing moves."""
    median: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.median:,.0f} ({self.low:,.0f}–{self.high:,.0f})"


def throughput(model, input_shape, batch_size: int, batches: int, train: bool,
                batch: tuple | None = None, precision: str | None = None,
                channels_last: bool | None = None, warm_up: int = 2) -> float:
    """Images per second of ``batches`` forward passes (``train`` False) or training steps of
    ``model``, after ``warm_up`` of them (see ``measure.training_throughput``)."""
    device = config.device_type()
    _allocator.keep_freed_blocks()  # as training.fit does
    model = model.to(device).train(train)
    if channels_last is None:
        channels_last = device in ("cuda", "cpu")
    if batch is not None:
        x = batch[0].to(device)
        batch_size = len(x)
    else:
        x = torch.randn(batch_size, *input_shape, device=device)
    if channels_last:
        model = models.layers.to_channels_last(model)
    x = images_in_layout(x, channels_last)
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
