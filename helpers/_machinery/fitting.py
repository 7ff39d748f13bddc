"""What ``training.fit`` does around the training itself.

Checks of its arguments, the run's definition, the memory layout it trains in and whether a
DenseNet trains through the course's C++ kernels, Lightning's Trainer with the callbacks that
stop a diverging run and keep the per-epoch history, signals that stop a run cleanly, and the
record a finished run leaves. None of it changes what a run computes beyond rounding."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import errno
import json
import math
import os
import signal
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import NoReturn

import pandas as pd
import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.imports import _IS_INTERACTIVE
from pytorch_lightning.utilities.exceptions import SIGTERMException
from torch import nn

from . import allocator as _allocator, arguments as _arguments, lightning as _lightning
from . import config, dense_kernels, files, runs
from .. import measure, models
from ..classifier import Classifier
from ..data import ImageDataModule
from ..recipes import RECIPES, Recipe, get_recipe, planned_epochs
from .runs import Run


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite; the run stopped and recorded no result."""


class RunInterrupted(KeyboardInterrupt):
    """Training, its final test, or an evaluation was stopped by SIGINT (Ctrl+C, a notebook's
    interrupt) or SIGTERM (a scheduler, ``kill``); every completed epoch is kept, and starting
    the same run again resumes it. ``signal_number`` says which; a script exits with 128 + it."""

    def __init__(self, message: str, signal_number: int):
        super().__init__(message)
        self.signal_number = signal_number

    def exit(self) -> NoReturn:
        """End a script as shells expect (status 128 + the signal), deaf to further SIGINT and
        SIGTERM: the run is saved and its line printed, and a second Ctrl+C while Python shuts
        down would only print a traceback from whatever it interrupted."""
        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, signal.SIG_IGN)
        sys.exit(128 + self.signal_number)


def _diverged(recipe: Recipe, epoch: int, what: str) -> TrainingDiverged:
    """The error that stops a diverging run in ``epoch`` (counted from 0), saying ``what``."""
    kept = f"the folder keeps the checkpoint of epoch {epoch}" if epoch else "no epoch completed"
    return TrainingDiverged(
        f"training diverged in epoch {epoch + 1}: {what}. The learning rate ({recipe.lr:g} in "
        f"recipe {recipe.name!r}) is most likely too high for this model. Nothing was recorded "
        f"as a result ({kept}). Lower it, e.g. get_recipe({recipe.name!r}, lr="
        f"{recipe.lr / 10:g}), and train under another name or with overwrite=True.")


class StopIfDiverged(pl.Callback):
    """Stop a run with :class:`TrainingDiverged` once its training loss is NaN or infinite, and
    at the end of each epoch, before its checkpoint is written (Lightning runs checkpointing
    last), if its validation loss or weights are no longer finite: weights can blow up while
    each step's loss still looked finite.

    The first bad step is noted on the device; it is read every step on a CPU, and every 25
    steps (and at the epoch's last) on a GPU, where each read waits for the GPU."""

    def on_train_epoch_start(self, trainer, module):
        self._first_bad_step = None

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        if self._first_bad_step is None:
            self._first_bad_step = torch.full((), -1, device=loss.device)
        bad = ~torch.isfinite(loss.detach()) & (self._first_bad_step < 0)
        self._first_bad_step = torch.where(bad, batch_idx, self._first_bad_step)
        steps = trainer.num_training_batches
        if loss.device.type == "cuda" and batch_idx % 25 and batch_idx + 1 != steps:
            return
        if (step := int(self._first_bad_step)) >= 0:
            raise _diverged(module.recipe, trainer.current_epoch,
                            f"the training loss became NaN or infinite at step {step + 1} of "
                            f"{steps}")

    def on_train_epoch_end(self, trainer, module):
        loss = trainer.callback_metrics.get("val_loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise _diverged(module.recipe, trainer.current_epoch,
                           "the validation loss became NaN or infinite")
        if not all(bool(p.isfinite().all()) for p in module.parameters()):
            raise _diverged(module.recipe, trainer.current_epoch,
                           "the weights became NaN or infinite")


