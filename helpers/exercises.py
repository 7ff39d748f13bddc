"""The notebooks' exercises: small Fashion-MNIST runs that take minutes on a laptop CPU, and a
check of the learner's result against the range the course measured for the same settings.

Every exercise trains on the same data (5,000 training, 1,000 validation and all 10,000 test
images of the real Fashion-MNIST) for the same few epochs, so that the range the course measured
applies on another machine too, within the margin the range allows for seeds and hardware. In
quick mode an exercise cell makes a smoke run of a few batches instead, which :func:`check` does
not judge; set ``FULL = True`` in the cell (or ``COURSE_EXERCISES=full`` in the environment) to
do the exercise.
"""

from __future__ import annotations

import os

from . import config, training
from .data import ImageDataModule
from .runs import Run

DATA = "FashionMNIST"
SIZES = (5_000, 1_000, 10_000)       # training, validation, test images of a full exercise
SMOKE_SIZES = (256, 128, 256)
EPOCHS = 3
SMOKE_EPOCHS = 1


def full() -> bool:
    """Whether exercise cells do the exercise (full mode, or ``COURSE_EXERCISES=full``) rather
    than a smoke run (quick mode)."""
    return not config.is_quick() or os.environ.get("COURSE_EXERCISES") == "full"


def data(full: bool, **options) -> ImageDataModule:
    """The exercises' Fashion-MNIST: :data:`SIZES` images when ``full``, a few hundred for a
    smoke run. ``options`` go to :class:`ImageDataModule` (e.g. ``augment=None``, ``size=32``)."""
    return ImageDataModule(DATA, val_size=SIZES[1], seed=0,
                           subset=SIZES if full else SMOKE_SIZES, **options)


def train(model, module: ImageDataModule, recipe: str, *, name: str, full: bool,
          seed: int = 0, **options) -> Run:
    """Train an exercise run for :data:`EPOCHS` epochs into ``<runs>/exercises/<name>/``, apart
    from the course's own runs. It is kept, in quick mode too: run again, it is loaded (or an
    interrupted one resumed), not trained again. A smoke run (one epoch of a few batches) goes
    to ``<name>-smoke`` and starts afresh each time, so it never replaces the exercise run.
    ``options`` go to :func:`~helpers.training.fit`."""
    options.setdefault("overwrite", not full)
    return training.fit(model, module, recipe, name=name if full else f"{name}-smoke",
                        epochs=EPOCHS if full else SMOKE_EPOCHS, seed=seed,
                        directory=config.runs_dir() / "exercises", **options)


def is_full(run: Run) -> bool:
    """Was ``run`` trained with the exercises' settings on the real data (so its expected range
    applies)?"""
    info = run.info
    return (info.get("images", {}).get("train") == SIZES[0] and info.get("epochs") == EPOCHS
            and info.get("data") == DATA and "stand-in" not in str(info.get("data_source")))


def check(run: Run, between: tuple[float, float], measured: str, hint: str = "") -> None:
    """Assert that an exercise run's test accuracy lies in ``between`` (fractions), the range
    the course measured (``measured`` says where and how: hardware, time, seeds). A miss names
    the run, the range and ``hint`` (what a miss most likely means). A run with other settings
    (a smoke run) is not judged: one line says so."""
    low, high = between
    accuracy = run.info["test_acc"]
    if not is_full(run):
        print(f"{run.name}: {accuracy:.1%} — not checked: a smoke run (the range "
              f"{low:.1%}–{high:.1%} is for {SIZES[0]:,} real training images and {EPOCHS} "
              f"epochs; set FULL = True in the cell to do the exercise).")
        return
    assert low <= accuracy <= high, (
        f"{run.name}: test accuracy {accuracy:.2%} is outside the expected {low:.1%}–{high:.1%} "
        f"({measured}). {hint}".strip())
    print(f"{run.name}: {accuracy:.2%}, inside the expected {low:.1%}–{high:.1%} ({measured}).")
