"""The layer-wise feature-amount family of Mundt et al. ("Rethinking Layer-wise Feature Amounts
in Convolutional Neural Network Architectures", NeurIPS 2018 CRACT workshop, arXiv 1812.05836).

A VGG's budget of features (the sum of its layer widths, the two hidden fully connected layers
included: 5,248 for VGG-D) is redistributed over its layers along a skew-normal curve with
location xi (in layers), scale omega and shape alpha. Every (xi, omega, alpha) of a fixed grid
whose curve keeps more than 95 % of its mass inside the network and gives every layer at least
2 features is a variant: 193 for VGG-D.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from tqdm import tqdm

from . import (_arguments, _ray_cleanup, config, files, measure, memory_safe, models, recipes,
               runs, training)
from .data import AUGMENTATIONS, ImageDataModule
from .datasets import info as dataset_info
from .models import vgg

VALID_DEPTHS = (10, 13, 16, 19)
XI_STEP = 1.0
OMEGAS = np.arange(0.0, 5.5 + 1e-9, 0.5)       # the scale grid: 0, 0.5, ..., 5.5
ALPHAS = np.arange(-40.0, 40.0 + 1e-9, 4.0)    # the shape grid: -40, -36, ..., 40
MIN_AREA = 0.95                                # 1 - eps: mass that must fall inside the layers
MIN_WIDTH = 2
STEP = 0.01                                    # the integration grid, in layers


@dataclass(frozen=True)
class Variant:
    """One member of the family: its place in the ordered list, its curve and its widths
    (the convolutions', then the two hidden layers')."""
    index: int
    xi: float
    omega: float
    alpha: float
    widths: tuple

    @property
    def name(self) -> str:
        return "vgg-d" if self.index < 0 else f"variant-{self.index:03d}"

    @property
    def macs(self) -> int:
        """Multiply-accumulates per 32x32 image."""
        return vgg.macs(self.widths)

    @property
    def parameters(self) -> int:
        """Learnable parameters with 10 classes."""
        return vgg.parameter_count(self.widths)


def reference_widths(depth: int) -> list[int]:
    """The VGG widths whose sum is the budget of a depth: 2, 2, L, L, L convolutions with
    64, 128, 256, 512, 512 features (L = (depth - 7) / 3), then two hidden layers of 512."""
    if isinstance(depth, bool) or not isinstance(depth, int):
        valid = ", ".join(map(str, VALID_DEPTHS))
        raise TypeError(f"depth must be a whole number, one of {valid}; got {depth!r} "
                        f"({type(depth).__name__})")
    if depth not in VALID_DEPTHS:
        raise ValueError(f"depth {depth} is not built by the sweep; valid depths: "
                         f"{', '.join(map(str, VALID_DEPTHS))}")
    per_block = (2, 2, *[(depth - 7) // 3] * 3)
    convs = [w for w, n in zip((64, 128, 256, 512, 512), per_block) for _ in range(n)]
    return convs + [512, 512]


def skew_normal_pdf(x: np.ndarray, xi: float, omega: float, alpha: float) -> np.ndarray:
    """The skew-normal density 2/omega * phi(z) * Phi(alpha z), z = (x - xi) / omega."""
    z = (x - xi) / omega
    phi = np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    cdf = 0.5 * (1 + torch.special.erf(torch.from_numpy(alpha * z / math.sqrt(2))).numpy())
    return 2.0 / omega * phi * cdf


def layer_fractions(layers: int, xi: float, omega: float, alpha: float) -> np.ndarray:
    """The share of the budget for each layer: the density integrated (trapezoid rule, step
    0.01) over the 100 grid points x = k, k + 0.01, ..., k + 0.99 of layer k."""
    x = np.arange(layers * 100) * STEP
    pdf = skew_normal_pdf(x, xi, omega, alpha).reshape(layers, 100)
    return np.trapezoid(pdf, dx=STEP, axis=1)


@dataclass(frozen=True)
class Curve:
    """One skew-normal curve over a depth's layers: the share of its area that falls inside
    the layers, the widths it gives the budget, and why it is not a variant (None: it is)."""
    area: float
    widths: tuple[int, ...]
    rejected: str | None


def curve(depth: int, xi: float, omega: float, alpha: float) -> Curve:
    """The widths of the curve (xi, omega, alpha) over the layers of ``depth``, each its share
    of the budget rounded up, and the original's two tests: at least ``MIN_AREA`` of the
    curve's area inside the layers, and no layer narrower than ``MIN_WIDTH``."""
    reference = reference_widths(depth)
    fractions = layer_fractions(len(reference), xi, omega, alpha)
    widths = tuple(math.ceil(f * sum(reference)) for f in fractions)
    area = float(fractions.sum())
    rejected = (f"only {area:.3f} of its area inside the layers (must exceed {MIN_AREA})"
                if area <= MIN_AREA else
                f"a layer narrower than {MIN_WIDTH}" if min(widths) < MIN_WIDTH else None)
    return Curve(area, widths, rejected)


