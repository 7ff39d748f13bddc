"""Does a DenseNet written for speed train faster than the straightforward one on this CPU?
(Issue 27, item 2 asks DenseNet-BC-100 at 1.5x.) Side by side in one run, in the training path's
precision.

    python benchmarks/densenet_shared_statistics.py [--model densenet-bc-100-k12] [--batch 64]
                                                    [--precision bf16-mixed|32-true]
    python benchmarks/densenet_shared_statistics.py --cpu-mode [--repeats 5]

The blocks timed, and how they are computed, are those of ``helpers._machinery.dense_kernels``:
"eager" (the shared buffers in PyTorch operations), "C++ affine-ReLU" and "C++ fused" (the one
``fit`` trains DenseNets through on a CPU, in fp32 and bf16). The C++ kernels need ninja (a
dependency of the course) and a C++ compiler; without them, only "eager" is timed.

Outputs, gradients and the running statistics are the straightforward model's (checked in
float64 before timing). In bf16 autocast (a CPU with AVX512-BF16) the buffers hold bf16 maps, as
the straightforward model's concatenations do, the kernels compute in fp32 (their products in
bf16, as autocast's convolutions), and a bf16 step is checked to land as close to the fp32 step as
the model's own. The model itself is unchanged; ``measure.training_throughput`` times each, the
straightforward one in both layouts, interleaved, in ``--repeats`` rounds (the fastest and the
median of each).

``--cpu-mode`` asks what "C++ fused" buys the notebooks (issue 27, item 5): each DenseNet
run the notebooks train in CPU mode (``RUNS`` of ``scripts/measure_exercises.py``), on its own
one-channel images with its recipe's batch, in fp32 and channels-last as CPU mode trains it,
against its "C++ fused" copy, interleaved; with the seconds the kernels took to build or load.
The result goes to ``densenet_shared_statistics-<device>-cpu-mode.json``.
"""

from __future__ import annotations

import copy
import statistics
import sys
import time
from datetime import date
from typing import Callable

import torch
from torch import nn

import _results
from _timing import on_a_cpu
from densenet_bound import arguments
from helpers import measure, models, modes
from helpers._machinery import allocator, config
from helpers._machinery.dense_kernels import (  # noqa: F401 (the tests reach them from here)
    CHANNELS_LAST, EAGER, BlockOps, build_kernels, find_ninja, refusal, shared_statistics)


def _weighted_step(net: nn.Module, images: torch.Tensor, seed: int, weights=None,
                   bf16: bool = False):
    """A training step's forward and backward of ``net`` (no update): dropout drawn after
    ``torch.manual_seed(seed)``, the loss the sum of the outputs times ``weights`` (drawn here
    when None). Returns the outputs, in the images' dtype, and the weights."""
    net.zero_grad()
    torch.manual_seed(seed)  # the same dropout masks for every net
    with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
        out = net(images).to(images.dtype)
    weights = torch.randn_like(out) if weights is None else weights
    (out * weights).sum().backward()
    return out.detach(), weights


def differences(model: nn.Module, ops, input_shape=(3, 32, 32), batch: int = 4) -> dict:
    """Largest absolute differences between ``model`` and its shared-statistics copy in
    float64, in two training steps on the same random images (outputs, parameter gradients,
    BatchNorm buffers), then in evaluation."""
    torch.manual_seed(0)
    plain = copy.deepcopy(model).double().train()
    shared = shared_statistics(copy.deepcopy(plain), ops)
    found = dict.fromkeys(["outputs", "gradients", "buffers"], 0.0)
    for step in range(2):
        images = torch.randn(batch, *input_shape, dtype=torch.float64).to(
            memory_format=CHANNELS_LAST)  # as they train; dropout draws in memory order
        weights, results = None, []
        for net in (plain, shared):
            out, weights = _weighted_step(net, images, step, weights)
            results.append({"outputs": [out],
                            "gradients": [p.grad for p in net.parameters()],
                            "buffers": [b.double() for b in net.buffers()]})
        for kind in found:
            found[kind] = max([found[kind]] + [(a - b).abs().max().item()
                                               for a, b in zip(results[0][kind], results[1][kind])])
    with torch.no_grad():  # evaluation reads every BatchNorm's own running statistics
        images = torch.randn(batch, *input_shape, dtype=torch.float64)
        found["evaluation"] = (plain.eval()(images) - shared.eval()(images)).abs().max().item()
    return found


