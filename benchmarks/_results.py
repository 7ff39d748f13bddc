"""Where the benchmark scripts keep what they measured: one JSON file per benchmark and device
in ``benchmarks/results/``, with the command, versions, hardware and date inside. A CPU's
records are kept per vector instruction set (``cpu-avx512``, ``cpu-avx2``), because the course's
two CPU types differ in precision and speed, and one's record must not replace the other's."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from helpers._machinery import config, files

FOLDER = Path(__file__).resolve().parent / "results"


def device() -> str:
    """The device part of a record's name: ``cuda``, ``mps``, or ``cpu-`` and the vector
    instructions PyTorch's kernels use here (``avx512``, ``avx2``, ...)."""
    kind = config.device_type()
    if kind != "cpu":
        return kind
    return f"cpu-{torch.backends.cpu.get_cpu_capability().lower()}"


def save(benchmark: str, result: dict, variant: str = "") -> Path:
    """Write ``result`` to ``results/<benchmark>-<device><variant>.json`` and say where."""
    path = FOLDER / f"{benchmark}-{device()}{variant}.json"
    files.write_text(path, json.dumps(result, indent=1))
    print(f"Saved {path}")
    return path