def skew_normal_variants(depth: int = 16) -> list[Variant]:
    """The valid variants of a depth (see :func:`curve`), ordered as the original (xi outer,
    then omega, then alpha): 153, 194, 193 and 139 for depths 10, 13, 16 and 19. Computed once
    per process (4,032 curves take seconds); each call returns a list of its own."""
    reference_widths(depth)  # a wrong depth gets its error before the cache sees it
    return list(_variants(depth))


@functools.lru_cache(maxsize=None)
def _variants(depth: int) -> tuple[Variant, ...]:
    layers = len(reference_widths(depth))
    variants = []
    for xi in np.arange(0.0, layers + 1e-9, XI_STEP):
        for omega in OMEGAS[OMEGAS > 0]:
            for alpha in ALPHAS:
                found = curve(depth, xi, omega, alpha)
                if found.rejected is None:
                    variants.append(Variant(len(variants), float(xi), float(omega),
                                            float(alpha), found.widths))
    return tuple(variants)


# --- running a sweep -------------------------------------------------------------------------

class AbandonUnlessLearning(pl.Callback):
    """The original's early abandonment: after ``after_epochs`` epochs (the end of the first
    SGDR cycle), stop a variant whose training accuracy is below twice chance.

    The decision is part of the run: kept in its checkpoints, so that a resumed abandoned
    variant stops before training another epoch, and readable from its history
    (:meth:`abandoned_in`), so that a kill at any moment cannot turn it into a finished one."""

    TIMES_CHANCE = 2  # the training accuracy a variant must reach, in multiples of chance

    def __init__(self, num_classes: int, after_epochs: int = 10):
        self.threshold = self.TIMES_CHANCE / num_classes
        self.after_epochs = after_epochs
        self.abandoned = False

    def on_train_start(self, trainer, module):
        if self.abandoned:  # restored from the checkpoint of the epoch that abandoned it
            trainer.should_stop = True

    def on_train_epoch_end(self, trainer, module):
        accuracy = float(trainer.callback_metrics.get("train_acc", 1.0))
        if trainer.current_epoch + 1 == self.after_epochs and accuracy < self.threshold:
            self.abandoned = trainer.should_stop = True

    def abandoned_in(self, history: pd.DataFrame) -> bool:
        """Whether the run with this per-epoch ``history`` was abandoned: it ended at
        ``after_epochs`` with a training accuracy below the threshold."""
        return (len(history) == self.after_epochs
                and float(history["train_acc"].iloc[-1]) < self.threshold)

    def state_dict(self) -> dict:
        return {"abandoned": self.abandoned}

    def load_state_dict(self, state: dict) -> None:
        self.abandoned = bool(state.get("abandoned", False))


@dataclass(frozen=True)
class SweepSettings:
    """What every variant of a sweep is trained on and with (picklable, for remote workers).
    ``epochs`` shortens the recipe (None: the recipe's); ``augment`` None follows the original,
    which augmented only CIFAR; ``width_scale`` multiplies every width of every variant (a
    scaled replication that keeps the profiles, for a smaller budget)."""
    data: str
    recipe: str
    epochs: int | None = None
    seed: int = 0
    val_size: int = 5000
    augment: str | None = None
    abandon_after: int = 10
    subset: tuple | str | None = "auto"
    width_scale: float = 1.0

    def __post_init__(self):  # bad settings fail here, before any training starts
        _arguments.check("SweepSettings", SweepSettings, dataclasses.asdict(self))
        dataset_info(self.data)
        recipes.get_recipe(self.recipe)
        if self.epochs is not None:
            recipes.positive_int(self.epochs, "SweepSettings epochs")
        if self.augment is not None and self.augment not in AUGMENTATIONS:
            raise ValueError(f"SweepSettings augment={self.augment!r} is not an augmentation; "
                             f"valid: {', '.join(AUGMENTATIONS)}, or None")
        if not 0 < self.width_scale <= 1:
            raise ValueError(f"SweepSettings width_scale={self.width_scale!r} is not valid: a "
                             f"factor in (0, 1] that every width is multiplied by")
        self.data_module()  # the data module checks val_size and subset
        batch = recipes.get_recipe(self.recipe).batch_size
        if isinstance(self.subset, (tuple, list)) and self.subset[0] < batch:
            raise ValueError(f"SweepSettings subset={tuple(self.subset)} gives {self.subset[0]} "
                             f"training images, fewer than one batch of recipe "
                             f"{self.recipe!r} ({batch}); give at least {batch}")

    def data_module(self) -> ImageDataModule:
        """The data as the sweep's VGGs see it: 32x32 with 3 channels."""
        return ImageDataModule(self.data, val_size=self.val_size, seed=self.seed,
                               augment=self.augment, subset=self.subset, test_every_epoch=True,
                               size=32, channels=3)


