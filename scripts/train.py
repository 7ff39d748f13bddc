"""Train one model of the course from the command line, through the course's training path.

    COURSE_MODE=full python scripts/train.py ccnn-toy FashionMNIST ccnn-toy-paper \\
        --augment rotate-crop --epochs 10 --name ccnn-toy-fashionmnist-s0 \\
        --note "shortened: 10 of 100 epochs, on a CPU"

The run lands in saved_models/<name>/ (best.ckpt, history.csv, run.json with its provenance),
where the notebooks find it. An interrupted full-mode run resumes when started again.
"""

import argparse

from helpers import data, models, training


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=models.names())
    parser.add_argument("data", choices=list(data.DATASETS))
    parser.add_argument("recipe", choices=list(training.RECIPES))
    parser.add_argument("--name", required=True, help="folder name under saved_models/")
    parser.add_argument("--epochs", type=int, help="default: the recipe's")
    parser.add_argument("--augment", default="crop-flip", choices=[*data.AUGMENTATIONS, "none"])
    parser.add_argument("--val-size", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--note", default="")
    args = parser.parse_args()

    module = data.ImageDataModule(args.data, val_size=args.val_size, seed=args.seed,
                                  augment=None if args.augment == "none" else args.augment)
    module.setup()
    training.seed(args.seed)
    model = models.create(args.model, num_classes=module.num_classes,
                          in_channels=module.input_shape[0])
    run = training.fit(model, module, args.recipe, name=args.name, epochs=args.epochs,
                       seed=args.seed, note=args.note)
    print(f"{args.name}: test accuracy {run.info['test_acc']:.4f} (best epoch "
          f"{run.info['best_epoch']}), {run.info['train_seconds']:.0f} s on {run.info['hardware']}"
          f" -> {run.directory}")


if __name__ == "__main__":
    main()
