"""Training recipes: optimizer, learning-rate schedule, epochs and batch size, by name.

Every run of the course trains with a named :class:`Recipe`, so that a model, a recipe and a
data set can be swapped independently. This module needs no Lightning: notebooks plot the
schedules with :func:`lr_factor` alone. :func:`planned_epochs` is the one rule for how many epochs
a run trains.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import pandas as pd

from ._machinery import arguments as _arguments, config


@dataclass(frozen=True)
class Recipe:
    """How to train: optimizer, learning-rate schedule, length and batch size.

    ``milestones`` of a step schedule are fractions of the run (0.5 = half-way), so a recipe
    keeps its shape when the number of epochs changes; at each one the rate is multiplied by
    ``gamma``. "sgdr" (Loshchilov & Hutter's warm restarts) runs cosine cycles from ``lr`` to
    ``final_lr`` of ``cycle_epochs``, each next one ``cycle_mult`` times longer; its restarts
    stay at fixed epochs. ``description`` says where the recipe comes from (prose, not a
    setting: a run is not defined by it).
    """
    name: str
    optimizer: str = "sgd"           # "sgd" or "adamw"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    schedule: str = "cosine"         # "step", "cosine", "sgdr" or "constant"
    milestones: tuple = ()
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    final_lr: float = 0.0            # where cosine and SGDR cycles end
    cycle_epochs: float = 10         # SGDR: length of the first cycle ...
    cycle_mult: float = 2            # ... and the growth of each next one
    epochs: int = 30
    batch_size: int = 128
    label_smoothing: float = 0.0
    description: str = ""

    def __post_init__(self):  # a bad recipe fails here, before any data is loaded
        _arguments.check_recipe(self, OPTIMIZERS, SCHEDULES)


OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("step", "cosine", "sgdr", "constant")


RECIPES = {recipe.name: recipe for recipe in [
    Recipe("allcnn-seed", lr=0.1, momentum=0.9, weight_decay=2e-5, schedule="step",
           milestones=(0.2, 0.4, 0.6, 0.8), gamma=0.5, epochs=100, batch_size=64,
           description="seed 001 (The AllConv Net): SGD, lr halved every 20 of 100 epochs, "
                       "with the scheduler stepped correctly (the seed never decayed it)"),
    Recipe("sgd-step", nesterov=True, weight_decay=5e-4, schedule="step",
           milestones=(0.5, 0.75), gamma=0.1, epochs=100, batch_size=128,
           description="SGD + Nesterov momentum, lr / 10 at 50% and 75% of training"),
    Recipe("sgd-cosine", nesterov=True, weight_decay=5e-4, schedule="cosine", warmup_epochs=1,
           epochs=30, batch_size=128, label_smoothing=0.1,
           description="SGD + Nesterov momentum, 1 warm-up epoch, cosine decay to 0, label "
                       "smoothing"),
    Recipe("adamw-cosine", optimizer="adamw", lr=1e-3, weight_decay=1e-4, schedule="cosine",
           epochs=30, batch_size=128,
           description="AdamW (decoupled weight decay), cosine decay to 0"),
    Recipe("tutorial5-sgd", lr=0.1, momentum=0.9, weight_decay=1e-4, schedule="step",
           milestones=(100 / 180, 150 / 180), gamma=0.1, epochs=180, batch_size=128,
           description="UvA DL Tutorial 5, ResNets: SGD momentum 0.9, lr 0.1 / 10 at epochs 100 "
                       "and 150 of 180, weight decay 1e-4, batch 128"),
    Recipe("tutorial5-adamw", optimizer="adamw", lr=1e-3, weight_decay=1e-4, schedule="step",
           milestones=(100 / 180, 150 / 180), gamma=0.1, epochs=180, batch_size=128,
           description="UvA DL Tutorial 5, GoogleNet and DenseNet: AdamW lr 1e-3 / 10 at epochs "
                       "100 and 150 of 180, weight decay 1e-4, batch 128"),
    Recipe("ccnn-toy-paper", lr=1.6, momentum=0.9, nesterov=True, weight_decay=0.0,
           schedule="step", milestones=(0.5, 0.75), gamma=0.1, epochs=100, batch_size=16,
           description="Sadigh & Sen's MNIST demo: SGD with Nesterov momentum 0.9, no weight "
                       "decay, lr / 10 at 50% and 75% of 100 epochs, batch 16; its lr 0.1 on "
                       "the summed loss of 16 images is exactly lr 1.6 on the mean loss used "
                       "here"),
    Recipe("mundt-sgdr", lr=0.01, momentum=0.9, weight_decay=5e-4, schedule="sgdr",
           final_lr=1e-5, cycle_epochs=10, cycle_mult=2, epochs=150, batch_size=128,
           description="Mundt et al.'s feature-amount sweep: SGD momentum 0.9, weight decay "
                       "5e-4, batch 128, SGDR from 0.01 to 1e-5 per step, cycles of 10, 20, 40, "
                       "80 epochs (restarts at epochs 10, 30, 70)"),
    Recipe("densenet-paper", lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4,
           schedule="step", milestones=(0.5, 0.75), gamma=0.1, epochs=300, batch_size=64,
           description="Huang et al. 2017 (DenseNet), CIFAR: SGD with Nesterov momentum 0.9, "
                       "lr 0.1 / 10 at 50% and 75% of 300 epochs, weight decay 1e-4, batch 64"),
    Recipe("densenet-fast", lr=0.2, momentum=0.9, nesterov=True, weight_decay=5e-4,
           schedule="cosine", warmup_epochs=2, epochs=60, batch_size=128, label_smoothing=0.1,
           description="the course's design: a fifth of the paper's epochs, double batch and lr, "
                       "2 warm-up epochs, cosine decay, label smoothing 0.1, weight decay 5e-4"),
]}


def get_recipe(name: str, **overrides) -> Recipe:
    """Recipe ``name``, optionally with some fields replaced (e.g. ``epochs=10``)."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; valid names: {', '.join(RECIPES)}")
    valid = {field.name for field in dataclasses.fields(Recipe)}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise ValueError(f"unknown recipe field(s) {', '.join(map(repr, unknown))}; valid: "
                         f"{', '.join(sorted(valid))}")
    return dataclasses.replace(RECIPES[name], **overrides)


