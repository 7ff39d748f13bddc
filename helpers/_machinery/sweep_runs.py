"""What ``sweep.run_sweep`` does around training each variant.

One results row per variant, the folder bound to its :class:`~helpers.sweep.SweepSettings`
(``sweep.json``), resuming after a kill, the original's early abandonment, one progress bar
counted in epochs, and Ray workers that share the variants."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pytorch_lightning as pl
import torch
from tqdm import tqdm

from . import arguments, config, datasets, files, ray_cleanup as _ray_cleanup, runs
from .. import measure, memory_safe, models, recipes, sweep, training
from ..data import AUGMENTATIONS

if TYPE_CHECKING:
    from ..sweep import SweepSettings, Variant


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


def train_variant(variant: Variant, settings: SweepSettings, directory: str | Path,
                  callbacks: tuple = ()) -> dict:
    """Train one variant (resuming its run if it was interrupted) and return its results row,
    also written to ``<directory>/rows/<variant>.json``. Runs in the driver or in a worker.
    ``callbacks``: more Lightning callbacks for its training (the sweep's progress bar)."""
    directory = Path(directory)
    data = settings.data_module(smoke=config.is_smoke())
    data.setup()
    training.seed(settings.seed)
    variant = sweep.scaled(variant, settings.width_scale)
    model = models.create("vgg", widths=variant.widths, num_classes=data.num_classes)
    abandon = AbandonUnlessLearning(data.num_classes, settings.abandon_after)
    row = {"variant": variant.index, "xi": variant.xi, "omega": variant.omega,
           "alpha": variant.alpha, "widths": json.dumps(list(variant.widths)),
           "parameters": measure.count_parameters(model), "macs": variant.macs,
           "data": settings.data, "recipe": settings.recipe, "seed": settings.seed,
           "epochs_planned": recipes.planned_epochs(recipes.get_recipe(settings.recipe),
                                                     settings.epochs, smoke=config.is_smoke())}
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


def check_sweep_arguments(variants, settings, directory, workers) -> None:
    if not isinstance(variants, (list, tuple)) or not all(isinstance(v, sweep.Variant)
                                                         for v in variants):
        raise TypeError(f"run_sweep: variants must be a list of Variant (from "
                        f"skew_normal_variants, representatives or vgg_d), not {variants!r}"[:300])
    indices = [v.index for v in variants]
    if twice := sorted({i for i in indices if indices.count(i) > 1}):
        raise ValueError(f"run_sweep: variants holds index {twice[0]} more than once; each "
                         f"variant's results are kept under its index, so indices must differ")
    if not isinstance(settings, sweep.SweepSettings):
        raise TypeError(f"run_sweep: settings must be a SweepSettings, not {settings!r}")
    if not isinstance(directory, (str, os.PathLike)):
        raise TypeError(f"run_sweep: directory must be a path, not {directory!r}")
    if workers is not None and not (arguments.is_whole(workers) and workers >= 1):
        raise ValueError(f"run_sweep: workers={workers!r} is not valid; it must be None (train "
                         f"here, one variant after the other) or a whole number of at least 1 "
                         f"(Ray workers)")


def not_yet_trained(variants: list[Variant], settings: SweepSettings,
                     directory: Path) -> list[Variant]:
    """The variants without a results row in ``directory``, after checking that every row
    there of a variant asked for has its widths: a row is bound to a variant's widths, not
    only to its index (variant 77 of depth 10 is not variant 77 of depth 16)."""
    rows = {row["variant"]: row for row in sweep.results(directory).to_dict("records")}
    todo = []
    for variant in variants:
        row = rows.get(variant.index)
        if row is None:
            todo.append(variant)
            continue
        widths = list(sweep.scaled(variant, settings.width_scale).widths)
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


def run_here(variants: list[Variant], settings: SweepSettings, directory: Path) -> None:
    """Train ``variants`` one after the other in this process, under one progress bar counted
    in epochs (variants differ in cost, so its time left is a rough guide) that names the
    variant in training and the result of the last one. The epochs an interrupted variant kept
    count as done from the start."""
    planned = recipes.planned_epochs(recipes.get_recipe(settings.recipe), settings.epochs,
                                     smoke=config.is_smoke())
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
            write_table(directory)


SWEEP_RECORD = "sweep.json"


def check_settings(settings: SweepSettings) -> None:
    """Every field of a :class:`~helpers.sweep.SweepSettings` valid, or an error naming it."""
    arguments.check("SweepSettings", type(settings), dataclasses.asdict(settings))
    datasets.info(settings.data)
    recipes.get_recipe(settings.recipe)
    if settings.epochs is not None:
        arguments.whole_number(settings.epochs, "SweepSettings epochs")
    if settings.augment is not None and settings.augment not in AUGMENTATIONS:
        raise ValueError(f"SweepSettings augment={settings.augment!r} is not an augmentation; "
                         f"valid: {', '.join(AUGMENTATIONS)}, or None")
    if not 0 < settings.width_scale <= 1:
        raise ValueError(f"SweepSettings width_scale={settings.width_scale!r} is not valid: a "
                         f"factor in (0, 1] that every width is multiplied by")
    settings.data_module()  # the data module checks val_size and subset
    batch = recipes.get_recipe(settings.recipe).batch_size
    if isinstance(settings.subset, (tuple, list)) and settings.subset[0] < batch:
        raise ValueError(f"SweepSettings subset={tuple(settings.subset)} gives "
                         f"{settings.subset[0]} training images, fewer than one batch of recipe "
                         f"{settings.recipe!r} ({batch}); give at least {batch}")


def settings_record(settings: SweepSettings) -> dict:
    """``settings`` as the sweep folder's ``sweep.json`` holds them."""
    return json.loads(json.dumps(dataclasses.asdict(settings)))


def bind_to_settings(directory: Path, settings: SweepSettings) -> None:
    """Record ``settings`` in a new sweep folder, or check that it is the folder's (the one
    check of :func:`~helpers._machinery.runs.mismatch`)."""
    path = directory / SWEEP_RECORD
    if not path.exists() and any(directory.glob("rows/*.json")):
        raise runs.DefinitionMismatch(
            f"{directory} holds sweep results but no {SWEEP_RECORD} saying what they were "
            f"trained with; run the sweep into another folder.")
    wanted = settings_record(settings)
    if not path.exists() or (runs.mismatch(directory, wanted, record=SWEEP_RECORD)
                             and not _keeps_anything(directory)):  # stopped before an epoch
        files.write_text(path, json.dumps(wanted, indent=1))
    runs.check_same_run(directory, wanted, record=SWEEP_RECORD)


def _keeps_anything(directory: Path) -> bool:
    """Whether a sweep folder holds a results row or a variant with a trained epoch."""
    return any(directory.glob("rows/*.json")) or any(
        (folder / runs.LAST).exists() or runs.is_complete(folder)
        for folder in directory.iterdir() if folder.is_dir())


def run(variants: list[Variant], settings: SweepSettings, directory: str | Path,
        workers: int | None) -> pd.DataFrame:
    """``sweep.run_sweep``: in its folder, locked and bound to ``settings``, the variants that
    have no results row yet, here or on Ray workers; then the results table."""
    check_sweep_arguments(variants, settings, directory, workers)
    directory = Path(directory)
    runs.check_name(directory.name, "sweep folder name")
    with runs.lock(directory):
        runs.remove_stray_parts(directory)
        bind_to_settings(directory, settings)
        todo = not_yet_trained(variants, settings, directory)
        done = len(variants) - len(todo)
        if todo:
            print(f"sweep {directory.name}: {done} variant(s) done, {len(todo)} to train")
            if workers:
                run_with_ray(todo, settings, directory, workers)
            else:
                run_here(todo, settings, directory)
        return write_table(directory)


def write_table(directory: Path) -> pd.DataFrame:
    table = sweep.results(directory)
    files.write_text(directory / "results.csv", table.to_csv(index=False))
    return table


def run_with_ray(variants: list[Variant], settings: SweepSettings, directory: Path, workers: int):
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
        write_table(directory)
