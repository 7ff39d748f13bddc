"""Training speed of the course's models in both memory layouts (the usual NCHW and
channels-last) and in each precision this machine computes natively, side by side, with the
layout the training path picks for each (channels-last for a DenseNet whose blocks it trains
through the course's kernels, ``helpers._machinery.dense_kernels``; else on a CPU in full mode the
faster of a few timed steps, ``helpers._machinery.fitting.prefers_channels_last``; else
channels-last).

    python benchmarks/memory_layout.py [--repeats 3] [--only NAME ...] [--no-save]
    python benchmarks/memory_layout.py --cpu-mode [--repeats 5]

For every model (with the batch a notebook trains it with) it times a training step (forward,
cross-entropy, backward, SGD update) on random 32x32 images (28x28 with one channel for the toy
CNN) in each layout and precision, ``repeats`` times interleaved, and prints the median images
per second; for a DenseNet the training path trains through the kernels, the same through them
on the next line; then the layout the training path would pick, and whether it is the faster one
for what it trains. The result goes to ``benchmarks/results/memory_layout-<device>.json``.

``--cpu-mode`` times instead every run the notebooks train in CPU mode (``RUNS`` of
``scripts/measure_exercises.py``: each notebook's model on its 28x28 or 32x32 one-channel images,
with its recipe's batch, in fp32), once per distinct model, as CPU mode trains it (a DenseNet
through the kernels, marked so), and says whether the layout CPU mode trains it in (a rule, not
timed) is the faster one, the slower one, or within the timings' spread (their ranges overlap).
It runs in CPU mode whatever ``COURSE_MODE`` says, and only on a CPU. The result goes to
``memory_layout-<device>-cpu-mode.json``.
"""

from __future__ import annotations

import argparse
import runpy
import statistics
import sys
from collections import Counter
from datetime import date
from typing import Callable

import torch

import _results
from _timing import on_a_cpu
from helpers._machinery import config, dense_kernels, fitting
from helpers import measure, models, modes, recipes

# name, hyper-parameters, batch, input shape: as the notebooks train them
MODELS = [("allcnn", {"c": 64, "num_classes": 10}, 64, (3, 32, 32)),
          ("resnet", {}, 128, (3, 32, 32)),
          ("googlenet", {}, 128, (3, 32, 32)),
          ("densenet", {}, 128, (3, 32, 32)),
          ("densenet-40-k12", {}, 64, (3, 32, 32)),
          ("densenet-bc-100-k12", {}, 64, (3, 32, 32)),
          ("cnn-toy", {}, 128, (1, 28, 28)),
          ("vgg-d", {}, 64, (3, 32, 32))]


def precisions() -> list[str]:
    """This machine's reduced precision (if it has one) and fp32."""
    native = config.precision()
    return [native, "32-true"] if native != "32-true" else ["32-true"]


def trained_model(build, precision: str) -> tuple[Callable, bool]:
    """A builder of the model as ``fit`` trains it in ``precision`` (a DenseNet's blocks through
    the course's kernels where it would use them), and whether it would."""
    kernels = fitting.kernels_would_train(build(), precision)
    if not kernels:
        return build, False
    return lambda: dense_kernels.shared_statistics(build(), dense_kernels.fused()), True


def timed_layouts(build, shape: tuple, batch: int, precision: str, repeats: int,
                  batches: int = 3) -> dict[bool, list[float]]:
    """Images/s of a training step of a fresh ``build()`` in each layout (channels-last True or
    False), ``repeats`` times interleaved, so that a slow moment hits both."""
    rates = {False: [], True: []}
    for _ in range(repeats):
        for layout in (False, True):
            torch.manual_seed(0)
            rates[layout].append(measure.training_throughput(
                build(), shape, batch, batches=batches, precision=precision,
                channels_last=layout))
    return rates


def _layout_row(rates: dict[bool, list[float]], prefix: str = "") -> dict:
    usual, last = (statistics.median(rates[layout]) for layout in (False, True))
    return {f"{prefix}usual": usual, f"{prefix}channels_last": last,
            f"{prefix}usual_all": rates[False], f"{prefix}channels_last_all": rates[True]}


def measure_model(name: str, hparams: dict, batch: int, shape: tuple, repeats: int) -> dict:
    """Both layouts of the model as written, and where ``fit`` trains a DenseNet's blocks
    through the course's kernels, of that too (the layout ``fit`` picks is judged on what it
    trains)."""
    def build():
        return models.create(name, **hparams)

    rows = []
    for precision in precisions():
        row = {"precision": precision, **_layout_row(timed_layouts(build, shape, batch,
                                                                   precision, repeats))}
        trained, kernels = trained_model(build, precision)
        row["trained"] = "through the kernels" if kernels else "as written"
        faster = {"as written": row["channels_last"] > row["usual"]}
        if kernels:
            row.update(_layout_row(timed_layouts(trained, shape, batch, precision, repeats),
                                   "kernels_"))
            faster["through the kernels"] = row["kernels_channels_last"] > row["kernels_usual"]
        fitting.LAYOUTS.clear()
        picked = fitting.fresh_layout(build(), shape, batch, precision,
                                      dense_kernels_used=kernels)  # as fit picks
        row.update(faster=_name(faster[row["trained"]]), picked=_name(picked))
        rows.append(row)
        for path, prefix in (("as written", ""), ("through the kernels", "kernels_")):
            if path in faster:
                label = name if path == "as written" else "  through the kernels"
                pick = row["picked"] if path == row["trained"] else "-"
                print(f"{label:<22}{batch:>6}{precision:>12}{row[prefix + 'usual']:>10,.0f}"
                      f"{row[prefix + 'channels_last']:>15,.0f}{_name(faster[path]):>15}"
                      f"{pick:>15}", flush=True)
    return {"model": name, "hparams": hparams, "batch": batch, "input_shape": list(shape),
            "rows": rows}


