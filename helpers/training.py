"""The course's one training path: ``fit``, and ``evaluate`` and ``predict`` for trained models.

Every notebook trains through :func:`fit`: a model from :mod:`helpers.models`, data from
:mod:`helpers.data` and a named recipe from :mod:`helpers.recipes` (optimizer, schedule, epochs,
batch size), so that each can be swapped independently; one training step is
:class:`helpers.classifier.Classifier`'s. ``fit`` picks the device (CUDA, MPS, CPU), bf16
autocast and channels_last where they help, seeds the run, shows a progress bar, writes CSV and
TensorBoard logs, keeps the best checkpoint (by validation accuracy) and the last one (for
resuming), evaluates the best weights on the whole test set, and returns a :class:`Run` with the
per-epoch history for plotting. What it does around the training (the run folder's lock and
settings, resuming, signals, several processes) is in :mod:`helpers._machinery.fitting`.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import nn

from ._machinery import arguments as _arguments, config, lightning as _lightning, runs
from ._machinery.fitting import (READ_ONLY, RunInterrupted, TrainingDiverged,
                                 check_model_and_data, check_trainer_options, choose_layout,
                                 is_other_process, load_finished, nothing_changed,
                                 requested_definition, say_how_long_if_long, stopped_by_signals,
                                 train)
from ._machinery.runs import Run
from .classifier import Classifier
from .data import ImageDataModule
from .memory_safe import MemorySafeClassifier
from .recipes import RECIPES, Recipe, get_recipe, planned_epochs

__all__ = ["seed", "fit", "evaluate", "predict", "Run", "RunInterrupted", "TrainingDiverged"]


def seed(value: int = 0) -> None:
    """Seed Python, NumPy and torch (call before building a model for a reproducible init)."""
    pl.seed_everything(value, verbose=False)


def fit(model: nn.Module, data: ImageDataModule, recipe: str | Recipe = "sgd-cosine", *,
        name: str, epochs: int | None = None, seed: int = 0, precision: str = "auto",
        channels_last: bool | None = None, overwrite: bool | None = None,
        directory: str | Path | None = None, note: str = "", memory_safe: bool = False,
        **trainer_options) -> Run:
    """Train ``model`` on ``data`` with ``recipe`` into ``<directory>/<name>/`` (default
    directory: ``config.runs_dir()``) and return the run, its best weights loaded.

    The folder holds one run, bound to its settings (see :mod:`~helpers._machinery.runs`): an
    interrupted run with the same settings resumes from its last completed epoch; a finished one
    is loaded, not trained again; a run with other settings is an error that names the differences.
    ``overwrite=True`` deletes the run in the folder and trains afresh; it is the default in
    smoke mode, whose runs are never kept. ``epochs``: see
    :func:`~helpers.recipes.planned_epochs`. The recipe decides the batch size. ``note`` is kept
    in the run record (e.g. how a recipe was shortened). ``precision="auto"`` is this machine's
    (:func:`~helpers._machinery.config.precision`) for a new run, and the run's own for one
    already in the folder, so that a run resumed on other hardware goes on as it began (each
    epoch's hardware is in its history, and the record names every machine). ``memory_safe``
    trains with :class:`~helpers.memory_safe.MemorySafeClassifier`, which redoes a batch that
    does not fit in memory in smaller pieces. A NaN or infinite loss stops the run
    (:class:`TrainingDiverged`); SIGINT and SIGTERM stop it with :class:`RunInterrupted`. On
    Linux, glibc is asked to keep the big blocks a step frees for the next one (faster steps,
    the same results; the process then keeps its peak memory until it ends). Extra keyword
    arguments go to ``pl.Trainer``, those that say where a run trains and not what it computes
    (:data:`helpers._machinery.fitting.TRAINER_OPTIONS`): ``devices=2, strategy="ddp"`` trains
    one run on two processes (GPUs, or CPU processes with ``accelerator="cpu"``) from a script;
    see :func:`helpers._machinery.fitting.train` for how they share it.
    """
    check_model_and_data("fit", model, data)
    recipe = get_recipe(recipe) if isinstance(recipe, str) else recipe
    if not isinstance(recipe, Recipe):
        raise TypeError(f"recipe must be a recipe name or a Recipe, not {recipe!r}; valid "
                        f"names: {', '.join(RECIPES)}")
    runs.check_name(name)
    _arguments.check("fit", fit, {"channels_last": channels_last, "overwrite": overwrite,
                                  "note": note, "memory_safe": memory_safe})
    _lightning.check_precision("fit", precision)
    if directory is not None and not isinstance(directory, (str, os.PathLike)):
        raise TypeError(f"fit: directory must be a path (a str or Path), not {directory!r}")
    check_trainer_options(trainer_options)
    epochs = planned_epochs(recipe, epochs)
    if not _arguments.is_whole(seed):
        raise TypeError(f"fit: seed must be a whole number, not {seed!r}")
    if not 0 <= seed < 2 ** 32:
        raise ValueError(f"fit: seed={seed} is not valid; it must be in [0, 2**32), the range "
                         f"the random number generators accept")
    data = data.with_batch_size(recipe.batch_size)  # a copy: the caller's module is unchanged
    if recipe.batch_size > len(data.train):
        raise ValueError(f"the batch size {recipe.batch_size} of recipe {recipe.name!r} is "
                         f"larger than the training split ({len(data.train)} images), so not "
                         f"one full batch could be trained on. Use more training images, or a "
                         f"smaller batch: get_recipe({recipe.name!r}, batch_size=...).")
    folder = Path(directory or config.runs_dir()) / name
    module_class = MemorySafeClassifier if memory_safe else Classifier
    if is_other_process():
        # one of several processes training one run: the process that launched it holds the
        # folder's lock and has prepared it; this one trains its share and writes nothing
        if runs.in_use(folder) is None:
            raise runs.RunInUse(
                f"this process was started as one of several training one run (its environment "
                f"sets RANK, LOCAL_RANK or NODE_RANK), but no process holds {folder}'s lock, "
                f"as the first one would. Start the run from a script with strategy='ddp' and "
                f"let Lightning start the other processes; unset those variables otherwise.")
        wanted = requested_definition(folder, model, data, recipe, epochs, seed, precision)
        runs.check_definition(folder, wanted)
        layout = choose_layout(channels_last, folder, model, data, recipe, wanted["precision"],
                               trainer_options)
        module = module_class(model, recipe, seed, layout)
        return train(module, data, folder, wanted, note, trainer_options, False, lambda: None,
                     writer=False)
    afresh = config.is_smoke() if overwrite is None else overwrite
    with contextlib.ExitStack() as held:
        # a signal before training begins (training and testing say more for themselves)
        held.enter_context(stopped_by_signals(lambda: (
            f"{name} was stopped before its training began; no epoch was trained. Start the "
            f"same run again to train it.")))
        try:
            guard = held.enter_context(runs.lock(folder))
        except OSError as error:
            if afresh or not runs.is_complete(folder) or error.errno not in READ_ONLY:
                raise
            # a finished run on storage this process cannot write to (a read-only mount, a
            # shared drive): nothing can train into it, so it is loaded without its lock
            return load_finished(folder, model, requested_definition(
                folder, model, data, recipe, epochs, seed, precision))
        runs.remove_stray_parts(folder)
        if afresh or runs.keeps_nothing(folder):  # (an attempt stopped before its 1st epoch)
            runs.clear(folder)
        wanted = requested_definition(folder, model, data, recipe, epochs, seed, precision)
        if not afresh and (finished := load_finished(folder, model, wanted)):
            return finished
        runs.write_definition(folder, wanted)
        runs.check_resumable(folder, wanted)
        say_how_long_if_long(model, data, recipe, folder, epochs, wanted["precision"])
        layout = choose_layout(channels_last, folder, model, data, recipe, wanted["precision"],
                               trainer_options)
        module = module_class(model, recipe, seed, layout)
        return train(module, data, folder, wanted, note, trainer_options, afresh, guard.check)


def evaluate(model: nn.Module, data: ImageDataModule, split: str = "test",
             precision: str = "auto", tta: bool = False) -> dict:
    """Loss and accuracy of ``model`` over every image of the 'val' or 'test' split; with
    ``tta``, averaging the predictions for each image and its horizontal mirror."""
    check_model_and_data("evaluate", model, data)
    _arguments.check("evaluate", evaluate, {"tta": tta})
    if split not in ("val", "test"):
        raise ValueError(f"unknown split {split!r}; valid: val, test")
    trainer = _lightning.trainer(precision, enable_progress_bar=False, enable_checkpointing=False)
    module = Classifier(model, tta=tta)
    evaluate_split = trainer.test if split == "test" else trainer.validate
    with _lightning.quiet(), stopped_by_signals(nothing_changed("evaluation")):
        metrics = evaluate_split(module, datamodule=data, verbose=False)[0]
    model.eval()
    return {"loss": metrics[f"{split}_loss"], "acc": metrics[f"{split}_acc"],
            "images": len(getattr(data, split))}


def predict(model: nn.Module, data: ImageDataModule, precision: str = "auto",
            tta: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Class probabilities (flip-averaged with ``tta``) and true labels for every test image,
    on the CPU."""
    check_model_and_data("predict", model, data)
    _arguments.check("predict", predict, {"tta": tta})
    trainer = _lightning.trainer(precision, enable_progress_bar=False, enable_checkpointing=False)
    with _lightning.quiet(), stopped_by_signals(nothing_changed("prediction")):
        batches = trainer.predict(Classifier(model, tta=tta), datamodule=data)
    model.eval()
    probabilities = torch.cat([p.cpu() for p, _ in batches])
    labels = torch.cat([y.cpu() for _, y in batches])
    return probabilities, labels