def bf16_errors(model: nn.Module, ops, input_shape=(3, 32, 32), batch: int = 32) -> dict:
    """How far one bf16-autocast training step lands from the same step in fp32, for ``model``
    and for its shared-statistics copy: the relative error of the outputs, and of each
    parameter's gradient (see :func:`rounds_as_the_model`)."""
    torch.manual_seed(0)
    model = model.train()
    images = torch.randn(batch, *input_shape).to(memory_format=CHANNELS_LAST)

    def error(found, wanted):
        return ((found - wanted).norm() / wanted.norm()).item()

    fp32 = copy.deepcopy(model)
    outputs, weights = _weighted_step(fp32, images, seed=1)
    errors = {}
    for name, net in (("model", copy.deepcopy(model)),
                      ("shared statistics", shared_statistics(copy.deepcopy(model), ops))):
        out, _ = _weighted_step(net, images, 1, weights, bf16=True)
        errors[name] = {"outputs": error(out, outputs), "gradients": [
            error(p.grad, wanted.grad) for p, wanted in zip(net.parameters(), fp32.parameters())
            if wanted.grad.norm() > 0]}
    return errors


def _error_pairs(errors: dict) -> list[tuple[float, float]]:
    """(the copy's error, the model's) for the outputs and each parameter's gradient."""
    copy, model = errors["shared statistics"], errors["model"]
    return [(copy["outputs"], model["outputs"]), *zip(copy["gradients"], model["gradients"])]


def rounds_as_the_model(errors: dict) -> bool:
    """Whether :func:`bf16_errors` found the copy's bf16 step as close to the fp32 step as the
    model's own, in its outputs and in each parameter's gradient (within half as much again, and
    0.001): the two differ in rounding only. Parameter by parameter, because bf16 rounds some
    gradients by 30 % or more, and among those one wrong gradient would hide."""
    return all(copy <= 1.5 * model + 1e-3 for copy, model in _error_pairs(errors))


def time_interleaved(variants: dict, build: Callable, shape: tuple, batch: int, precision: str,
                     repeats: int) -> dict[str, list[float]]:
    """Images/s of a training step of each of ``variants`` (name: (ops or None for the model as
    it is, channels-last)), ``repeats`` rounds, the variants interleaved in each: the machine's
    speed drifts by the minute."""
    rates = {name: [] for name in variants}
    for round_ in range(repeats):
        for name, (ops, channels_last) in variants.items():
            model = build()
            if ops:
                model = shared_statistics(model, ops)
            rates[name].append(measure.training_throughput(
                model, shape, batch, batches=3, precision=precision,
                channels_last=channels_last))
            print(f"round {round_ + 1} of {repeats}, {name}: {rates[name][-1]:.1f} images/s",
                  flush=True)
    return rates


def timed_kernels() -> tuple[dict[str, BlockOps], float]:
    """:func:`build_kernels`' ways (none where they cannot be built) and the seconds it took:
    about a minute to build, a second to load a build from torch's extensions folder."""
    start = time.perf_counter()
    kernels = build_kernels() or {}
    return kernels, time.perf_counter() - start


def cpu_mode_densenets() -> list[tuple]:
    """(run name, model builder, batch, input shape) of each run the notebooks train in CPU mode
    whose dense blocks ``fit`` trains through the kernels (``dense_kernels.refusal``), one per
    distinct model, input and batch."""
    from memory_layout import cpu_mode_runs
    return [run for run in cpu_mode_runs() if refusal(run[1]()) is None]


def main_cpu_mode(args) -> None:
    """The notebooks' CPU-mode DenseNet runs, as CPU mode trains them and through "C++ fused"."""
    kernels, build_seconds = timed_kernels()
    if "C++ fused" not in kernels:
        sys.exit("--cpu-mode times the C++ kernels, which did not build (the reason is above)")
    fused = kernels["C++ fused"]
    print(f"the kernels built or loaded in {build_seconds:.0f} s")
    variants = {"CPU mode": (None, True), "C++ fused": (fused, True)}
    rows = []
    for name, build, batch, shape in cpu_mode_densenets():
        found = differences(build(), fused, input_shape=shape)
        if max(found.values()) > 1e-9:
            sys.exit(f"C++ fused does not compute what {name} does (float64): {found}")
        rates = time_interleaved(variants, build, shape, batch, modes.CPU_PRECISION,
                                 args.repeats)
        ratios = [fast / plain for fast, plain in zip(rates["C++ fused"], rates["CPU mode"])]
        rows.append({"run": name, "batch": batch, "input_shape": list(shape),
                     "float64_difference": max(found.values()),
                     "images_per_s": {k: [round(v, 1) for v in values]
                                      for k, values in rates.items()},
                     "ratio_by_round": [round(r, 3) for r in ratios],
                     "ratio_median": round(statistics.median(ratios), 3)})
    print(f"{config.hardware()} | torch {torch.__version__} | {modes.CPU_PRECISION}, "
          f"channels-last | {date.today()}")
    print(f"the notebooks' CPU-mode DenseNets, training step, median images/s of {args.repeats} "
          "interleaved rounds, and the median of the rounds' ratios:")
    for row in rows:
        plain, fast = (statistics.median(row["images_per_s"][k]) for k in variants)
        print(f"  {row['run']:<38} batch {row['batch']:>4}  CPU mode {plain:6.1f}  C++ fused "
              f"{fast:6.1f}  {row['ratio_median']:.2f}x")
    print(f"(building the kernels, once per machine: {build_seconds:.0f} s this time)")
    if not args.no_save:
        _results.save("densenet_shared_statistics", {
            "benchmark": "densenet_shared_statistics", "mode": "cpu",
            "hardware": config.hardware(), "torch": torch.__version__, "date": str(date.today()),
            "precision": modes.CPU_PRECISION, "repeats": args.repeats,
            "kernel_build_seconds": round(build_seconds, 1), "runs": rows,
            "command": "python benchmarks/densenet_shared_statistics.py " + " ".join(sys.argv[1:])},
            "-cpu-mode")