def train_variant(variant: Variant, settings: SweepSettings, directory: str | Path,
                  callbacks: tuple = ()) -> dict:
    """Train one variant (resuming its run if it was interrupted) and return its results row,
    also written to ``<directory>/rows/<variant>.json``. Runs in the driver or in a worker.
    ``callbacks``: more Lightning callbacks for its training (the sweep's progress bar)."""
    directory = Path(directory)
    data = settings.data_module()
    data.setup()
    training.seed(settings.seed)
    variant = scaled(variant, settings.width_scale)
    model = models.create("vgg", widths=variant.widths, num_classes=data.num_classes)
    abandon = AbandonUnlessLearning(data.num_classes, settings.abandon_after)
    row = {"variant": variant.index, "xi": variant.xi, "omega": variant.omega,
           "alpha": variant.alpha, "widths": json.dumps(list(variant.widths)),
           "parameters": measure.count_parameters(model), "macs": variant.macs,
           "data": settings.data, "recipe": settings.recipe, "seed": settings.seed,
           "epochs_planned": recipes.planned_epochs(recipes.get_recipe(settings.recipe),
                                                     settings.epochs)}
    start = time.perf_counter()
    try:
        run = training.fit(model, data, settings.recipe, name=variant.name,
                           epochs=settings.epochs, seed=settings.seed, overwrite=False,
                           directory=directory, memory_safe=True,
                           callbacks=[abandon, *callbacks], enable_progress_bar=False)
    except (memory_safe.DoesNotFit, training.TrainingDiverged) as error:
        status = "does not fit" if isinstance(error, memory_safe.DoesNotFit) else "diverged"
        row.update(status=status, note=str(error), hardware=config.hardware(),
                   wall_seconds=round(time.perf_counter() - start, 1))
    else:
        history, info = run.history, run.info
        row.update(
            status="abandoned" if abandon.abandoned_in(history) else "done",
            epochs=len(history),
            micro_batch=info["micro_batch"], best_epoch=info["best_epoch"],
            best_val_acc=info["best_val_acc"], test_acc=info["test_acc"],
            best_test_acc=float(history["test_acc"].max()),  # the original's choice: on test
            last_test_acc=float(history["test_acc"].iloc[-1]),
            last_train_acc=float(history["train_acc"].iloc[-1]),
            train_acc=json.dumps(history["train_acc"].round(5).tolist()),
            val_acc=json.dumps(history["val_acc"].round(5).tolist()),
            test_acc_per_epoch=json.dumps(history["test_acc"].round(5).tolist()),
            train_seconds=info["train_seconds"], hardware=info["hardware"],
            precision=info["precision"], date=info["date"], smoke_run=info["smoke_run"])
    files.write_text(directory / "rows" / f"{variant.name}.json", json.dumps(row, indent=1))
    return row


def results(directory: str | Path) -> pd.DataFrame:
    """The results table of a sweep: one row per finished variant, ordered by variant."""
    rows = [json.loads(p.read_text()) for p in sorted(Path(directory).glob("rows/*.json"))]
    table = pd.DataFrame(rows)
    return table.sort_values("variant").reset_index(drop=True) if rows else table


