"""What the feature-amount variants cost to train, against VGG-D, measured side by side.

    python benchmarks/sweep_variant_cost.py [--batches 3] [--batch-size 128] [--epochs 30]
                                            [--width-scale 0.125]

For VGG-D and one variant per location xi (``sweep.representatives``, the subset notebook 05
sweeps) it measures the images per second of a training step (batch 128, 32x32x3 inputs, the
training path's precision and memory format) and prints, for each, the ratio of its time per
image to VGG-D's next to the ratio of its multiply-accumulates: how far MACs predict the real
cost. It then projects the time of the notebook's sweep (``--epochs`` epochs of ``--images``
images, training steps only) on this device, and writes everything to ``benchmarks/results/``.
``--width-scale`` measures the same profiles with every width scaled (``sweep.scaled``), as
the course's reference sweep trains them (1/8).
"""

from __future__ import annotations

import argparse
import sys
from datetime import date

import torch

import _results
from helpers._machinery import config
from helpers import measure, models, sweep


def measure_variants(batches: int, batch_size: int = 128, width_scale: float = 1.0) -> list[dict]:
    chosen = [sweep.vgg_d(), *sweep.representatives(sweep.skew_normal_variants(16))]
    rows = []
    for variant in (sweep.scaled(variant, width_scale) for variant in chosen):
        torch.manual_seed(0)
        model = models.create("vgg", widths=variant.widths, num_classes=10)
        rate = measure.training_throughput(model, (3, 32, 32), batch_size, batches)
        rows.append({"variant": variant.name, "xi": None if variant.index < 0 else variant.xi,
                     "macs": variant.macs,
                     "parameters": variant.parameters, "images_per_s": rate})
        print(f"  {variant.name}: {rate:,.0f} images/s", flush=True)
    baseline = rows[0]
    for row in rows:
        row["time_vs_vgg_d"] = baseline["images_per_s"] / row["images_per_s"]
        row["macs_vs_vgg_d"] = row["macs"] / baseline["macs"]
    return rows


def report(result: dict) -> None:
    scale = result.get("width_scale", 1.0)
    print(f"\n{result['hardware']} | {result['precision']} | torch {result['torch']} | "
          f"{result['date']}" + ("" if scale == 1 else f" | every width x {scale:g}"))
    print(f"{'variant':<13}{'xi':>5}{'GMACs':>8}{'params (M)':>12}{'images/s':>10}"
          f"{'time / VGG-D':>14}{'MACs / VGG-D':>14}{'epoch min':>11}")
    for row in result["variants"]:
        xi = "-" if row["xi"] is None else f"{row['xi']:g}"
        print(f"{row['variant']:<13}{xi:>5}{row['macs'] / 1e9:>8.3f}"
              f"{row['parameters'] / 1e6:>12.2f}{row['images_per_s']:>10,.0f}"
              f"{row['time_vs_vgg_d']:>14.2f}{row['macs_vs_vgg_d']:>14.2f}"
              f"{result['images'] / row['images_per_s'] / 60:>11.1f}")
    print(f"\nThe sweep of these {len(result['variants'])} networks, {result['epochs']} epochs of "
          f"{result['images']:,} images: {result['sweep_hours']:,.1f} hours of training steps on "
          "this device.")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=3, help="timed steps per network")
    parser.add_argument("--batch-size", type=int, default=128, help="images per step")
    parser.add_argument("--epochs", type=int, default=30, help="epochs of the projected sweep")
    parser.add_argument("--images", type=int, default=55_000, help="training images per epoch")
    parser.add_argument("--width-scale", type=float, default=1.0,
                        help="multiply every width by this, in (0, 1]; the reference sweep: 0.125")
    parser.add_argument("--no-save", action="store_true", help="do not write the result file")
    args = parser.parse_args(argv)
    if not 0 < args.width_scale <= 1:
        parser.error(f"--width-scale {args.width_scale:g} is not in (0, 1]: it scales every width "
                     "down, e.g. 0.125 for the reference sweep's eighth")
    scale = "" if args.width_scale == 1 else f", every width x {args.width_scale:g}"
    print(f"Training steps of VGG-D and the representative variants{scale}:")
    rows = measure_variants(args.batches, args.batch_size, args.width_scale)
    seconds = sum(args.epochs * args.images / row["images_per_s"] for row in rows)
    result = {"benchmark": "sweep_variant_cost", "hardware": config.hardware(),
              "precision": config.precision(), "torch": torch.__version__,
              "date": date.today().isoformat(), "command": "python " + " ".join(sys.argv),
              "batch_size": args.batch_size, "width_scale": args.width_scale,
              "epochs": args.epochs, "images": args.images,
              "sweep_hours": seconds / 3600, "variants": rows}
    report(result)
    if not args.no_save:
        suffix = "" if args.width_scale == 1 else f"-x{args.width_scale:g}"
        _results.save("sweep_variant_cost", result, suffix)
    return result


if __name__ == "__main__":
    main()
