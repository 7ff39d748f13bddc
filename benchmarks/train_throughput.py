"""Training throughput: the usual tutorial pipeline against the course's training path, side by
side on the same model, data and hardware in one run.

    python benchmarks/train_throughput.py [--images 50000] [--epochs 2] [--workers N]

(A) the usual pipeline: a torchvision CIFAR-10 dataset whose PIL transforms crop (4 pixels of
    padding), flip and normalise one image at a time, a DataLoader with worker processes, and a
    LightningModule written the way most tutorials write it, trained by ``pl.Trainer`` with its
    defaults (fp32, logger, checkpointing, progress bar).
(B) the course's path, ``helpers.training.fit``: the whole training set on the device, crops and
    flips done for a whole batch at once, bf16 autocast and channels_last where they help, metrics
    kept on the device.

Both train Tutorial 5's ResNet (272,378 parameters) with the same optimiser, schedule and batch
size on the same images: real CIFAR-10 when ``DATA_DIR`` has it, otherwise random uint8 images of
the same shape (the time of a step does not depend on what the pixels show). The time is that of
the training batches of an epoch (no evaluation) and the last epoch counts, the first one paying
for start-up. Prints images/s and epoch time of each and the ratio B/A, and writes them to
``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
import torchvision
from torch.nn import functional as F
from torchvision import transforms

import _results
from _convolutions import conv_shapes, convolutions_seconds
from helpers._machinery import config, datasets, fitting
from helpers import data, models, recipes, training

RECIPE = "sgd-cosine"


class TutorialModule(pl.LightningModule):
    """A classifier as tutorials usually write one: loss and accuracy logged every step."""

    def __init__(self, model: torch.nn.Module, recipe: recipes.Recipe, epochs: int):
        super().__init__()
        self.model, self.recipe, self.epochs = model, recipe, epochs

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self.model(x)
        loss = F.cross_entropy(logits, y, label_smoothing=self.recipe.label_smoothing)
        self.log("train_loss", loss)
        self.log("train_acc", (logits.argmax(dim=1) == y).float().mean(), prog_bar=True)
        return loss

    def configure_optimizers(self):
        r = self.recipe
        optimizer = torch.optim.SGD(self.parameters(), lr=r.lr, momentum=r.momentum,
                                    nesterov=r.nesterov, weight_decay=r.weight_decay)
        return [optimizer], [torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, self.epochs)]


def cifar10_images(count: int) -> tuple[np.ndarray, np.ndarray, str]:
    """``count`` CIFAR-10 training images (N x 32 x 32 x 3 uint8, as torchvision keeps them) and
    labels: the real ones when DATA_DIR has them, otherwise random ones."""
    root = config.data_dir()
    if (root / datasets.info("CIFAR10").folder).is_dir():
        real = torchvision.datasets.CIFAR10(root, train=True, download=False)
        return real.data[:count], np.array(real.targets[:count]), f"CIFAR-10 from {root}"
    rng = np.random.default_rng(0)
    return (rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8),
            rng.integers(0, 10, count), "random uint8 images of CIFAR-10's shape")


def tutorial_dataset(images: np.ndarray, labels: np.ndarray,
                     mean_std: tuple) -> torchvision.datasets.CIFAR10:
    """torchvision's CIFAR10 dataset class over these images, with the usual PIL transforms."""
    dataset = torchvision.datasets.CIFAR10.__new__(torchvision.datasets.CIFAR10)
    torchvision.datasets.VisionDataset.__init__(dataset, str(config.data_dir()), transform=(
        transforms.Compose([transforms.RandomCrop(32, padding=4),
                            transforms.RandomHorizontalFlip(), transforms.ToTensor(),
                            transforms.Normalize(*mean_std)])))
    dataset.train, dataset.data, dataset.targets = True, images, labels.tolist()
    return dataset


def course_data(images: np.ndarray, labels: np.ndarray, source: str,
                mean_std: tuple) -> data.ImageDataModule:
    """The course's data module holding these images as its training split (and the first
    1,000 as a token validation and test split, which the timing leaves out)."""
    module = data.ImageDataModule("CIFAR10", eval_batch_size=1000, smoke=config.is_smoke())
    tensors = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    whole = datasets.ImageSet(tensors, torch.from_numpy(labels).long(),
                              datasets.CIFAR10_CLASSES, source)
    module.train, module.val = whole, whole.subset(torch.arange(min(1000, len(whole))))
    module.test = module.val
    module.mean, module.std = mean_std
    return module


def last_epoch(history) -> dict:
    """Images per second and seconds of the training batches of the last epoch."""
    row = history.iloc[-1]
    return {"step_seconds": float(row["step_seconds"]), "first_epoch_seconds":
            float(history.iloc[0]["step_seconds"])}