class History(pl.Callback):
    """Per-epoch train/validation loss and accuracy, learning rate and time: ``seconds`` for
    the whole epoch, ``step_seconds`` for its training batches alone (data, forward, backward,
    update; no evaluation), and the hardware that trained it. Saved in the checkpoint so that
    a resumed run keeps its earlier epochs."""

    def __init__(self):
        self.rows: list[dict] = []
        self.restored = 0  # epochs trained by an earlier process (a resumed run)

    def on_train_epoch_start(self, trainer, module):
        self._start = self._steps_end = time.perf_counter()
        self._lr = trainer.optimizers[0].param_groups[0]["lr"]

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if batch_idx + 1 == trainer.num_training_batches:  # one wait for the GPU per epoch
            if module.device.type == "cuda":
                torch.cuda.synchronize(module.device)
            self._steps_end = time.perf_counter()

    def on_train_epoch_end(self, trainer, module):
        metrics = {key: float(value) for key, value in trainer.callback_metrics.items()}
        self.rows.append({"epoch": trainer.current_epoch + 1, "lr": self._lr,
                          **{key: metrics.get(key, math.nan) for key in
                             ("train_loss", "train_acc", "val_loss", "val_acc")},
                          **{key: metrics[key] for key in ("test_loss", "test_acc")
                             if key in metrics},  # when the data module tests every epoch
                          "seconds": time.perf_counter() - self._start,
                          "step_seconds": self._steps_end - self._start,
                          "hardware": config.hardware() + (
                              f", {trainer.world_size} processes" if trainer.world_size > 1
                              else "")})

    def state_dict(self):
        return {"rows": self.rows}

    def load_state_dict(self, state):
        if not self.rows:  # resuming (testing "best" later restores an older state too)
            self.restored = len(state["rows"])
        self.rows = list(state["rows"])


READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)


# The Trainer options fit passes on: where a run trains and how it is watched, never what it
# computes. Any other (limit_train_batches, accumulate_grad_batches, max_steps, gradient_clip_val,
# ...) would train something the run's definition does not say, which would later be loaded as
# the run itself. ``sync_batchnorm`` makes batch statistics span all processes, as in one.
TRAINER_OPTIONS = ("accelerator", "devices", "num_nodes", "strategy", "sync_batchnorm",
                   "callbacks", "enable_progress_bar", "profiler", "detect_anomaly",
                   "deterministic", "benchmark")


_SWITCHES = ("sync_batchnorm", "enable_progress_bar", "detect_anomaly", "benchmark")


def check_model_and_data(owner: str, model, data) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"{owner}: model must be a network (a torch.nn.Module, e.g. "
                        f"models.create('allcnn')), not {model!r}"[:300])
    if not isinstance(data, ImageDataModule):
        raise TypeError(f"{owner}: data must be an ImageDataModule (e.g. "
                        f"ImageDataModule('CIFAR10')), not {data!r}"[:300])


