"""A training step's peak memory, as ``measure.peak_step_memory`` reports it.

On a CUDA GPU the allocator's peak above what was allocated before (weights, gradients, the
batch); on a Linux CPU the growth of the process's peak resident memory (VmHWM), in a fresh
process in which every allocation of 64 KiB or more is mapped and unmapped directly, so that
freed memory is returned at once and the peak reflects what was really held. ``python -m
helpers._machinery.memory REQUEST`` is that process. Also how ``memory_safe`` tells that the device
ran out of memory, and hands back what the failed attempt held."""

from __future__ import annotations

import functools
import gc
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from . import allocator as _allocator, config
from .. import models


_MIB = 2 ** 20
OUT_OF_MEMORY = ("out of memory", "CUDNN_STATUS_NOT_SUPPORTED", "can't allocate memory")


def is_out_of_memory(error: BaseException) -> bool:
    """Whether an error means the device ran out of memory (PyTorch's OutOfMemoryError, or the
    messages cuDNN and the CPU allocator give for it)."""
    return isinstance(error, torch.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and any(m in str(error) for m in OUT_OF_MEMORY))


def release_memory() -> None:
    """Return what a failed attempt held: called after an out-of-memory error, outside the
    ``except`` block, whose traceback would keep the attempt's tensors alive."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def peak_step_memory(model_name: str, batch_sizes: list[int], input_shape=(3, 32, 32),
                     **hparams) -> dict:
    """Peak memory (MiB) of one training step of ``create(model_name, **hparams)`` per batch size.

    Returns ``{"device": ..., "method": ..., "peak_mib": {batch_size: MiB or None}}``."""
    if config.device_type() == "cuda":
        peaks = measure_peaks(model_name, batch_sizes, input_shape, hparams, "cuda")
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


def measure_peaks(model_name: str, batch_sizes: list[int], input_shape, hparams: dict,
                  device: str) -> dict:
    """Peak memory (MiB) of one training step of the model per batch size, after a step of two
    images: what a step's first run loads or initialises once (a module torch imports on first
    use, for one) is not counted as the step's memory."""
    torch.manual_seed(0)
    model = models.create(model_name, **hparams).to(device).train()
    for parameter in model.parameters():
        parameter.grad = torch.zeros_like(parameter)
    with torch.no_grad():
        num_classes = model(torch.zeros(2, *input_shape, device=device)).shape[1]
    _training_step(model, torch.randn(2, *input_shape, device=device),
                   torch.randint(num_classes, (2,), device=device))
    peaks = {}
    for batch_size in batch_sizes:
        x = torch.randn(batch_size, *input_shape, device=device)
        y = torch.randint(num_classes, (batch_size,), device=device)
        step = functools.partial(_training_step, model, x, y)
        peaks[batch_size] = peak_memory_mib(step, device)
    return peaks


def _training_step(model, x, y) -> None:
    torch.nn.functional.cross_entropy(model(x), y).backward()


def track_cpu_peaks() -> None:
    """Make CPU peak-memory measurements of this process exact from now on: glibc then maps and
    unmaps every allocation of 64 KiB or more directly, so freed memory leaves the process at
    once. For measuring processes only: it makes allocation slower."""
    _allocator.track_peaks()


def peak_memory_mib(fn, device: str | None = None) -> float | None:
    """How much memory (MiB) ``fn()`` needs at its peak beyond what was held before: the CUDA
    allocator's peak on a GPU; on a Linux CPU the growth of the peak resident memory (exact
    after ``track_cpu_peaks()``); None where neither can be read."""
    device = device or config.device_type()
    if device == "cpu" and not os.access("/proc/self/clear_refs", os.W_OK):
        return None
    before = _start(device)
    fn()
    return round(_peak_since(before, device) / _MIB, 1)


def _start(device: str) -> int:
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated()
    _allocator.release_free_memory()
    before = _status_bytes("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    return before


def _peak_since(before: int, device: str) -> int:
    if device == "cuda":
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    return _status_bytes("VmHWM") - before


def _status_bytes(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{key} not found in /proc/self/status")


if __name__ == "__main__":  # the fresh process of a CPU measurement
    track_cpu_peaks()
    task = json.loads(sys.argv[1])
    result = measure_peaks(task["model"], task["batch_sizes"], tuple(task["input_shape"]),
                           task["hparams"], "cpu")
    print(json.dumps(result))