def run_usual(images, labels, stats, recipe, epochs: int, workers: int, folder: Path) -> dict:
    torch.manual_seed(0)
    loader = torch.utils.data.DataLoader(
        tutorial_dataset(images, labels, stats), batch_size=recipe.batch_size, shuffle=True,
        drop_last=True, num_workers=workers, pin_memory=torch.cuda.is_available())
    history = fitting.History()
    trainer = pl.Trainer(max_epochs=epochs, default_root_dir=folder, callbacks=[history])
    module = TutorialModule(models.create("resnet"), recipe, epochs)
    trainer.fit(module, loader)
    return {**last_epoch(pd.DataFrame(history.rows)), "precision": str(trainer.precision),
            "images": len(loader) * recipe.batch_size}


def run_course(images, labels, source, stats, recipe, epochs: int, folder: Path) -> dict:
    run = training.fit(models.create("resnet"), course_data(images, labels, source, stats), recipe,
                       name="course", epochs=epochs, directory=folder, overwrite=True)
    return {**last_epoch(run.history), "precision": run.info["precision"],
            "images": len(images) // recipe.batch_size * recipe.batch_size}


def convolution_bound(batch: int, precision: str, usual_rate: float, repeats: int = 3) -> dict:
    """Images per second of the ResNet's convolutions alone at ``batch`` (forward and backward,
    each in its faster layout, in ``precision``), and that over the usual pipeline's rate."""
    shapes = conv_shapes(models.create("resnet"), batch)
    seconds = convolutions_seconds(shapes, precision.startswith("bf16"), repeats)
    return {"convolutions_ms": seconds * 1e3, "images_per_s": batch / seconds,
            "ratio": batch / seconds / usual_rate}


def measure(images: int, epochs: int, workers: int) -> dict:
    recipe = recipes.get_recipe(RECIPE)
    pixels, labels, source = cifar10_images(images)
    stats = datasets.mean_std(torch.from_numpy(pixels[:10_000]).permute(0, 3, 1, 2))
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for key, run in (("usual", lambda: run_usual(pixels, labels, stats, recipe, epochs,
                                                      workers, Path(folder) / "usual")),
                         ("course", lambda: run_course(pixels, labels, source, stats, recipe,
                                                       epochs, Path(folder) / "course"))):
            print(f"Training with the {key} pipeline ...", flush=True)
            captured = io.StringIO()  # Lightning's bars and summaries, not the benchmark's
            with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
                results[key] = run()
    for result in results.values():
        result["images_per_s"] = result["images"] / result["step_seconds"]
    if config.device_type() == "cpu":
        results["bound"] = convolution_bound(recipe.batch_size, results["course"]["precision"],
                                             results["usual"]["images_per_s"])
    return {"benchmark": "train_throughput", "model": "resnet (Tutorial 5, 272,378 parameters)",
            "data": source, "images": images, "epochs": epochs, "batch_size": recipe.batch_size,
            "workers": workers, "recipe": RECIPE, "hardware": config.hardware(),
            "torch": torch.__version__, "torchvision": torchvision.__version__,
            "lightning": pl.__version__, "date": date.today().isoformat(),
            "command": "python " + " ".join(sys.argv), **results,
            "ratio": results["course"]["images_per_s"] / results["usual"]["images_per_s"]}


def report(result: dict) -> None:
    print(f"\n{result['hardware']} | torch {result['torch']}, torchvision "
          f"{result['torchvision']}, Lightning {result['lightning']} | {result['date']}")
    print(f"{result['model']} on {result['data']}: {result['images']:,} images, batch "
          f"{result['batch_size']}, {result['epochs']} epochs (the last one timed), recipe "
          f"{result['recipe']}, {result['workers']} loader workers for (A)\n")
    print(f"{'pipeline':<46}{'precision':>12}{'images/s':>11}{'epoch s':>10}{'1st epoch s':>13}")
    for key, label in (("usual", "(A) usual: PIL transforms, DataLoader, defaults"),
                       ("course", "(B) course: helpers.training.fit")):
        r = result[key]
        print(f"{label:<46}{r['precision']:>12}{r['images_per_s']:>11,.0f}"
              f"{r['step_seconds']:>10.1f}{r['first_epoch_seconds']:>13.1f}")
    print(f"\nB/A: {result['ratio']:.2f}x the images per second")
    if "bound" in result:
        b = result["bound"]
        print(f"The ResNet's convolutions alone, each in its faster layout, in (B)'s precision: "
              f"{b['convolutions_ms']:.0f} ms a batch, {b['images_per_s']:,.0f} images/s. No "
              f"path that computes them reaches more than {b['ratio']:.2f}x (A) here (issue 27 "
              f"asks for 3x).")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=50_000, help="training images per epoch")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per pipeline; the last "
                        "one is timed")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                        help="DataLoader worker processes of the usual pipeline")
    parser.add_argument("--no-save", action="store_true", help="do not write the result file")
    args = parser.parse_args(argv)
    result = measure(args.images, args.epochs, args.workers)
    report(result)
    if not args.no_save:
        _results.save("train_throughput", result)
    return result


if __name__ == "__main__":
    main()