def check_trainer_options(options: dict) -> None:
    """Refuse Trainer options outside :data:`TRAINER_OPTIONS` or of the wrong type, options
    this machine cannot run, and strategies other than one process or DDP started by Lightning
    (whose processes re-run the script: see :func:`train`)."""
    for key in _SWITCHES + ("deterministic",):
        value = options.get(key, False)
        if not isinstance(value, bool) and not (key == "deterministic" and value == "warn"):
            raise TypeError(f"fit: {key}={value!r} is not valid; it must be True or False")
    callbacks = options.get("callbacks", [])
    if not (isinstance(callbacks, (list, tuple))
            and all(isinstance(c, pl.Callback) for c in callbacks)):
        raise TypeError(f"fit: callbacks must be a list of Lightning callbacks "
                        f"(pytorch_lightning.Callback), not {callbacks!r}"[:300])
    refused = [key for key in options if key not in TRAINER_OPTIONS]
    if refused:
        raise ValueError(
            f"fit: {', '.join(refused)} cannot be passed to the Trainer: the run's definition "
            f"(model, data, recipe, epochs, seed, precision) would not say what was trained, "
            f"and the run would later be loaded as the full one. Shorten a run with "
            f"epochs=..., ImageDataModule(subset=...) or a recipe of its own "
            f"(get_recipe(name, ...)). Trainer options fit accepts: {', '.join(TRAINER_OPTIONS)}.")
    if options.get("sync_batchnorm") and options.get("accelerator", config.device_type()) == "cpu":
        raise ValueError("fit: sync_batchnorm=True needs GPUs (torch's SyncBatchNorm does not "
                         "run on CPU processes); leave it out to train on CPU processes")
    strategy = options.get("strategy", "auto")
    popen_ddp = type(strategy).__name__ == "DDPStrategy" and strategy._start_method == "popen"
    if strategy != "auto" and _IS_INTERACTIVE:
        raise ValueError(
            f"fit: strategy={strategy!r} starts the other processes by running this program "
            f"again, which a notebook or an interactive session cannot: train the run from a "
            f"script (python scripts/train.py ... --devices N), or here in one process (leave "
            f"out strategy and devices)")
    if strategy not in ("auto", "ddp") and not popen_ddp:
        raise ValueError(
            f"fit: strategy={strategy!r} is not supported: one run trains in one process "
            f"('auto') or in several started by Lightning ('ddp', from a script: they run it "
            f"again, see the README's scale-out section). Spawned or forked processes "
            f"('ddp_spawn', 'ddp_notebook') would keep the run's history in processes that "
            f"end before it is written.")
    probe = {key: value for key, value in options.items() if key != "callbacks"}
    with _lightning.quiet():
        _lightning.trainer("32-true", **probe)  # a device this machine lacks, devices=0, ...


def is_other_process() -> bool:
    """Whether a launcher started this process as one of several that train one run, other
    than the first, which alone writes the run and should alone report it (Lightning's DDP
    launcher runs the script again with LOCAL_RANK set; torchrun sets RANK, multi-node
    launchers NODE_RANK)."""
    return any(os.environ.get(key, "0") not in ("", "0") for key in ("RANK", "LOCAL_RANK",
                                                                      "NODE_RANK"))


def requested_definition(folder: Path, model: nn.Module, data: ImageDataModule, recipe: Recipe,
                         epochs: int, seed: int, precision: str) -> dict:
    """The definition of the run :func:`~helpers.training.fit` was asked for, in the precision
    of the run already in ``folder`` where ``precision`` is "auto"."""
    return runs.definition(models.definition(model), data, recipe, epochs, seed,
                           runs.run_precision(folder, precision))


def load_finished(folder: Path, model: nn.Module, wanted: dict) -> Run | None:
    """The finished run in ``folder``, if it has one, after checking it is the one wanted."""
    runs.check_same_run(folder, wanted)
    if not runs.is_complete(folder):
        return None
    print(f"{folder.name} is finished in {folder}: loaded, not trained again "
          f"(overwrite=True trains it afresh).")
    return runs.load(folder, model)


LONG_RUN_SECONDS = 600  # fit says beforehand how long a run will take when it exceeds this


