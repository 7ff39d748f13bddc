"""The list of reference runs, their status, their training and their README table.

The one list of the runs each notebook's experiment needs. They are trained on the real
Fashion-MNIST (the one image data set that installs offline, as the Debian package
``dataset-fashion-mnist``: 55,000 train / 5,000 validation / 10,000 test images) by ``make
reference``, which trains what is missing, resumes what was interrupted and skips what is
finished, and they are shipped in ``saved_models/``: plain weights, history, test probabilities
and a full run record each. Notebooks show them in every mode with :func:`load`. Each entry says
how and why it departs from the paper's recipe: these runs are sized for a 2-core CPU.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import pandas as pd
import torch

from . import config, datasets, fitting, runs, sweep_runs
from .. import data, models, recipes, sweep, training

DATA = "FashionMNIST"
VAL_SIZE = 5000


STATES = ("finished", "interrupted", "missing", "disagrees", "in use", "damaged")


@dataclass(frozen=True)
class Status:
    """What a reference run's folder holds: ``state`` is one of :data:`STATES`; ``detail`` says
    what disagrees with the list, which process trains it, what is damaged (with the remedy),
    or how much of an interrupted sweep is left."""
    state: str
    detail: str = ""

    def __post_init__(self):
        if self.state not in STATES:
            raise ValueError(f"{self.state!r} is not a status; valid: {', '.join(STATES)}")

    def __str__(self) -> str:
        return f"{self.state}: {self.detail}" if self.detail else self.state


def _reporting_damage(status):
    """A status method that says 'damaged: <what and the remedy>' when the run's folder holds
    a file it cannot read, so that one damaged folder never hides or stops the others."""
    @functools.wraps(status)
    def checked(self) -> Status:
        try:
            return status(self)
        except (runs.CheckpointError, OSError, ValueError) as error:
            return Status("damaged", str(error))
    return checked


@dataclass(frozen=True)
class Reference:
    """One reference run: trained into ``saved_models/<name>/``."""
    name: str
    notebook: str
    model: str
    recipe: str
    epochs: int
    departure: str                   # how and why it departs from the paper's recipe
    hparams: dict = field(default_factory=dict)
    recipe_changes: dict = field(default_factory=dict)
    seed: int = 0
    train_images: int | None = None  # a training subset; None: all 55,000
    augment: str | None = "crop-flip"

    def data(self) -> data.ImageDataModule:
        """The real data as this run sees it, whatever ``COURSE_MODE`` says (the split is
        seeded by the run's seed, as ``scripts/train.py`` does)."""
        subset = None if self.train_images is None else (self.train_images, VAL_SIZE, 10_000)
        return data.ImageDataModule(DATA, val_size=VAL_SIZE, seed=self.seed,
                                    augment=self.augment, subset=subset, smoke=config.is_smoke())

    def build(self):
        """The untrained model, seeded as for training."""
        training.seed(self.seed)
        return models.create(self.model, **self._hparams())

    def model_definition(self) -> dict:
        """What the run records of its model (:func:`helpers.models.definition`), without
        building it."""
        return models.definition_of(self.model, **self._hparams())

    def _hparams(self) -> dict:
        return {"num_classes": 10, "in_channels": 1, **self.hparams}

    def training_recipe(self) -> recipes.Recipe:
        return recipes.get_recipe(self.recipe, **self.recipe_changes)

    @property
    def folder(self):
        return config.saved_models_dir() / self.name

    def disagreements(self) -> list[str]:
        """How the saved run differs from this entry (model, data, recipe, epochs, seed); []
        when it agrees or is not there."""
        if runs.saved_definition(self.folder) is None:
            return []
        wanted = runs.definition(self.model_definition(), self.data(), self.training_recipe(),
                                 self.epochs, self.seed, precision="")
        return runs.mismatch(self.folder, wanted, ("model", "data", "recipe", "epochs", "seed"))

    @_reporting_damage
    def status(self) -> Status:
        """Finished, interrupted, missing, disagreeing with the list, in use by another process
        that trains it, or damaged (naming what cannot be read)."""
        lines = self.disagreements()
        if lines:
            return Status("disagrees", "; ".join(lines))
        holder = runs.in_use(self.folder)
        if holder:
            return Status("in use", holder)
        if runs.is_complete(self.folder):
            info, _ = runs.read_record(self.folder)  # a damaged record or weights say so here
            runs.check_checksum(self.folder, info, runs.WEIGHTS)
            return Status("finished")
        return Status("interrupted" if (self.folder / runs.DEFINITION).exists() else "missing")

    def estimate_seconds(self) -> float:
        """Training time left on this machine: a few timed steps, times the images of the
        epochs still to train, plus what they evaluate (see :func:`fitting.estimate_seconds`)."""
        module = self.data()
        module.setup()
        return fitting.estimate_seconds(self.build(), module, self.training_recipe(),
                                         self.epochs - runs.epochs_done(self.folder),
                                         runs.run_precision(self.folder))

    def train(self) -> runs.Run:
        """Train (or resume, or load if finished) this run into ``saved_models/``."""
        return training.fit(self.build(), self.data(), self.training_recipe(), name=self.name,
                            epochs=self.epochs, seed=self.seed, overwrite=False,
                            directory=config.saved_models_dir(), note=self.departure)

    def load(self) -> runs.Run:
        """The finished run, for a notebook (an error naming the file if it is not there)."""
        return runs.load(self.folder, self.build())

    def test_predictions(self) -> tuple:
        """(test images, labels, probabilities, class names) of the finished run: its recorded
        test-set probabilities, with the real test images they were computed on, for a
        predictions gallery or a confusion matrix without evaluating anything."""
        info, history = runs.read_record(self.folder)  # the record, not the model: no weights
        recorded = runs.Run(self.name, None, history, info, self.folder).test_probabilities()
        if recorded is None:
            raise runs.CheckpointError(f"{self.folder} holds no {runs.PROBABILITIES}: run "
                                       f"`make reference ONLY={self.name}` to add it.")
        probabilities, labels = recorded
        module = self.data()
        module.setup()
        if module.test.is_stand_in or not torch.equal(module.test.labels, labels):
            raise datasets.DatasetNotFoundError(
                f"the real {DATA} test set, which {self.name} was evaluated on, is not here "
                f"(found: {module.test.source}). Install it with `apt-get install "
                f"dataset-fashion-mnist`, or run once online so that torchvision downloads it.")
        return module.test.images, labels, probabilities, module.classes


@dataclass(frozen=True)
class ReferenceSweep:
    """The feature-amount sweep of notebook 05, scaled down: ``variants`` ('representatives':
    VGG-D and one variant per location; 'extremes': VGG-D and the most early- and late-heavy
    of them, for more seeds) trained into ``saved_models/sweeps/<name>/``."""
    name: str
    notebook: str
    settings: sweep.SweepSettings
    variants: str
    departure: str

    @property
    def folder(self):
        return config.saved_models_dir() / "sweeps" / self.name

    def chosen(self) -> list[sweep.Variant]:
        chosen = sweep.representatives(sweep.skew_normal_variants(16))
        if self.variants == "extremes":
            chosen = [chosen[0], chosen[-1]]
        return [sweep.vgg_d(), *chosen]

    @_reporting_damage
    def status(self) -> Status:
        lines = runs.mismatch(self.folder, sweep_runs.settings_record(self.settings),
                              record=sweep_runs.SWEEP_RECORD)
        if lines:
            return Status("disagrees", "; ".join(lines))
        holder = runs.in_use(self.folder)
        if holder:
            return Status("in use", holder)
        done = set(sweep.results(self.folder).get("variant", []))
        todo = [v for v in self.chosen() if v.index not in done]
        if not todo:
            return Status("finished")
        return Status("interrupted", f"{len(todo)} variants to train") if done else Status(
            "missing")

    def estimate_seconds(self) -> float:
        module = self.settings.data_module(smoke=config.is_smoke())
        module.setup()
        done = set(sweep.results(self.folder).get("variant", []))
        recipe = recipes.get_recipe(self.settings.recipe)
        epochs = recipes.planned_epochs(recipe, self.settings.epochs,
                                         smoke=config.is_smoke())
        to_train = (sweep.scaled(variant, self.settings.width_scale) for variant in self.chosen()
                    if variant.index not in done)
        return sum(fitting.estimate_seconds(  # an interrupted variant resumes: its epochs left
            models.create("vgg", widths=variant.widths, num_classes=10), module, recipe,
            epochs - runs.epochs_done(self.folder / variant.name),
            runs.run_precision(self.folder / variant.name))
            for variant in to_train)

    def train(self) -> pd.DataFrame:
        return sweep.run_sweep(self.chosen(), self.settings, self.folder)

    def load(self) -> pd.DataFrame:
        """The results table of the sweep: one row per variant trained so far."""
        return sweep.results(self.folder)


def _toy(model: str, recipe: str, seed: int, epochs: int, name: str, departure: str):
    return Reference(name, "04", model, recipe, epochs, departure, seed=seed,
                     augment="rotate-crop")


_TOY_PAPER = ("the checkered-CNN demo's recipe (SGD with Nesterov momentum, lr / 10 at 50 % and "
              "75 %, batch 16) shortened from 100 to 10 epochs for a 2-core CPU")
_TOY_COURSE = ("the course's sgd-cosine recipe shortened to 10 of its 30 epochs (same warm-up "
               "and cosine shape), for a 2-core CPU")
_SWEEP_SETTINGS = dict(data=DATA, recipe="mundt-sgdr", epochs=10,
                       subset=(5_000, 2_000, 10_000), val_size=2_000, width_scale=0.125)
_SWEEP = ("a scaled replication: every width an eighth of the original's (656 features instead "
          "of VGG-D's 5,248), 5,000 training images, only the first SGDR cycle (10 of 150 "
          "epochs), Fashion-MNIST at 32x32 instead of CIFAR-10: sized for a 2-core CPU")

RUNS: list[Reference | ReferenceSweep] = [
    *[Reference(f"allcnn-c64-{kind}-fashionmnist", "01", "allcnn", "allcnn-seed", 10,
                "the seed's recipe (SGD, lr halved at 20/40/60/80 % of the run, batch 64) "
                "shortened from 100 to 10 epochs on 20,000 training images, on Fashion-MNIST "
                "instead of CIFAR-100: CIFAR cannot be installed here, and the full recipe takes "
                "days on a 2-core CPU",
                hparams={"c": 64, "residual": kind == "residual"}, train_images=20_000)
      for kind in ("plain", "residual")],
    *[Reference(f"{name}-fashionmnist-densenet-fast", "02", name, "densenet-fast", 10,
                "the course's fast recipe (cosine, warm-up, label smoothing) shortened from 60 "
                "to 10 epochs on 10,000 training images, instead of the paper's 300 epochs on "
                "CIFAR-10: a DenseNet trains at 20-90 images/s on a 2-core CPU",
                train_images=10_000)
      for name in ("densenet-40-k12", "densenet-bc-100-k12")],
    *[Reference(f"tutorial5-{name}-fashionmnist", "03", name, recipe, 10,
                f"Tutorial 5's recipe for this family ({recipe}: the same optimizer, lr / 10 at "
                f"100/180 and 150/180 of the run) shortened from 180 to 10 epochs on 20,000 "
                f"training images, with crop and flip instead of the resized crop, on "
                f"Fashion-MNIST instead of CIFAR-10: sized for a 2-core CPU",
                train_images=20_000)
      for name, recipe in (("googlenet", "tutorial5-adamw"), ("resnet", "tutorial5-sgd"),
                           ("preact-resnet", "tutorial5-sgd"),
                           ("densenet", "tutorial5-adamw"))],
    *[_toy(model, "ccnn-toy-paper", 0, 10, f"{model}-fashionmnist-s0", _TOY_PAPER)
      for model in ("cnn-toy", "ccnn-toy")],
    *[_toy(model, "sgd-cosine", seed, 10, f"{model}-fashionmnist-sgd-cosine-s{seed}", _TOY_COURSE)
      for model in ("cnn-toy", "ccnn-toy", "cnn-toy-checkered") for seed in (0, 1, 2)],
    ReferenceSweep("fashionmnist-eighth-sgdr10", "05", sweep.SweepSettings(**_SWEEP_SETTINGS),
                   "representatives", _SWEEP),
    *[ReferenceSweep(f"fashionmnist-eighth-sgdr10-s{seed}", "05",
                     sweep.SweepSettings(**_SWEEP_SETTINGS, seed=seed), "extremes",
                     _SWEEP + f"; seed {seed} of VGG-D and the two extreme profiles, for the noise")
      for seed in (1, 2)],
]


def get(name: str) -> Reference | ReferenceSweep:
    """The manifest entry ``name``; an unknown name lists the valid ones."""
    for entry in RUNS:
        if entry.name == name:
            return entry
    raise ValueError(f"no reference run {name!r}; valid: {', '.join(e.name for e in RUNS)}")


def load(name: str) -> runs.Run:
    """Reference run ``name`` as a notebook shows it: its best weights, history and record."""
    return get(name).load()


def finished(notebook: str) -> dict[str, runs.Run]:
    """Notebook ``notebook``'s finished reference runs (not sweeps), loaded, by name, in the
    list's order. Each one that is not there (or disagrees with the list) is left out with one
    line that says so and how to train it."""
    return _finished(notebook, Reference)


def finished_sweeps(notebook: str) -> dict[str, pd.DataFrame]:
    """Notebook ``notebook``'s finished reference sweeps, as result tables, by name; as
    :func:`finished` for those that are not."""
    return _finished(notebook, ReferenceSweep)


def _finished(notebook: str, kind: type) -> dict:
    found = {}
    for entry in RUNS:
        if entry.notebook != notebook or not isinstance(entry, kind):
            continue
        status = entry.status()
        what = f"Reference {'sweep' if kind is ReferenceSweep else 'run'} {entry.name}"
        if status.state == "finished":
            try:
                found[entry.name] = entry.load()
            except (runs.CheckpointError, OSError, ValueError) as error:
                print(f"{what} is damaged ({error}): not shown.")
        elif status.state == "in use":
            print(f"{what} is being trained now ({status.detail}): shown once it has finished.")
        else:
            state = (f"disagrees with the list ({status.detail})"
                     if status.state == "disagrees" else f"is {status}")
            print(f"{what} {state}: not shown. Train it with "
                  f"`make reference ONLY={entry.name}`.")
    return found


README_MARKERS = ("<!-- reference results: written by `python scripts/reference.py --table` -->",
                  "<!-- end of reference results -->")  # where README.md holds that table


def results_markdown() -> str:
    """The README's table of reference results, written from the run records (finished runs
    and sweeps), and a line naming the runs of the list that are not trained yet."""
    lines = ["| run | notebook | model | parameters | data (Fashion-MNIST images) | recipe | "
             "test accuracy | wall time | hardware, precision | date |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    missing = []
    for entry in RUNS:
        if entry.status().state != "finished":
            missing.append(entry.name)
        elif isinstance(entry, Reference):
            info, _ = runs.read_record(entry.folder)
            images = info["images"]
            lines.append(
                f"| `{entry.name}` | {entry.notebook} | {entry.model} | {info['parameters']:,} | "
                f"{images['train']:,} train / {images['val']:,} val / {images['test']:,} test | "
                f"`{entry.recipe}`, {entry.epochs} epochs | {info['test_acc']:.2%} | "
                f"{_wall_time(info)} | "
                f"{info['hardware']}, {info['precision']} | {info['date'][:10]} |")
        else:
            lines.append(_sweep_line(entry))
    if missing:
        lines.append(f"\nNot trained yet ({len(missing)} of {len(RUNS)}): "
                     f"{', '.join(f'`{name}`' for name in missing)}.")
    return "\n".join(lines)


def _wall_time(info: dict) -> str:
    """A run's wall time, or for the oldest runs, which did not record it, their training
    time (every epoch's steps and evaluation) marked as such."""
    minutes = runs.wall_minutes(info)
    if minutes is None:
        return f"{info['train_seconds'] / 60:.0f} min of training (wall time not recorded)"
    return f"{minutes:.0f} min"


def _sweep_line(entry: ReferenceSweep) -> str:
    table = entry.load()
    vgg_d = table[table["xi"].isna()].iloc[0]
    others = sweep.trained(table[table["xi"].notna()])
    best = others.loc[others["test_acc"].idxmax()]
    settings = entry.settings
    train, val, test = settings.subset
    images = f"{train:,} train / {val:,} val / {test:,} test"
    seconds = table["train_seconds"].fillna(  # variants that failed record wall_seconds only
        table["wall_seconds"] if "wall_seconds" in table else 0).sum()
    return (f"| `{entry.name}` (sweep) | {entry.notebook} | VGG-D and {len(others)} profiles, "
            f"widths x {settings.width_scale:g} | {int(table['parameters'].min()):,} to "
            f"{int(table['parameters'].max()):,} | {images}, 32x32 | `{settings.recipe}`, "
            f"{settings.epochs} epochs | VGG-D {vgg_d['test_acc']:.2%}; best profile (xi = "
            f"{best['xi']:g}) {best['test_acc']:.2%} | {seconds / 60:.0f} min | "
            f"{' / '.join(sorted(set(table['hardware']), reverse=True))}, "
            f"{', '.join(sorted(set(table['precision'].dropna())))} | "
            f"{max(table['date'].dropna())[:10]} |")
