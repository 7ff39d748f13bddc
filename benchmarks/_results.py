"""Where the benchmark scripts keep what they measured: one JSON file per benchmark and device
in ``benchmarks/results/``, with the command, versions, hardware and date inside."""

from __future__ import annotations

import json
from pathlib import Path

from helpers._machinery import config, files

FOLDER = Path(__file__).resolve().parent / "results"


def save(benchmark: str, result: dict, variant: str = "") -> Path:
    """Write ``result`` to ``results/<benchmark>-<device><variant>.json`` and say where."""
    path = FOLDER / f"{benchmark}-{config.device_type()}{variant}.json"
    files.write_text(path, json.dumps(result, indent=1))
    print(f"Saved {path}")
    return path
