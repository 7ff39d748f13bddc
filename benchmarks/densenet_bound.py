"""How much faster could any implementation of a DenseNet train here, keeping its convolutions?
A whole training step of the course's DenseNet (the straightforward one: concatenate, then
BN-ReLU-conv) beside the time of its convolutions alone, side by side in one run.

    python benchmarks/densenet_bound.py [--model densenet-bc-100-k12] [--batch 64] [--repeats 3]
    python benchmarks/densenet_bound.py --compile  # and torch.compile's step, compiling included

Every convolution of the model (its shapes recorded in one forward pass) is timed alone, forward
and backward (the input's and the weight's gradients), on random tensors of its shapes, in the
faster of the two memory layouts, in the training path's precision (``make bench`` runs in full
mode: bf16 autocast on a CPU with AVX512-BF16, fp32 elsewhere). Their sum is what any
implementation that computes these convolutions spends at least, whatever it does around them (a
shared concatenation buffer, BatchNorm statistics computed once, fused BN-ReLU, compiled
kernels). The whole step (forward, cross-entropy, backward, SGD) is timed in both layouts with
``measure.training_throughput``; the faster step over the convolutions' time bounds the speed-up
any such implementation can reach (issue 27 asks for 1.5x). ``--compile`` also times what the
field's first tool reaches: the model under ``torch.compile`` (inductor's fused kernels), with the
seconds its first step spends compiling and those a batch of another size (an epoch's last) adds.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from datetime import date

import torch
from torch import nn

import _results
from _convolutions import INPUT, conv_flops, conv_shapes, convolution_times
from _timing import on_a_cpu
from helpers import measure, models
from helpers._machinery import allocator, config


def compiled_step(model: nn.Module, batch: int, precision: str, repeats: int,
                  input_shape=INPUT) -> dict:
    """``model`` under ``torch.compile``, its training step timed as the eager one is
    (``measure.training_throughput``, channels-last), in seconds: its first step, which compiles;
    its mean step over ``repeats`` after two more; and the first step on a batch of another size
    (an epoch's last), which compiles again."""
    compiled = torch.compile(model)

    def seconds(size: int, steps: int, warm_up: int) -> float:
        return size / measure.training_throughput(compiled, input_shape, size, batches=steps,
                                                  precision=precision, channels_last=True,
                                                  warm_up=warm_up)

    return {"compile_s": seconds(batch, 1, 0), "step_s": seconds(batch, repeats, 2),
            "other_batch_s": seconds(batch // 2 + 3, 1, 0)}


def by_kind(shapes: Counter, times: dict) -> dict:
    """The convolutions of ``shapes`` grouped by kernel, output channels and image size (any
    number of input channels): (how many, their seconds, their floating-point operations) for
    each, slowest kind first. Where the time goes, and how close to the machine's arithmetic
    each kind comes."""
    kinds = {}
    for shape, count in shapes.items():
        (_, _, h, w), out, kernel, *_ = shape
        kind = f"{kernel[0]}x{kernel[1]} to {out} channels, {h}x{w}"
        found = kinds.get(kind, (0, 0.0, 0))
        kinds[kind] = (found[0] + count, found[1] + count * times[shape],
                       found[2] + count * conv_flops(shape))
    return dict(sorted(kinds.items(), key=lambda item: -item[1][1]))


def arguments(description: str, repeats: int) -> argparse.ArgumentParser:
    """The options of the DenseNet benchmarks: which model, batch and rounds; --no-save."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model", default="densenet-bc-100-k12")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--no-save", action="store_true", help="do not write the result file")
    return parser


def main() -> None:
    parser = arguments(__doc__.split("\n\n")[0], repeats=3)
    parser.add_argument("--compile", action="store_true",
                        help="also time the model under torch.compile (minutes of compiling)")
    args = parser.parse_args()
    if not on_a_cpu("densenet_bound.py"):
        return
    allocator.keep_freed_blocks()  # as training.fit does
    torch.manual_seed(0)
    precision = config.precision()
    bf16 = precision.startswith("bf16")
    steps = {}
    for channels_last in (False, True):
        rate = measure.training_throughput(models.create(args.model), INPUT, args.batch,
                                           batches=args.repeats, channels_last=channels_last)
        steps["channels-last" if channels_last else "usual"] = args.batch / rate
    shapes = conv_shapes(models.create(args.model), args.batch)
    kinds = by_kind(shapes, convolution_times(shapes, bf16, args.repeats))
    convs = sum(seconds for _, seconds, _ in kinds.values())
    best = min(steps.values())
    bound = best / convs
    print(f"{config.hardware()} | torch {torch.__version__} | {precision} | {date.today()}")
    print(f"{args.model}, batch {args.batch}, {INPUT[1]}x{INPUT[2]} images: "
          f"{sum(shapes.values())} convolutions of {len(shapes)} shapes\n")
    for layout, seconds in steps.items():
        print(f"whole training step, {layout} layout: {seconds * 1e3:8.1f} ms "
              f"({args.batch / seconds:6.1f} images/s)")
    print(f"its convolutions alone, each in its faster layout: {convs * 1e3:8.1f} ms "
          f"({convs / best:.0%} of the faster step); by kind:")
    for kind, (count, seconds, flops) in kinds.items():
        print(f"  {kind:32s} {count:3d} of them {seconds * 1e3:8.1f} ms ({seconds / convs:4.0%}), "
              f"{flops / seconds / 1e9:6.1f} GFLOP/s")
    print(f"\nAn implementation that keeps these convolutions is at most {bound:.2f}x the "
          f"straightforward one here (issue 27 asks for 1.5x).")
    compiled = compiled_step(models.create(args.model), args.batch, precision,
                             args.repeats) if args.compile else None
    if compiled:
        print(f"\ntorch.compile, channels-last: its first step (compiling) "
              f"{compiled['compile_s']:.0f} s, then {compiled['step_s'] * 1e3:.1f} ms a step "
              f"({best / compiled['step_s']:.2f}x the faster eager step); a batch of "
              f"{args.batch // 2 + 3} compiled again in {compiled['other_batch_s']:.0f} s")
    if not args.no_save:
        _results.save("densenet_bound", {
            "model": args.model, "batch": args.batch, "precision": precision,
            "hardware": config.hardware(),
            "torch": torch.__version__, "date": str(date.today()),
            "step_ms": {k: round(v * 1e3, 1) for k, v in steps.items()},
            "convolutions_ms": round(convs * 1e3, 1), "bound": round(bound, 3),
            "convolutions_by_kind": {kind: {"count": count, "ms": round(seconds * 1e3, 1),
                                            "gflop_per_s": round(flops / seconds / 1e9, 1)}
                                     for kind, (count, seconds, flops) in kinds.items()},
            **({"compiled": {k: round(v, 3) for k, v in compiled.items()}} if compiled else {}),
            "command": "python benchmarks/densenet_bound.py " + " ".join(sys.argv[1:])})


if __name__ == "__main__":
    main()
