"""Time to accuracy: how long the course's training path takes to bring Tutorial 5's ResNet to
93 % test accuracy on the real Fashion-MNIST, on the device at hand.

    python benchmarks/time_to_accuracy.py [--target 0.93] [--epochs 7] [--augment flip]

The model is Tutorial 5's ResNet with a one-channel stem (272,090 parameters) on 28 x 28 images;
the recipe is the course's fast one (``sgd-cosine``: SGD with Nesterov momentum, one warm-up
epoch, cosine decay, label smoothing 0.1, batch 128), over ``--epochs`` epochs on 55,000 training
images (5,000 held out for validation), with horizontal flips alone: in a schedule this short the
usual crops slow learning more than they regularise (``--augment crop-flip --epochs 15`` is the
longer schedule measured before). The whole test set is evaluated after every epoch. Prints the
wall time until the test accuracy first reaches the target, counting the training steps alone and
everything (evaluation included), and the final accuracy; writes them to ``benchmarks/results/``
(one file per device, schedule length and augmentation).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from datetime import date
from pathlib import Path

import pandas as pd
import pytorch_lightning as pl
import torch

import _results
from helpers._machinery import config, datasets
from helpers import data, measure, models, training

RECIPE = "sgd-cosine"
AUGMENT = "flip"


def time_to_target(history: pd.DataFrame, target: float) -> dict:
    """The first epoch whose test accuracy reaches ``target`` and the seconds until its end:
    training steps alone, and everything; None where the target was never reached."""
    reached = history.index[history["test_acc"] >= target]
    if len(reached) == 0:
        return {"epoch": None, "step_seconds": None, "seconds": None}
    upto = history.loc[:reached[0]]
    return {"epoch": int(upto["epoch"].iloc[-1]), "step_seconds": float(upto["step_seconds"].sum()),
            "seconds": float(upto["seconds"].sum())}


def train_to_target(target: float, epochs: int, folder: Path, augment: str = AUGMENT) -> dict:
    module = data.ImageDataModule("FashionMNIST", test_every_epoch=True, subset=None,
                                  augment=augment, smoke=config.is_smoke())
    print(module.describe(), flush=True)
    if module.train.is_stand_in:
        raise datasets.DatasetNotFoundError("time to accuracy needs the real Fashion-MNIST")
    model = models.create("resnet", in_channels=1)
    run = training.fit(model, module, RECIPE, name="time-to-accuracy", epochs=epochs,
                       directory=folder, overwrite=True)
    history = run.history
    return {"benchmark": "time_to_accuracy", "model": "resnet (Tutorial 5, one-channel stem, "
            f"{measure.count_parameters(model):,} parameters)", "data": module.describe(),
            "recipe": RECIPE, "augment": augment, "epochs": epochs, "target": target,
            "reached": time_to_target(history, target),
            "final_test_acc": float(history["test_acc"].iloc[-1]),
            "best_val_epoch_test_acc": run.info["test_acc"],
            "total_seconds": float(history["seconds"].sum()),
            "precision": run.info["precision"], "hardware": config.hardware(),
            "torch": torch.__version__, "lightning": pl.__version__,
            "date": date.today().isoformat(), "command": "python " + " ".join(sys.argv),
            "history": history.round(5).to_dict(orient="list")}


def report(result: dict) -> None:
    print(f"\n{result['hardware']} | {result['precision']} | torch {result['torch']}, "
          f"Lightning {result['lightning']} | {result['date']}")
    print(f"{result['model']}, {result['data']}, recipe {result['recipe']} over "
          f"{result['epochs']} epochs, augmentation {result['augment']}")
    reached = result["reached"]
    if reached["epoch"] is None:
        print(f"Test accuracy never reached {result['target']:.1%} "
              f"({result['total_seconds']:.0f} s in all).")
    else:
        print(f"Test accuracy {result['target']:.1%} reached after epoch {reached['epoch']}: "
              f"{reached['step_seconds']:.0f} s of training steps, {reached['seconds']:.0f} s "
              f"with evaluation.")
    print(f"Final test accuracy {result['final_test_acc']:.2%} after {result['epochs']} epochs "
          f"({result['total_seconds']:.0f} s in all); the epoch with the best validation "
          f"accuracy: {result['best_val_epoch_test_acc']:.2%}.")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", type=float, default=0.93, help="test accuracy to reach")
    parser.add_argument("--epochs", type=int, default=7, help="length of the cosine schedule")
    parser.add_argument("--augment", default=AUGMENT, choices=list(data.AUGMENTATIONS),
                        help="the training images' augmentation (default: %(default)s)")
    parser.add_argument("--no-save", action="store_true", help="do not write the result file")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        result = train_to_target(args.target, args.epochs, Path(folder), args.augment)
    report(result)
    if not args.no_save:
        augment = "" if args.augment == "crop-flip" else f"-{args.augment}"  # as named before
        _results.save("time_to_accuracy", result, f"-{args.epochs}-epochs{augment}")
    return result


if __name__ == "__main__":
    main()
