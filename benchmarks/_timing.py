"""How the benchmark scripts time functions side by side: the fastest of a few interleaved runs."""

from __future__ import annotations

import time

import torch

from helpers._machinery import config


def timed(functions, repeats: int) -> list[float]:
    """Fastest of ``repeats`` runs of each of ``functions`` after one warm-up call each, in
    seconds, the runs interleaved so that a slow moment of the machine hits all of them (the
    minimum is the least disturbed by other work)."""
    for fn in functions:
        fn()
    times = [[] for _ in functions]
    for _ in range(repeats):
        for fn, kept in zip(functions, times):
            if config.device_type() == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            if config.device_type() == "cuda":
                torch.cuda.synchronize()
            kept.append(time.perf_counter() - start)
    return [min(kept) for kept in times]


def on_a_cpu(what: str) -> bool:
    """Whether this machine computes on its CPU; elsewhere says that ``what`` (which times a CPU)
    is skipped: a note, not a failure, so that `make bench` goes on."""
    if config.device_type() == "cpu":
        return True
    print(f"{what} times a CPU; skipped on this {config.device_type()} machine")
    return False
