"""A model ready for use: loaded, downloaded or trained (``load_or_train``), and the published ones.

A finished run in ``saved_models/<name>/`` is loaded if its settings are the ones asked for; else
a published checkpoint is downloaded from its URL and checked against its sha256
(:mod:`helpers._machinery.downloads`; skipped with one line when ``COURSE_OFFLINE`` is set);
else the model is trained with :func:`helpers.training.fit`. A corrupt, mismatching or wrong-hash
file raises :class:`CheckpointError`, naming the file and what to do, instead of failing deep
inside torch.

``load_tutorial5(name)`` does this for the four CIFAR-10 models that UvA's Deep Learning course
published with its Tutorial 5 (Phillip Lippe; MIT licence), and ``tutorial5_log(name)`` fetches
and reads their TensorBoard training logs.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from torch import nn

from . import models, recipes, training
from ._machinery import arguments as _arguments, config, files, runs
from ._machinery.downloads import download_unless_offline, tensorboard_scalars, tutorial5_url
from ._machinery.runs import CheckpointError, load_weights
from .models import weights

__all__ = ["load_or_train", "load_tutorial5", "tutorial5_log", "CheckpointError"]


def load_or_train(model: nn.Module, data=None, recipe=None, *, name: str,
                  url: str | None = None, sha256: str | None = None,
                  overwrite: bool | None = None, **fit_options) -> training.Run:
    """The model ``name`` ready for use: loaded, else downloaded, else trained (the arguments
    in :func:`training.fit`'s order).

    1. the finished run in ``saved_models/<name>/``, if its settings agree with the ones asked
       for (model and hyper-parameters, data set and augmentation, recipe, seed, and epochs
       when given; not the subset sizes, so a quick-mode notebook shows the full run); else an
       error naming the differences. A ``best.ckpt`` there without a run record (a downloaded or
       copied checkpoint) is loaded strictly, checked against ``sha256`` when given;
    2. else ``url`` (if given, and not offline unless it is a file:// URL) downloaded and
       checked against ``sha256``;
    3. else ``training.fit(model, data, recipe, name=name, **fit_options)``, which resumes an
       interrupted run. Smoke-mode training writes to ``saved_models/smoke/``, never loaded here,
       and starts afresh each time (``fit``'s smoke-mode default).
    ``overwrite=True`` skips 1 and 2 and trains afresh; ``overwrite`` goes on to ``fit``.
    """
    runs.check_name(name)
    _arguments.check("load_or_train", load_or_train, {"overwrite": overwrite, "url": url,
                                                      "sha256": sha256})
    folder = config.saved_models_dir() / name
    path = folder / runs.BEST
    if not overwrite:
        if runs.is_complete(folder):
            runs.check_same_run(folder, _requested(model, data, recipe, fit_options))
            print(f"Loaded {name} from {folder}.")
            return runs.load(folder, model)
        downloaded = not ((folder / runs.LAST).exists() or (folder / runs.DEFINITION).exists())
        if path.exists() and downloaded:
            return _loaded_run(name, model, path, sha256, url)
        if url and download_unless_offline(url, path, sha256, name):
            return _loaded_run(name, model, path, None, url)  # sha256 checked while downloading
    if data is None or recipe is None:
        why = " (its download was skipped, as said above)" if url else ""
        raise CheckpointError(f"no checkpoint for {name} at {path}{why}, and no data and recipe "
                              f"to train it with.")
    return training.fit(model, data, recipe, name=name, overwrite=overwrite, **fit_options)


def _requested(model: nn.Module, data, recipe, fit_options: dict) -> dict:
    """The settings a caller of ``load_or_train`` asks for (:func:`runs.settings`: not the
    subset sizes), with the epochs when given; the recipe's own epochs are not compared."""
    recipe = recipes.get_recipe(recipe) if isinstance(recipe, str) else recipe
    wanted = runs.settings(models.definition(model), data, recipe, fit_options.get("seed", 0))
    wanted.get("recipe", {}).pop("epochs", None)
    if fit_options.get("epochs") is not None:
        wanted["epochs"] = fit_options["epochs"]
    return wanted


def _loaded_run(name: str, model: nn.Module, path: Path, sha256: str | None,
                url: str | None) -> training.Run:
    """A checkpoint without a run record of ours (downloaded or copied), loaded strictly."""
    load_weights(path, model, sha256)
    model.eval()
    print(f"Loaded {name} from {path}.")
    return training.Run(name, model, None, {"checkpoint": str(path), "url": url}, path.parent)


# --- the published UvA Tutorial 5 models (their table: helpers.models.weights) ---------------

def load_tutorial5(name: str, data=None, recipe=None, **fit_options) -> training.Run:
    """Tutorial 5's published CIFAR-10 model ``name``, in eval mode: from ``saved_models/``,
    else downloaded and sha256-checked, else (given data) trained with the tutorial's recipe."""
    published = weights.tutorial5(name)
    return load_or_train(models.create(name), data, recipe or published.recipe,
                         name=f"tutorial5-{name}", url=tutorial5_url(published.checkpoint),
                         sha256=published.checkpoint_sha256, **fit_options)


def tutorial5_log(name: str) -> pd.DataFrame | None:
    """The published TensorBoard log of model ``name`` as a table (tag, step, epoch, value,
    wall_time), downloaded and checked like a checkpoint; None when offline and not yet
    downloaded.

    ``epoch`` is training progress in epochs: the learning rate is logged at the start of each
    epoch, everything else after ``step + 1`` of 351 steps per epoch. ``lr-SGD`` and
    ``lr-AdamW`` are renamed ``lr``."""
    published = weights.tutorial5(name)
    folder = config.saved_models_dir() / f"tutorial5-{name}" / "tensorboard"
    path = folder / Path(published.log).name
    if path.exists():
        if (actual := files.sha256(path)) != published.log_sha256:
            raise CheckpointError(f"{path} has sha256 {actual}, expected {published.log_sha256}: "
                                  f"it is corrupt. Delete {path} and run again to download it.")
    elif not download_unless_offline(tutorial5_url(published.log), path, published.log_sha256,
                                     f"the training log of {name}"):
        return None
    table = tensorboard_scalars(path)
    is_lr = table["tag"].str.startswith("lr-")
    table.loc[is_lr, "tag"] = "lr"
    table["epoch"] = (table["step"] + 1) / weights.TUTORIAL5_STEPS_PER_EPOCH
    table.loc[is_lr, "epoch"] = table.loc[is_lr, "step"]
    return table[["tag", "step", "epoch", "value", "wall_time"]]