def trained(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of a results table that trained to a test accuracy: 'done', and 'abandoned'
    (below twice chance after the first SGDR cycle: the original stopped such a variant there,
    so its accuracy is the first cycle's). Left out: 'does not fit' and 'diverged'."""
    return table[table["status"].isin(["done", "abandoned"])]


def run_sweep(variants: list[Variant], settings: SweepSettings, directory: str | Path,
              workers: int | None = None) -> pd.DataFrame:
    """Train ``variants`` (any subset of the family, VGG-D's widths as a Variant too) and
    return the results table, also kept in ``<directory>/results.csv``.

    Resumable: variants with a results row are skipped, and an interrupted one continues from
    its last epoch's checkpoint, so a sweep killed at any moment is finished by running the
    same call again. The folder is bound to ``settings`` (``sweep.json``): running other settings
    into it is an error naming the differences, and one process at a time runs a sweep in it.
    ``workers`` > 0 spreads the variants over a Ray cluster (a local one, or the one
    ``RAY_ADDRESS`` names), one variant per worker at a time; ``None`` trains them here, one
    after the other."""
    _check_sweep_arguments(variants, settings, directory, workers)
    directory = Path(directory)
    runs.check_name(directory.name, "sweep folder name")
    with runs.lock(directory):
        runs.remove_stray_parts(directory)
        _bind_to_settings(directory, settings)
        todo = _not_yet_trained(variants, settings, directory)
        done = len(variants) - len(todo)
        if todo:
            print(f"sweep {directory.name}: {done} variant(s) done, {len(todo)} to train")
            if workers:
                _run_with_ray(todo, settings, directory, workers)
            else:
                _run_here(todo, settings, directory)
        return _write_table(directory)


def _check_sweep_arguments(variants, settings, directory, workers) -> None:
    if not isinstance(variants, (list, tuple)) or not all(isinstance(v, Variant)
                                                         for v in variants):
        raise TypeError(f"run_sweep: variants must be a list of Variant (from "
                        f"skew_normal_variants, representatives or vgg_d), not {variants!r}"[:300])
    indices = [v.index for v in variants]
    if twice := sorted({i for i in indices if indices.count(i) > 1}):
        raise ValueError(f"run_sweep: variants holds index {twice[0]} more than once; each "
                         f"variant's results are kept under its index, so indices must differ")
    if not isinstance(settings, SweepSettings):
        raise TypeError(f"run_sweep: settings must be a SweepSettings, not {settings!r}")
    if not isinstance(directory, (str, os.PathLike)):
        raise TypeError(f"run_sweep: directory must be a path, not {directory!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                or workers < 1):
        raise ValueError(f"run_sweep: workers={workers!r} is not valid; it must be None (train "
                         f"here, one variant after the other) or a whole number of at least 1 "
                         f"(Ray workers)")


def _not_yet_trained(variants: list[Variant], settings: SweepSettings,
                     directory: Path) -> list[Variant]:
    """The variants without a results row in ``directory``, after checking that every row
    there of a variant asked for has its widths: a row is bound to a variant's widths, not
    only to its index (variant 77 of depth 10 is not variant 77 of depth 16)."""
    rows = {row["variant"]: row for row in results(directory).to_dict("records")}
    todo = []
    for variant in variants:
        row = rows.get(variant.index)
        if row is None:
            todo.append(variant)
            continue
        widths = list(scaled(variant, settings.width_scale).widths)
        if json.loads(row["widths"]) != widths:
            raise runs.DefinitionMismatch(
                f"{directory} holds a results row for {variant.name} trained with widths "
                f"{json.loads(row['widths'])}, but the {variant.name} asked for has widths "
                f"{widths}. Variants of another depth or family go into another folder.")
    return todo


class _CountEpochs(pl.Callback):
    """Moves the sweep's progress bar on by one at the end of every training epoch."""

    def __init__(self, bar):
        self.bar = bar

    def on_train_epoch_end(self, trainer, module):
        self.bar.update(1)


def _run_here(variants: list[Variant], settings: SweepSettings, directory: Path) -> None:
    """Train ``variants`` one after the other in this process, under one progress bar counted
    in epochs (variants differ in cost, so its time left is a rough guide) that names the
    variant in training and the result of the last one. The epochs an interrupted variant kept
    count as done from the start."""
    planned = recipes.planned_epochs(recipes.get_recipe(settings.recipe), settings.epochs)
    kept = [runs.epochs_done(directory / variant.name) for variant in variants]  # interrupted
    with tqdm(total=planned * len(variants), initial=sum(kept), unit="epoch",
              desc=f"sweep {directory.name}", dynamic_ncols=True) as bar:
        last = ""
        for done, variant in enumerate(variants, start=1):
            bar.set_postfix_str(f"{last}training {variant.name}")
            row = train_variant(variant, settings, directory, callbacks=(_CountEpochs(bar),))
            bar.update(done * planned + sum(kept[done:]) - bar.n)  # an abandoned one stops early
            result = f"{row['test_acc']:.1%}" if row.get("test_acc") is not None else row["status"]
            last = f"{variant.name}: {result}; "
            bar.set_postfix_str(last.removesuffix("; "))
            _write_table(directory)


SWEEP_RECORD = "sweep.json"


def settings_differences(directory: str | Path, settings: SweepSettings) -> list[str]:
    """How ``settings`` differs from the one the sweep in ``directory`` was run with (its
    ``sweep.json``): one line per field; [] when they agree or the folder has no record."""
    path = Path(directory) / SWEEP_RECORD
    if not path.exists():
        return []
    try:
        saved = json.loads(path.read_text())
    except ValueError as error:
        raise runs.CheckpointError(f"{path} is unreadable ({error}); restore it, or run the "
                                   f"sweep into another folder.") from error
    return runs.differences(saved, json.loads(json.dumps(dataclasses.asdict(settings))))


def _bind_to_settings(directory: Path, settings: SweepSettings) -> None:
    """Record ``settings`` in a new sweep folder, or check that it is the folder's."""
    path = directory / SWEEP_RECORD
    if not path.exists():
        if any(directory.glob("rows/*.json")):
            raise runs.DefinitionMismatch(
                f"{directory} holds sweep results but no {SWEEP_RECORD} saying what they were "
                f"trained with; run the sweep into another folder.")
        files.write_text(path, json.dumps(dataclasses.asdict(settings), indent=1))
        return
    lines = settings_differences(directory, settings)
    if lines and not _keeps_anything(directory):  # a sweep stopped before its first epoch
        files.write_text(path, json.dumps(dataclasses.asdict(settings), indent=1))
    elif lines:
        raise runs.DefinitionMismatch(
            f"{directory} holds a sweep with another SweepSettings:\n  " + "\n  ".join(lines) +
            "\nRun this sweep into another folder (or delete that one to start it afresh).")


def _keeps_anything(directory: Path) -> bool:
    """Whether a sweep folder holds a results row or a variant with a trained epoch."""
    return any(directory.glob("rows/*.json")) or any(
        (folder / runs.LAST).exists() or runs.is_complete(folder)
        for folder in directory.iterdir() if folder.is_dir())


def _write_table(directory: Path) -> pd.DataFrame:
    table = results(directory)
    files.write_text(directory / "results.csv", table.to_csv(index=False))
    return table


def _run_with_ray(variants: list[Variant], settings: SweepSettings, directory: Path, workers: int):
    import ray
    if not ray.is_initialized():
        environment = {key: value for key, value in os.environ.items()
                       if key.startswith("COURSE_") or key in ("DATA_DIR", "SAVED_MODELS_DIR")}
        cluster = os.environ.get("RAY_ADDRESS")
        ray.init(num_cpus=None if cluster else workers, include_dashboard=False,
                 log_to_driver=False, runtime_env={"env_vars": environment})
        if not cluster:  # a local cluster of this process's own: it must not outlive a kill
            _ray_cleanup.start_for_this_process()
    gpus = 1 if torch.cuda.is_available() else 0
    task = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=1)(train_variant)
    pending = [task.remote(variant, settings, str(directory)) for variant in variants]
    while pending:
        finished, pending = ray.wait(pending, num_returns=1)
        ray.get(finished)  # re-raises a worker's error
        _write_table(directory)


def scaled(variant: Variant, factor: float) -> Variant:
    """``variant`` with every width multiplied by ``factor`` (rounded; at least 2): the same
    profile on a smaller budget, e.g. a quarter of VGG-D's 5,248 features is 1,312."""
    if factor == 1:
        return variant
    widths = tuple(max(MIN_WIDTH, round(width * factor)) for width in variant.widths)
    return dataclasses.replace(variant, widths=widths)


def scaled_to_macs(variant: Variant, macs: int) -> Variant:
    """``variant`` scaled (:func:`scaled`) so that its MACs come as close to ``macs`` as whole
    widths allow: the same profile at an equal compute budget."""
    low, high = 1e-3, 1e3
    for _ in range(60):  # bisection on the factor; MACs grow with it
        middle = math.sqrt(low * high)
        low, high = (middle, high) if scaled(variant, middle).macs < macs else (low, middle)
    return min((scaled(variant, low), scaled(variant, high)), key=lambda v: abs(v.macs - macs))


def representatives(variants: list[Variant]) -> list[Variant]:
    """One variant per location xi (the middle one of its group in the family's order): a
    subset that spans early-heavy to late-heavy profiles for a sweep on a budget."""
    groups: dict[float, list[Variant]] = {}
    for variant in variants:
        groups.setdefault(variant.xi, []).append(variant)
    return [group[len(group) // 2] for group in groups.values()]


def vgg_d() -> Variant:
    """VGG-D's standard widths as a variant (index -1): the sweep's baseline, which is not a
    member of the skew-normal family."""
    return Variant(-1, math.nan, math.nan, math.nan, vgg.STANDARD_WIDTHS["D"])
