"""Training speed with glibc's default handling of big blocks and with freed blocks kept for
reuse (what ``helpers.training.fit`` sets on Linux, ``helpers._machinery.allocator``), side by side.

    python benchmarks/allocator.py [--repeats 3] [--only NAME ...] [--no-save]

The allocator is a setting of the whole process, so every timing runs in a fresh process, the
two settings alternating ``repeats`` times, so that a slow moment of the machine hits both. Each
process times a training step of one model (as ``benchmarks/memory_layout.py`` does, with the
batch a notebook trains it with) in both memory layouts and keeps the faster, and counts the
page faults of two more steps. Prints the median images/s of each setting, their ratio and the page
faults per step; writes ``benchmarks/results/allocator-<device>.json``.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
from datetime import date
from pathlib import Path

import torch

import _results
from helpers._machinery import allocator as _allocator, config
from helpers import measure, models
from memory_layout import MODELS, precisions

SETTINGS = ("glibc defaults", "freed blocks kept")


def time_in_this_process(name: str, precision: str, keep: bool) -> dict:
    """Images/s of the faster layout and page faults per step, in this (fresh) process."""
    if not keep:  # the training path would set it: leave glibc as it is
        _allocator.keep_freed_blocks = lambda: False
    hparams, batch, shape = next((h, b, s) for n, h, b, s in MODELS if n == name)
    rates, faults = {}, {}
    for layout in (False, True):
        torch.manual_seed(0)
        model = models.create(name, **hparams)
        rates[layout] = measure.training_throughput(model, shape, batch, batches=3,
                                                    precision=precision, channels_last=layout)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        measure.training_throughput(model, shape, batch, batches=2, precision=precision,
                                    channels_last=layout, warm_up=0)  # steps of a warm model
        faults[layout] = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 2
    layout = max(rates, key=rates.get)
    return {"images_per_s": rates[layout], "layout": "channels_last" if layout else "usual",
            "faults_per_step": faults[layout], "allocator": _allocator.mode()}


def timed_in_fresh_process(name: str, precision: str, keep: bool) -> dict:
    task = json.dumps({"name": name, "precision": precision, "keep": keep})
    done = subprocess.run([sys.executable, __file__, "--child", task], check=True,
                          capture_output=True, text=True, cwd=Path(__file__).parent)
    return json.loads(done.stdout.splitlines()[-1])


def measure_model(name: str, repeats: int) -> list[dict]:
    rows = []
    for precision in precisions():
        timings = {setting: [] for setting in SETTINGS}
        for _ in range(repeats):
            for setting in SETTINGS:
                timings[setting].append(timed_in_fresh_process(name, precision,
                                                               setting != SETTINGS[0]))
        row = {"model": name, "precision": precision}
        for setting, found in timings.items():
            assert all(t["allocator"] == setting for t in found), found
            row[setting] = {"images_per_s": statistics.median(t["images_per_s"] for t in found),
                            "faults_per_step": statistics.median(t["faults_per_step"]
                                                                 for t in found),
                            "all": found}
        row["ratio"] = (row[SETTINGS[1]]["images_per_s"] / row[SETTINGS[0]]["images_per_s"])
        rows.append(row)
        print(f"{name:<22}{precision:>12}" + "".join(
            f"{row[s]['images_per_s']:>10,.0f}{row[s]['faults_per_step']:>11,.0f}"
            for s in SETTINGS) + f"{row['ratio']:>8.2f}x", flush=True)
    return rows


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="timings per setting")
    parser.add_argument("--only", nargs="*", help="model names (default: all)")
    parser.add_argument("--no-save", action="store_true", help="do not write the result file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        task = json.loads(args.child)
        print(json.dumps(time_in_this_process(task["name"], task["precision"], task["keep"])))
        return {}
    unknown = set(args.only or ()) - {m[0] for m in MODELS}
    if unknown:
        parser.error(f"unknown models {sorted(unknown)}; valid: {[m[0] for m in MODELS]}")
    print(f"{config.hardware()} | torch {torch.__version__} | {date.today().isoformat()}")
    print(f"training step, images/s of the faster layout (median of {args.repeats} fresh "
          f"processes per setting), page faults per step")
    print(f"{'':<34}{'glibc defaults':>21}{'freed blocks kept':>21}")
    print(f"{'model':<22}{'precision':>12}" + f"{'images/s':>10}{'faults':>11}" * 2
          + f"{'ratio':>9}")
    rows = [row for name, *_ in MODELS if not args.only or name in args.only
            for row in measure_model(name, args.repeats)]
    result = {"benchmark": "allocator", "hardware": config.hardware(),
              "torch": torch.__version__, "date": date.today().isoformat(),
              "command": "python " + " ".join(sys.argv), "repeats": args.repeats, "rows": rows}
    if not args.no_save:
        _results.save("allocator", result)
    return result


if __name__ == "__main__":
    main()