def main() -> None:
    parser = arguments(__doc__.split("\n\n")[0], repeats=5)
    parser.add_argument("--precision", choices=("bf16-mixed", "32-true"),
                        help="default: the training path's here (in full mode bf16 autocast on a "
                             "CPU with AVX512-BF16, else fp32)")
    parser.add_argument("--cpu-mode", action="store_true",
                        help="the notebooks' CPU-mode DenseNet runs instead (the module's text)")
    args = parser.parse_args()
    if not on_a_cpu("densenet_shared_statistics.py"):
        return
    allocator.keep_freed_blocks()  # as training.fit does
    if args.cpu_mode:
        return main_cpu_mode(args)
    precision = args.precision or config.precision()
    variants = {"straightforward, usual layout": (None, False),
                "straightforward, channels-last": (None, True),
                "shared statistics, eager": (EAGER, True)}
    kernels, _ = timed_kernels()
    variants.update({f"shared statistics, {name}": (ops, True) for name, ops in kernels.items()})
    for name, (ops, _) in variants.items():
        if ops:
            try:
                found = differences(models.create(args.model), ops)
            except ValueError as error:  # a model without dense blocks, or an unknown name
                sys.exit(str(error))
            if max(found.values()) > 1e-9:
                sys.exit(f"{name} does not compute what the model does (float64): {found}")
            if precision.startswith("bf16"):
                errors = bf16_errors(models.create(args.model), ops, batch=8)
                if not rounds_as_the_model(errors):
                    copy, model = max(_error_pairs(errors),  # the furthest beyond its bound
                                      key=lambda pair: pair[0] - 1.5 * pair[1])
                    sys.exit(f"{name} rounds further from fp32 than the model in bf16: a "
                             f"relative error of {copy:.3g} where the model's is {model:.3g}")
    rates = time_interleaved(variants, lambda: models.create(args.model), (3, 32, 32),
                             args.batch, precision, args.repeats)
    baselines = [name for name in variants if variants[name][0] is None]
    ratios = {}
    for summary in (max, statistics.median):  # the machine's speed drifts: both
        value = {name: summary(values) for name, values in rates.items()}
        baseline = max(value[name] for name in baselines)
        ratios[summary.__name__] = {name: value[name] / baseline for name in value}
    # and each round against its own faster straightforward layout, timed minutes apart at most
    baseline = [max(rates[name][round_] for name in baselines) for round_ in range(args.repeats)]
    ratios["rounds"] = {name: statistics.median(v / b for v, b in zip(values, baseline))
                        for name, values in rates.items()}
    print(f"{config.hardware()} | torch {torch.__version__} | {precision} | {date.today()}")
    print(f"{args.model}, batch {args.batch}, 32x32, training step, images/s in "
          f"{args.repeats} interleaved rounds; against the faster straightforward layout (its "
          "fastest, its median, and the median of the rounds' own ratios):")
    width = max(map(len, rates))
    for name, values in rates.items():
        print(f"  {name:{width}s} fastest {max(values):6.1f} ({ratios['max'][name]:.2f}x), median "
              f"{statistics.median(values):6.1f} ({ratios['median'][name]:.2f}x), rounds "
              f"{ratios['rounds'][name]:.2f}x   [{', '.join(f'{v:.1f}' for v in values)}]")
    print("Issue 27 asks for 1.5x.")
    if not args.no_save:
        _results.save("densenet_shared_statistics", {
            "model": args.model, "batch": args.batch, "precision": precision,
            "hardware": config.hardware(), "torch": torch.__version__, "date": str(date.today()),
            "images_per_s": {name: [round(v, 1) for v in values]
                             for name, values in rates.items()},
            "ratio_to_straightforward": {summary: {name: round(r, 3) for name, r in by.items()}
                                         for summary, by in ratios.items()},
            "command": "python benchmarks/densenet_shared_statistics.py " + " ".join(sys.argv[1:])},
            "" if args.precision is None else f"-{args.precision}")  # not the machine's own


if __name__ == "__main__":
    main()
