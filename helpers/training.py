"""The course's one training path: ``fit``, and ``evaluate`` and ``predict`` for trained models.

Every notebook trains through :func:`fit`: a model from :mod:`helpers.models`, data from
:mod:`helpers.data` and a named recipe from :mod:`helpers.recipes` (optimizer, schedule, epochs,
batch size), so that each can be swapped independently; one training step is
:class:`helpers.classifier.Classifier`'s. ``fit`` picks the device (CUDA, MPS, CPU), bf16
autocast and channels_last where they help (and on a CPU the course's C++ kernels for a
DenseNet's dense blocks, where they build), seeds the run, shows a progress bar, writes CSV and
TensorBoard logs, keeps the best checkpoint (by validation accuracy) and the last one (for
resuming), evaluates the best weights on the whole test set, and returns a :class:`Run` with the
per-epoch history for plotting. What it does around the training (the run folder's lock and
settings, resuming, signals, several processes) is in :mod:`helpers._machinery.fitting`.
"""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import nn

from ._machinery import arguments as _arguments, config, lightning as _lightning
from ._machinery.fitting import (RunInterrupted, TrainingDiverged, check_fit_arguments,
                                 check_model_and_data, is_other_process, nothing_changed,
                                 stopped_by_signals, train_alone, train_share)
from ._machinery.runs import Run
from .classifier import Classifier
from .data import ImageDataModule
from .memory_safe import MemorySafeClassifier
from .recipes import Recipe

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
    directory: ``course.runs_dir()``) and return the run, its best weights loaded.

    The folder holds one run, bound to its settings: an interrupted run with the same settings
    resumes from its last completed epoch, a finished one is loaded, not trained again, and a
    run with other settings is an error that names the differences. ``overwrite=True`` deletes
    the run in the folder and trains afresh (the default in smoke mode, whose runs are never
    kept). ``epochs``: see :func:`~helpers.recipes.planned_epochs`; the recipe decides the batch
    size. ``note`` is kept in the run record. ``precision="auto"`` is this machine's for a new
    run and the run's own for one already in the folder. ``memory_safe`` trains with
    :class:`~helpers.memory_safe.MemorySafeClassifier`. A NaN or infinite loss stops the run
    (:class:`TrainingDiverged`), SIGINT and SIGTERM with :class:`RunInterrupted`. Extra keyword
    arguments go to ``pl.Trainer``, those that say where a run trains, not what it computes
    (``devices=2, strategy="ddp"`` trains one run on two processes, from a script). How the
    folder is kept safe, resumed and bound: :mod:`helpers._machinery.fitting`.
    """
    check_model_and_data("fit", model, data)
    _arguments.check("fit", fit, {"channels_last": channels_last, "overwrite": overwrite,
                                  "note": note, "memory_safe": memory_safe})
    data, recipe, epochs = check_fit_arguments(model, data, recipe, name, epochs, seed, precision,
                                               directory, trainer_options)
    folder = Path(directory or config.runs_dir()) / name
    classifier = MemorySafeClassifier if memory_safe else Classifier
    if is_other_process():  # one of several processes training one run: its share
        return train_share(folder, classifier, model, data, recipe, epochs, seed, precision,
                           channels_last, note, trainer_options)
    return train_alone(folder, classifier, model, data, recipe, epochs, seed, precision,
                       channels_last, note, overwrite, trainer_options)


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
