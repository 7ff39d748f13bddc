"""The notebooks' exercises, and the check of a learner's run against the course's records.

Every exercise, like every run a notebook trains in CPU mode, sees its notebook's CPU-mode data
(:func:`helpers.modes.cpu_sizes`: 5,000 to 10,000 training, 1,000 validation and all 10,000 test
images of the real Fashion-MNIST) for :data:`EPOCHS` epochs, in fp32 on every machine, so that
the course's measurements apply on any CPU it supports. The measurements are run records
committed in ``saved_models/exercise-records/`` (one file per run name and seed, written by
``scripts/measure_exercises.py``); :func:`expected` turns them into a range, and :func:`check`
judges a run by it, after the run. In smoke mode the cells make smoke runs of a few batches
instead, which :func:`check` does not judge."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ._machinery import arguments as _arguments, config, runs
from . import training
from .data import ImageDataModule
from .measure import count_parameters
from .modes import CPU_DATA as DATA, CPU_EPOCHS as EPOCHS, CPU_PRECISION as PRECISION, cpu_sizes
from ._machinery.exercise_records import (  # noqa: F401 (the ranges: expected, Expected)
    ABOVE_CHANCE, CHANCE_FLOOR, CLASSES, RECORDS, Expected, expected, is_full, train_images)
from ._machinery.runs import Run

SMOKE_SIZES = (256, 128, 256)
SMOKE_EPOCHS = 1


def full() -> bool:
    """Whether exercise cells do the exercise (the full and CPU modes, or
    ``COURSE_EXERCISES=full``) rather than a smoke run (smoke mode). Any other value of
    ``COURSE_EXERCISES`` is an error, so that a typo never silently runs the smoke run."""
    value = os.environ.get("COURSE_EXERCISES", "").strip()
    if value not in ("", "full"):
        raise ValueError(f"COURSE_EXERCISES={value!r} is not valid: set it to 'full' to do the "
                         f"exercises in smoke mode, or leave it unset")
    return not config.is_smoke() or value == "full"


def data(notebook: str, full: bool, **options) -> ImageDataModule:
    """Notebook ``notebook``'s exercise data: its CPU-mode Fashion-MNIST
    (:func:`~helpers.modes.cpu_sizes`) when ``full``, a few hundred images for a smoke run.
    ``options`` go to :class:`ImageDataModule` (e.g. ``augment=None``, ``size=32``)."""
    sizes = cpu_sizes(notebook) if full else SMOKE_SIZES
    return ImageDataModule(DATA, val_size=sizes[1], seed=0, subset=sizes,
                           smoke=config.is_smoke(), **options)


def train(model, module: ImageDataModule, recipe: str, *, name: str, full: bool,
          seed: int = 0, **options) -> Run:
    """Train an exercise run for :data:`EPOCHS` epochs in fp32 into ``<runs>/exercises/<name>/``,
    apart from the course's own runs. It is kept: run again, it is loaded (or an interrupted one
    resumed), not trained again. A smoke run (one epoch of a few batches) goes to
    ``<name>-smoke`` and starts afresh each time, so it never replaces the exercise run.
    ``options`` go to :func:`~helpers.training.fit`."""
    options.setdefault("overwrite", not full)
    return training.fit(model, module, recipe, name=name if full else f"{name}-smoke",
                        epochs=EPOCHS if full else SMOKE_EPOCHS, seed=seed, precision=PRECISION,
                        directory=config.runs_dir() / "exercises", **options)


def check(run: Run, hint: str = "", like: str | None = None, records: Path | None = None) -> bool:
    """Say whether a CPU-mode run's test accuracy lies in the range the course measured for the
    run of the same name (or of name ``like``: a run that should do as well), and return it. A
    miss prints what was expected, what the run got and the likely cause (``hint``; chance
    level and changed settings have their own), and does not stop the notebook. A run at
    another scale (a smoke run, a full-mode run) is not judged: one line says so (False)."""
    if not isinstance(run, Run):
        raise TypeError(f"exercises.check takes the run that exercises.train (or training.fit) "
                        f"returned, not {type(run).__name__} {run!r:.60}")
    _arguments.check("exercises.check", check, {"hint": hint, "like": like})
    accuracy = run.info["test_acc"]
    if not is_full(run.info):
        what = "a smoke run" if run.info.is_smoke_run else "not a CPU-mode run"
        print(f"{run.name}: {accuracy:.1%}, not checked: {what} (the course measured its runs on "
              f"the real {DATA}, {EPOCHS} epochs, fp32: COURSE_MODE=cpu).")
        return False
    try:
        wanted = expected(like or run.name, records)
    except FileNotFoundError:
        print(f"{run.name}: {accuracy:.2%}, not checked: the course has measured no run named "
              f"{like or run.name!r} (its records are in saved_models/exercise-records/); keep "
              f"the name the exercise gives.")
        return False
    if train_images(run.info) != wanted.train_images:
        print(f"{run.name}: {accuracy:.1%}, not checked: it trained on "
              f"{train_images(run.info) or 0:,} images, the course's runs of it on "
              f"{wanted.train_images:,} (its notebook's exercise data: exercises.data).")
        return False
    if not wanted.judgeable:
        print(f"{run.name}: {accuracy:.2%}, not judged: the course's runs of it reached "
              f"{wanted.reached()}, within {ABOVE_CHANCE:.0%} of chance, so a correct run "
              f"cannot be told from a broken one.")
        return False
    if wanted.low <= accuracy <= wanted.high:
        print(f"PASS {run.name}: {accuracy:.2%}, inside the expected {wanted.describe()}.")
        return True
    if accuracy < CHANCE_FLOOR:
        cause = ("chance level: the network learned nothing (a learning rate of 0, "
                 "labels or images that do not match, or an output that ignores the input)")
    elif changed := runs.differences(wanted.definition, run.info.get("definition", {}),
                                     ("model", "data", "recipe", "epochs"),
                                     labels=("measured", "in yours")):
        cause = "your run differs from the measured one: " + "; ".join(changed)
    elif accuracy < wanted.low:
        cause = hint or "a setting other than the exercise's, or a bug in the changed code"
    else:
        cause = "better than every measured seed: check that the run uses the exercise's data"
    print(f"MISS {run.name}: {accuracy:.2%}, outside the expected {wanted.describe()}. "
          f"Likely cause: {cause}.")
    return False


def check_parameters(model, expected_count: int, input_shape=(1, 28, 28), classes: int = CLASSES
                     ) -> bool:
    """Before training code a learner wrote: does ``model`` have ``expected_count`` parameters,
    and does a batch of two ``input_shape`` images give (2, ``classes``) scores? Says what it
    found either way, and returns whether both hold."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"check_parameters: model must be your network (a torch.nn.Module), "
                        f"not {model!r}"[:200])
    _arguments.check("check_parameters", check_parameters,
                     {"expected_count": expected_count, "classes": classes})
    found = count_parameters(model)
    with torch.no_grad():
        shape = tuple(model.eval()(torch.zeros(2, *input_shape)).shape)
    model.train()
    problems = ([f"{found:,} parameters, expected {expected_count:,} ({found - expected_count:+,})"]
                if found != expected_count else [])
    if shape != (2, classes):
        problems.append(f"output shape {shape} for two images, expected (2, {classes})")
    if problems:
        print("MISS your model: " + "; ".join(problems) + ".")
        return False
    print(f"PASS your model: {found:,} parameters and scores of shape {shape}, as expected.")
    return True
