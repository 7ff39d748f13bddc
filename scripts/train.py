"""Train one model of the course from the command line, through the course's training path.

    COURSE_MODE=full python scripts/train.py ccnn-toy FashionMNIST ccnn-toy-paper \\
        --augment rotate-crop --epochs 10 --name ccnn-toy-fashionmnist-s0 \\
        --note "shortened: 10 of 100 epochs, on a CPU"

The run lands in saved_models/<name>/ (best.ckpt, history.csv, run.json with its provenance),
where the notebooks find it. An interrupted full-mode run resumes when started again; a finished
one is not trained again; one with other settings is an error unless --overwrite is given.
Exit status: 0 done, 1 an error (its message on stderr), 2 bad arguments, 128 + the signal
number when stopped by SIGINT or SIGTERM (the run resumes when started again).
"""

import argparse
import sys

from helpers import data, memory_safe, models, recipes, training
from helpers._machinery import arguments, config, datasets, fitting, runs


def _name(value: str) -> str:
    try:
        return runs.check_name(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _positive(value: str) -> int:
    try:
        return arguments.whole_number(int(value), "--epochs")
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not "
                                         f"{value!r}") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=models.names())
    parser.add_argument("data", choices=list(datasets.DATASETS))
    parser.add_argument("recipe", choices=list(recipes.RECIPES))
    parser.add_argument("--name", required=True, type=_name,
                        help="folder name under saved_models/ (letters, digits, '-', '_', '.')")
    parser.add_argument("--epochs", type=_positive, help="default: the recipe's")
    parser.add_argument("--augment", default="crop-flip", choices=[*data.AUGMENTATIONS, "none"])
    parser.add_argument("--val-size", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--note", default="")
    parser.add_argument("--devices", type=_positive, default=1,
                        help="train the one run on this many processes (DDP): GPUs, or CPU "
                             "processes on a machine without one")
    parser.add_argument("--overwrite", action="store_true",
                        help="delete the run saved under --name and train afresh")
    args = parser.parse_args()
    try:
        train(args)
    except training.RunInterrupted as stop:
        stop.exit()  # its message is printed already
    except (ValueError, TypeError, runs.RunInUse, runs.LockLost, runs.CheckpointError,
            training.TrainingDiverged, memory_safe.DoesNotFit,
            datasets.DatasetNotFoundError) as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)  # a message, not a traceback
        sys.exit(1)


def train(args: argparse.Namespace) -> None:
    """One run of ``fit`` with the command line's settings; the data split is seeded too."""
    module = data.ImageDataModule(args.data, val_size=args.val_size, seed=args.seed,
                                  augment=None if args.augment == "none" else args.augment,
                                  smoke=config.is_smoke())
    module.setup()
    training.seed(args.seed)
    model = models.create(args.model, num_classes=module.num_classes,
                          in_channels=module.input_shape[0])
    scale = {"devices": args.devices, "strategy": "ddp"} if args.devices > 1 else {}
    run = training.fit(model, module, args.recipe, name=args.name, epochs=args.epochs,
                       seed=args.seed, note=args.note, overwrite=args.overwrite or None, **scale)
    if fitting.is_other_process():
        return  # the first process reports the run
    print(f"{args.name}: test accuracy {run.info['test_acc']:.4f} (best epoch "
          f"{run.info['best_epoch']}), {run.info['train_seconds']:.0f} s on {run.info['hardware']}"
          f" -> {run.directory}")


if __name__ == "__main__":
    main()