def recipes_table() -> pd.DataFrame:
    """All named recipes side by side."""
    return pd.DataFrame([dataclasses.asdict(r) for r in RECIPES.values()]).set_index("name")


def lr_factor(recipe: Recipe, epoch: float, total_epochs: int) -> float:
    """The learning-rate multiplier at fractional ``epoch`` of a ``total_epochs`` run."""
    warmup = min(1.0, epoch / recipe.warmup_epochs) if recipe.warmup_epochs else 1.0
    if recipe.schedule == "constant":
        return warmup
    if recipe.schedule == "step":
        passed = sum(int(epoch) >= round(m * total_epochs) for m in recipe.milestones)
        return warmup * recipe.gamma ** passed
    if recipe.schedule == "cosine":
        span = max(total_epochs - recipe.warmup_epochs, 1e-9)
        progress = min(1.0, max(0.0, (epoch - recipe.warmup_epochs) / span))
    elif recipe.schedule == "sgdr":  # progress through the current cycle
        position, cycle = epoch, recipe.cycle_epochs
        while position >= cycle:
            position, cycle = position - cycle, cycle * recipe.cycle_mult
        progress = position / cycle
    else:
        raise ValueError(f"unknown schedule {recipe.schedule!r}; valid: {', '.join(SCHEDULES)}")
    floor = recipe.final_lr / recipe.lr
    return warmup * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def planned_epochs(recipe: Recipe, epochs: int | None = None, *, smoke: bool = False) -> int:
    """How many epochs a run trains: ``epochs`` when given, else the recipe's, capped at
    ``config.SMOKE_EPOCHS`` for a ``smoke`` run (the caller says which: ``fit`` asks the course's
    mode). The one place this rule lives."""
    if epochs is not None:
        return _arguments.whole_number(epochs, "epochs")
    return min(recipe.epochs, config.SMOKE_EPOCHS) if smoke else recipe.epochs