def _name(channels_last: bool) -> str:
    return "channels_last" if channels_last else "usual"


def cpu_mode_runs() -> list[tuple]:
    """(run name, model builder, batch, input shape) of each run the notebooks train in CPU mode,
    one per distinct model, input and batch (the first run of each)."""
    script = runpy.run_path(str(config.project_root() / "scripts" / "measure_exercises.py"))
    runs, seen = [], set()
    for name, (_, build, recipe, options) in script["RUNS"].items():
        size = options.get("size", 28)
        key = (repr(build()), size, recipes.get_recipe(recipe).batch_size)
        if key not in seen:
            seen.add(key)
            runs.append((name, build, key[2], (1, size, size)))
    return runs


def measure_cpu_mode_run(name: str, build, batch: int, shape: tuple, repeats: int) -> dict:
    """Both layouts of one CPU-mode run, as CPU mode trains it (a DenseNet's blocks through the
    course's kernels where it would use them), timed ``repeats`` times interleaved, in fp32,
    beside the layout CPU mode trains it in."""
    trained, kernels = trained_model(build, modes.CPU_PRECISION)
    rates = timed_layouts(trained, shape, batch, modes.CPU_PRECISION, repeats, batches=4)
    row = _layout_row(rates)
    overlap = min(max(rates[False]), max(rates[True])) >= max(min(rates[False]),
                                                              min(rates[True]))
    picked = fitting.fresh_layout(build(), shape, batch, modes.CPU_PRECISION,
                                  dense_kernels_used=kernels)
    verdict = ("within the spread" if overlap
               else "faster" if (row["channels_last"] > row["usual"]) == picked else "slower")
    label = name + (" (kernels)" if kernels else "")
    print(f"{label:<48}{batch:>6}{row['usual']:>10,.0f}{row['channels_last']:>15,.0f}"
          f"{'channels-last' if picked else 'usual':>15}  {verdict}", flush=True)
    return {"run": name, "batch": batch, "input_shape": list(shape), **row,
            "trained": "through the kernels" if kernels else "as written",
            "picked": _name(picked), "verdict": verdict}


def main_cpu_mode(args) -> dict:
    if not on_a_cpu("--cpu-mode (the runs CPU mode trains)"):
        return {}
    print(f"{config.hardware()} | torch {torch.__version__} | {date.today().isoformat()}")
    print(f"the notebooks' CPU-mode runs: training step in {modes.CPU_PRECISION}, images/s "
          f"(median of {args.repeats} timings), and the layout CPU mode trains in")
    print(f"{'run':<48}{'batch':>6}{'usual':>10}{'channels-last':>15}{'CPU mode':>15}  "
          f"CPU mode's layout is")
    rows = [measure_cpu_mode_run(*run, args.repeats) for run in cpu_mode_runs()]
    counts = Counter(row["verdict"] for row in rows)
    print(f"\nCPU mode's layout is the faster one for {counts['faster']}, the slower one for "
          f"{counts['slower']} and within the timings' spread for "
          f"{counts['within the spread']} of {len(rows)} models")
    result = {"benchmark": "memory_layout", "mode": "cpu", "hardware": config.hardware(),
              "torch": torch.__version__, "date": date.today().isoformat(),
              "command": "python " + " ".join(sys.argv), "repeats": args.repeats, "runs": rows}
    if not args.no_save:
        _results.save("memory_layout", result, "-cpu-mode")
    return result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="timings per layout")
    parser.add_argument("--only", nargs="*", help="model names (default: all)")
    parser.add_argument("--cpu-mode", action="store_true",
                        help="time the notebooks' CPU-mode runs instead (their models and inputs)")
    parser.add_argument("--no-save", action="store_true", help="do not write the result file")
    args = parser.parse_args(argv)
    if args.cpu_mode:
        return main_cpu_mode(args)
    chosen = [m for m in MODELS if not args.only or m[0] in args.only]
    print(f"{config.hardware()} | torch {torch.__version__} | {date.today().isoformat()}")
    print("training step, images/s (median of {} timings)".format(args.repeats))
    print(f"{'model':<22}{'batch':>6}{'precision':>12}{'usual':>10}{'channels-last':>15}"
          f"{'faster':>15}{'fit picks':>15}")
    result = {"benchmark": "memory_layout", "hardware": config.hardware(),
              "torch": torch.__version__, "date": date.today().isoformat(),
              "command": "python " + " ".join(sys.argv), "repeats": args.repeats,
              "models": [measure_model(*m, args.repeats) for m in chosen]}
    rows = [row for m in result["models"] for row in m["rows"]]
    right = sum(row["faster"] == row["picked"] for row in rows)
    print(f"\nfit picks the faster layout in {right} of {len(rows)} cases (a pick timed from "
          f"fewer steps can differ where the two are within the timings' spread)")
    if not args.no_save:
        _results.save("memory_layout", result)
    return result


if __name__ == "__main__":
    main()