def estimate_seconds(model: nn.Module, data: ImageDataModule, recipe: Recipe,
                     epochs: int, precision: str | None = None) -> float:
    """How long ``epochs`` of training ``model`` on ``data`` take on this machine: a few timed
    steps of a copy of the model on a real training batch, times the training images, plus the
    images evaluated (each epoch's validation set, its test set too when ``data`` tests every
    epoch as a sweep does, and the final test) at a third of a step's cost per image (a forward
    pass without the backward), plus a tenth for checkpoints and logging. ``precision``: the
    one the run trains in (default: this machine's; see :func:`runs.run_precision`)."""
    batch = next(iter(data.loader("train", batch_size=recipe.batch_size)))
    rate = measure.training_throughput(copy.deepcopy(model), batch=batch, precision=precision)
    evaluated = epochs * (len(data.val) + (len(data.test) if data.test_every_epoch else 0))
    return 1.1 * (epochs * len(data.train) + (evaluated + len(data.test)) / 3) / rate


def say_how_long_if_long(model: nn.Module, data: ImageDataModule, recipe: Recipe,
                          folder: Path, epochs: int, precision: str | None = None) -> None:
    """Before a full-mode run of more than ``LONG_RUN_SECONDS``, print its measured estimate,
    what it trains, and how to shorten it (smoke runs and short runs are not timed)."""
    left = epochs - runs.epochs_done(folder)
    if config.is_smoke() or left * (len(data.train) // recipe.batch_size) < 100:
        return
    seconds = estimate_seconds(model, data, recipe, left, precision)
    if seconds < LONG_RUN_SECONDS:
        return
    name = getattr(model, "blueprint", {}).get("name", type(model).__name__)
    shorter = (" or run in COURSE_MODE=cpu (a minute or two per run)" if config.mode() == "full"
               else " or close what else is using this CPU")
    done = f"{epochs - left} of {epochs} epochs done, " if left < epochs else ""
    print(f"{folder.name}: about {seconds / 60:.0f} min of training on {config.hardware()} "
          f"(measured from a few steps): {name} ({measure.count_parameters(model):,} "
          f"parameters) on {data.name} ({len(data.train):,} training images), recipe "
          f"{recipe.name}, {done}{left} epoch(s) to train.\n"
          f"It can be stopped at any time (Ctrl+C, or the notebook's stop button) and resumes "
          f"from its last completed epoch when started again. To shorten it, train fewer "
          f"epochs (epochs=...){shorter}; the course's own reference runs are shown in every "
          f"notebook without training.")


LAYOUTS: dict = {}  # prefers_channels_last's answers in this process


def prefers_channels_last(model: torch.nn.Module, input_shape: tuple, batch_size: int,
                          precision: str | None = None) -> bool:
    """Whether a training step of ``model`` runs faster with channels-last memory on this
    machine: both layouts timed on copies of the model (one warm-up step, then two timed
    ones each), once per process for a model's blueprint, input shape, batch size and
    precision. The model and the random number generators are left as they were."""
    blueprint = getattr(model, "blueprint", None) or type(model).__name__
    key = (json.dumps(blueprint, sort_keys=True, default=str), tuple(input_shape), batch_size,
           precision or config.precision())
    if key not in LAYOUTS:
        with torch.random.fork_rng():
            rates = {layout: measure.training_throughput(
                copy.deepcopy(model), input_shape, batch_size, batches=2, precision=precision,
                channels_last=layout, warm_up=1) for layout in (False, True)}
        LAYOUTS[key] = rates[True] > rates[False]
    return LAYOUTS[key]


def choose_layout(wanted: bool | None, folder: Path, model: nn.Module, data: ImageDataModule,
                   recipe: Recipe, precision: str, trainer_options: dict,
                   dense_kernels_used: bool = False) -> bool:
    """The memory layout a run trains in: channels_last as asked; else the one the run already
    trains in (its last checkpoint says), so that a resumed run goes on as it began; else
    channels-last for a DenseNet trained through the course's kernels (their buffers' layout,
    in which they were timed: :func:`choose_dense_kernels`); else, for one process on a CPU in
    full mode, the faster of the two for this model, from a few timed steps
    (:func:`prefers_channels_last`: it depends on the model and the CPU, e.g. the paper's
    DenseNets as written train faster without it in bf16); else channels-last on CUDA and CPUs
    and the usual layout elsewhere. CPU mode and smoke runs take that rule without
    timing: CPU mode fixes what sets a run's numbers (fp32, and this layout, faster in fp32 for
    every model measured), since the layouts round differently and a pick by timing could
    change between two runs on one machine, and with it the result (docs/measurements.md).
    The layout changes nothing the run computes beyond rounding; the record names it."""
    if wanted is not None:
        return wanted
    if (recorded := runs.recorded_layout(folder)) is not None:
        return recorded
    return fresh_layout(model, tuple(data.train.images.shape[1:]), recipe.batch_size, precision,
                        trainer_options, dense_kernels_used)


def one_cpu_process(trainer_options: dict | None) -> bool:
    """Whether a run with these Lightning options trains in this one process, on a CPU."""
    device = config.device_type()
    options = trainer_options or {}
    return (device == "cpu" and options.get("accelerator", device) == "cpu"
            and options.get("devices", 1) in (1, "auto")
            and options.get("strategy", "auto") == "auto")


def fresh_layout(model: nn.Module, input_shape: tuple, batch_size: int, precision: str,
                 trainer_options: dict | None = None, dense_kernels_used: bool = False) -> bool:
    """Whether a new run of ``model`` trains channels-last (see :func:`choose_layout`)."""
    if dense_kernels_used:  # the kernels' buffers' layout: through them the three DenseNets
        return True         # ran 1 to 5 % faster so in bf16 and fp32 (memory_layout.py, the
                            # AVX512-BF16 CPU, 2026-12-08)
    if one_cpu_process(trainer_options) and config.mode() == "full":
        return prefers_channels_last(model, input_shape, batch_size, precision)
    return config.device_type() in ("cuda", "cpu")


def choose_dense_kernels(folder: Path, model: nn.Module, precision: str,
                         trainer_options: dict) -> bool:
    """Whether a run trains its dense blocks through the course's C++ kernels
    (:mod:`~helpers._machinery.dense_kernels`: the same model and results to rounding, 1.2 to 1.8
    times as fast in CPU mode, about 1.5 times DenseNet-BC-100 in bf16, docs/measurements.md):
    as the run already does (its last checkpoint says), so that a resumed run goes on as it
    began; else for a DenseNet that one CPU process trains in fp32 or bf16 (the precisions they
    were measured in), where they build. The record names the choice."""
    recorded = runs.recorded_dense_kernels(folder)
    if recorded is None:
        return kernels_would_train(model, precision, trainer_options)
    if recorded and dense_kernels.fused() is None:
        raise RuntimeError(
            f"the interrupted run in {folder} trains its dense blocks through the course's C++ "
            f"kernels, which are not available in this process (the reason is printed above). "
            f"A resumed run goes on as it began, so that it computes what an uninterrupted one "
            f"would. Install what they need (pip install ninja, and a C++ compiler such as g++) "
            f"and run it again, or pass overwrite=True to train it afresh without them.")
    return recorded


def kernels_would_train(model: nn.Module, precision: str,
                        trainer_options: dict | None = None) -> bool:
    """Whether a new run of ``model`` trains its dense blocks through the course's kernels (see
    :func:`choose_dense_kernels`)."""
    return (one_cpu_process(trainer_options) and precision in ("32-true", "bf16-mixed")
            and dense_kernels.refusal(model) is None and dense_kernels.fused() is not None)


@contextlib.contextmanager
def dense_blocks_for(model: nn.Module, use_kernels: bool):
    """``model``'s dense blocks trained through the kernels within the block, where
    ``use_kernels``; as written again afterwards, whatever happens."""
    if use_kernels:
        dense_kernels.shared_statistics(model, dense_kernels.fused())
    try:
        yield
    finally:
        dense_kernels.as_written(model)


def train(module: Classifier, data: ImageDataModule, folder: Path, definition: dict,
          note: str, trainer_options: dict, afresh: bool, still_held,
          writer: bool = True) -> Run:
    """The training of :func:`~helpers.training.fit`, in its locked run folder; writes the
    history, then the run record (last: a run is complete when its record exists). ``afresh``:
    whether the same call would start afresh (said when a signal stops the run).
    ``still_held`` raises unless the folder's lock is still this process's; it is called before
    every write.

    Several processes (DDP) train one run as one: the recipe's batch is split between them,
    each taking every n-th image of the same shuffled order (so each step sees the images one
    process would), their gradients are averaged, and validation and test metrics are
    reduced over the whole split. Only the first (``writer``) writes checkpoints, logs and
    results; the others return the same run without writing anything."""
    model = module.model
    recipe = module.recipe
    module.run_definition = runs.definition_text(definition)
    epochs = definition["epochs"]
    seed = definition["seed"]
    steps = len(data.train) // recipe.batch_size
    history = History()
    # The best epoch's weights, and every completed epoch's full state to resume from: two
    # callbacks, since Lightning's save_last writes last.ckpt only at epochs that saved a new
    # best (a kill would lose every epoch since).
    keep_best = _lightning.FolderCheckpoint(folder, Path(runs.BEST).stem, still_held,
                                            monitor="val_acc", mode="max")
    keep_every_epoch = _lightning.FolderCheckpoint(folder, Path(runs.LAST).stem, still_held,
                                                   monitor=None, every_n_epochs=1)
    callbacks = [history, StopIfDiverged(), keep_best, keep_every_epoch,
                 *trainer_options.pop("callbacks", [])]
    if trainer_options.get("enable_progress_bar", True):
        callbacks.append(_lightning.ProgressBar(refresh_rate=max(1, steps // 20)))
    last = folder / runs.LAST
    trainer = _lightning.trainer(
        definition["precision"], max_epochs=epochs, default_root_dir=folder,
        callbacks=callbacks,
        logger=_lightning.loggers(folder, resuming=last.exists() or not writer),
        log_every_n_steps=max(1, min(50, steps)), **trainer_options)
    processes = trainer.world_size
    if recipe.batch_size % processes:
        raise ValueError(f"the batch of {recipe.batch_size} images of recipe {recipe.name!r} "
                         f"cannot be split evenly between {processes} processes; use a number "
                         f"of devices that divides it")
    data = data.with_batch_size(recipe.batch_size // processes)  # each process's share
    pl.seed_everything(seed, verbose=False)
    _allocator.keep_freed_blocks()  # no fresh pages for every step's activations (Linux)
    start = time.perf_counter()
    with _lightning.quiet():
        again = ("started again as it was, it starts afresh in smoke mode or with "
                 "overwrite=True; pass overwrite=False to resume it" if afresh else
                 "start the same run again to resume it")
        with stopped_by_signals(lambda: (
                f"training of {folder.name} stopped in epoch {module.current_epoch + 1} of "
                f"{epochs}. Every completed epoch is kept in {folder}; {again}."), say=writer):
            # weights_only: a checkpoint is never unpickled, whatever
            # TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD says (it overrides only an unset argument)
            with _lock_lost_first(still_held):
                trainer.fit(module, datamodule=data,
                            ckpt_path=last if last.exists() else None, weights_only=True)
        table = pd.DataFrame(history.rows)  # before testing "best" restores an older state
        module.test_probabilities = []
        with stopped_by_signals(lambda: (
                f"{folder.name} trained all {len(table)} epochs, but its final test was "
                f"stopped. Every epoch is kept in {folder}; {again.replace('resume', 'test')} "
                f"(nothing is trained again)."), say=writer):
            # the best epoch's weights from this folder (never a path recorded elsewhere)
            test = trainer.test(module, datamodule=data, ckpt_path=folder / runs.BEST,
                                verbose=False, weights_only=True)[0]
    model.eval()  # with the best epoch's weights, which the test loaded
    best = table.loc[table["val_acc"].idxmax()]
    info = {
        "name": folder.name, "model": getattr(model, "blueprint", None),
        "parameters": measure.count_parameters(model),
        "data": data.name, "data_source": data.source,
        "images": definition["data"]["images"],
        "recipe": dataclasses.asdict(recipe), "epochs": epochs, "epochs_trained": len(table),
        "seed": seed, "mode": config.mode(),
        "smoke_run": config.is_smoke() or data.train.is_stand_in,
        "precision": trainer.precision, "channels_last": module.channels_last,
        "dense_kernels": dense_kernels.in_use(model),
        "hardware": _machines(table),
        "processes": processes, "torch": torch.__version__, "lightning": pl.__version__,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "train_seconds": round(float(table["seconds"].sum()), 1),
        "best_epoch": int(best["epoch"]), "best_val_acc": float(best["val_acc"]),
        "test_loss": test["test_loss"], "test_acc": test["test_acc"],
        "micro_batch": getattr(module, "micro_batch", recipe.batch_size),
        "note": note, "commit": config.commit(),
        # this process's time, plus the epochs an interrupted earlier one finished
        "wall_seconds": round(time.perf_counter() - start
                              + float(table["seconds"].iloc[:history.restored].sum()), 1),
        "resumed_after_epoch": history.restored, "definition": definition,
    }
    run = Run(folder.name, model, table, info, folder)
    if not writer:
        return run
    still_held()
    runs.save_weights(folder, model)
    runs.save_test_probabilities(folder, torch.cat(module.test_probabilities),
                                 data.test.labels)
    files.write_text(folder / runs.HISTORY, table.to_csv(index=False))
    # binds them to the record: one copied from another run is refused
    info["files"] = run.info["files"] = runs.checksums(folder)
    still_held()
    files.write_text(folder / runs.RECORD, json.dumps(info, indent=1))  # last: now complete
    return run


def check_fit_arguments(model: nn.Module, data: ImageDataModule, recipe, name: str, epochs,
                        seed, precision, directory, trainer_options: dict
                        ) -> tuple[ImageDataModule, Recipe, int]:
    """``fit``'s arguments, checked before anything is read or written: the data module with the
    recipe's batch size (a copy: the caller's module is unchanged), the recipe and the epochs."""
    recipe = get_recipe(recipe) if isinstance(recipe, str) else recipe
    if not isinstance(recipe, Recipe):
        raise TypeError(f"recipe must be a recipe name or a Recipe, not {recipe!r}; valid "
                        f"names: {', '.join(RECIPES)}")
    runs.check_name(name)
    _lightning.check_precision("fit", precision)
    if directory is not None and not isinstance(directory, (str, os.PathLike)):
        raise TypeError(f"fit: directory must be a path (a str or Path), not {directory!r}")
    check_trainer_options(trainer_options)
    epochs = planned_epochs(recipe, epochs, smoke=config.is_smoke())
    if not _arguments.is_whole(seed):
        raise TypeError(f"fit: seed must be a whole number, not {seed!r}")
    if not 0 <= seed < 2 ** 32:
        raise ValueError(f"fit: seed={seed} is not valid; it must be in [0, 2**32), the range "
                         f"the random number generators accept")
    data = data.with_batch_size(recipe.batch_size)
    if recipe.batch_size > len(data.train):
        raise ValueError(f"the batch size {recipe.batch_size} of recipe {recipe.name!r} is "
                         f"larger than the training split ({len(data.train)} images), so not "
                         f"one full batch could be trained on. Use more training images, or a "
                         f"smaller batch: get_recipe({recipe.name!r}, batch_size=...).")
    return data, recipe, epochs


def train_share(folder: Path, classifier: type, model: nn.Module, data: ImageDataModule,
                recipe: Recipe, epochs: int, seed: int, precision: str,
                channels_last: bool | None, note: str, trainer_options: dict) -> Run:
    """This process's share of a run that several processes train (DDP): the process that
    launched it holds the folder's lock and has prepared it; this one trains and writes nothing."""
    if runs.in_use(folder) is None:
        raise runs.RunInUse(
            f"this process was started as one of several training one run (its environment "
            f"sets RANK, LOCAL_RANK or NODE_RANK), but no process holds {folder}'s lock, "
            f"as the first one would. Start the run from a script with strategy='ddp' and "
            f"let Lightning start the other processes; unset those variables otherwise.")
    wanted = requested_definition(folder, model, data, recipe, epochs, seed, precision)
    runs.check_same_run(folder, wanted)
    kernels = choose_dense_kernels(folder, model, wanted["precision"], trainer_options)
    layout = choose_layout(channels_last, folder, model, data, recipe, wanted["precision"],
                           trainer_options, kernels)
    module = classifier(model, recipe, seed, layout)
    with dense_blocks_for(model, kernels):
        return train(module, data, folder, wanted, note, trainer_options, False, lambda: None,
                     writer=False)


def train_alone(folder: Path, classifier: type, model: nn.Module, data: ImageDataModule,
                recipe: Recipe, epochs: int, seed: int, precision: str,
                channels_last: bool | None, note: str, overwrite: bool | None,
                trainer_options: dict) -> Run:
    """A run in ``folder`` as ``fit`` describes it, holding the folder's lock: loaded when it is
    finished, resumed when interrupted, else trained afresh."""
    name = folder.name
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
        kernels = choose_dense_kernels(folder, model, wanted["precision"], trainer_options)
        layout = choose_layout(channels_last, folder, model, data, recipe, wanted["precision"],
                               trainer_options, kernels)
        module = classifier(model, recipe, seed, layout)
        held.enter_context(dense_blocks_for(model, kernels))
        return train(module, data, folder, wanted, note, trainer_options, afresh, guard.check)


@contextlib.contextmanager
def _lock_lost_first(still_held):
    """A file error while training (a log Lightning writes into a folder that was deleted) is
    reported as what it means, :class:`~helpers._machinery.runs.LockLost`, when the lock was
    lost."""
    try:
        yield
    except OSError:
        still_held()
        raise


def _machines(history: pd.DataFrame) -> str:
    """The hardware that trained the epochs of ``history``, each machine once (a run resumed on
    another machine names both)."""
    return " / ".join(dict.fromkeys(history["hardware"].dropna()))


class _Signalled(BaseException):
    """Raised by the signal handlers of :func:`stopped_by_signals` (not a KeyboardInterrupt,
    which Lightning would turn into ``sys.exit(1)`` and a process that ignores Ctrl+C)."""


@contextlib.contextmanager
def stopped_by_signals(what, say: bool = True):
    """Turn SIGINT and SIGTERM into :class:`RunInterrupted`, with the signal's name and
    ``what()`` (what was stopped, what is kept, how to go on) as its message, printed when
    ``say``. (Lightning alone exits with status 0 on SIGTERM, as if it had finished, ignores
    SIGTERM outside training, and turns Ctrl+C into ``sys.exit(1)``.) Signal handlers can only
    be set in the main thread; elsewhere (e.g. a Ray worker) the signals keep their usual
    effect."""
    def stop(signal_number, frame):
        raise _Signalled(signal_number)

    main = threading.current_thread() is threading.main_thread()
    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)} if main else {}
    try:
        yield
    except (_Signalled, SIGTERMException) as error:
        number = error.args[0] if isinstance(error, _Signalled) else signal.SIGTERM
        message = f"{signal.Signals(number).name}: {what()}"
        if say:
            print(message)
        raise RunInterrupted(message, int(number)) from None
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def nothing_changed(what: str):
    """What a stopped evaluation or prediction says: it changed nothing."""
    return lambda: f"the {what} was stopped; nothing was changed, run it again to finish it."
