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
