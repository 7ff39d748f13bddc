"""The course's one training path: a Lightning module for image classification and ``fit``.

Every notebook trains through :func:`fit` with a named :class:`Recipe` (optimizer, schedule,
epochs, batch size), so that a model, a recipe and a data set can be swapped independently.
``fit`` picks the device (CUDA, MPS, CPU), bf16 autocast and channels_last where they help,
seeds the run, shows a progress bar, writes CSV and TensorBoard logs, keeps the best checkpoint
(by validation accuracy) and the last one (for resuming), evaluates the best weights on the
whole test set, and returns a :class:`Run` with the per-epoch history for plotting.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import logging
import math
import signal
import threading
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint, TQDMProgressBar
from pytorch_lightning.callbacks.progress.tqdm_progress import Tqdm
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger
from pytorch_lightning.plugins.io import TorchCheckpointIO
from pytorch_lightning.utilities.exceptions import SIGTERMException
from torch import nn
from torch.nn import functional as F

from . import config, files, models, runs
from .data import ImageDataModule
from .runs import Run

# Lightning's start-up banners ("GPU available: ...", tips) are noise in a notebook.
for _name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
    logging.getLogger(_name).setLevel(logging.WARNING)


@contextlib.contextmanager
def _quiet():
    """Silence two Lightning warnings about what is done on purpose here: a deprecation inside
    Lightning itself, and logs written into a run folder before its checkpoints."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
        warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not")
        yield


@dataclass(frozen=True)
class Recipe:
    """How to train: optimizer, learning-rate schedule, length and batch size.

    ``milestones`` of a step schedule are fractions of the run (0.5 = half-way), so a recipe
    keeps its shape when the number of epochs changes; at each one the rate is multiplied by
    ``gamma``. "sgdr" (Loshchilov & Hutter's warm restarts) runs cosine cycles from ``lr`` to
    ``final_lr`` of ``cycle_epochs``, each next one ``cycle_mult`` times longer; its restarts
    stay at fixed epochs. ``source`` says where the recipe comes from.
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
    source: str = ""

    def __post_init__(self):  # a bad recipe fails here, before any data is loaded
        def check(field, valid, what):
            value = getattr(self, field)
            if not valid(value):
                raise ValueError(f"recipe {self.name!r}: {field}={value!r} is not valid; "
                                 f"{what}")
        check("optimizer", lambda v: v in OPTIMIZERS,
              f"unknown optimizer; valid: {', '.join(OPTIMIZERS)}")
        check("schedule", lambda v: v in SCHEDULES,
              f"unknown schedule; valid: {', '.join(SCHEDULES)}")
        for field in ("epochs", "batch_size"):
            check(field, _is_positive_int, "a positive whole number")
        check("lr", lambda v: _is_number(v) and v > 0, "a positive number")
        for field in ("weight_decay", "warmup_epochs", "final_lr"):
            check(field, lambda v: _is_number(v) and v >= 0, "a number >= 0")
        for field in ("momentum", "label_smoothing"):
            check(field, lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)")
        check("gamma", lambda v: _is_number(v) and v > 0, "a positive number")
        check("cycle_epochs", lambda v: _is_number(v) and v > 0, "a positive number")
        check("cycle_mult", lambda v: _is_number(v) and v >= 1, "a number >= 1")
        check("milestones", lambda v: isinstance(v, (tuple, list)) and all(
            _is_number(m) and 0 < m <= 1 for m in v), "fractions of the run in (0, 1]")


OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("step", "cosine", "sgdr", "constant")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def positive_int(value, what: str) -> int:
    """``value`` if it is a whole number > 0, else a ValueError (TypeError for other types)
    naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be a whole number > 0, not {value!r} "
                        f"({type(value).__name__})")
    if value <= 0:
        raise ValueError(f"{what} must be a whole number > 0, not {value}")
    return value


RECIPES = {recipe.name: recipe for recipe in [
    Recipe("allcnn-seed", lr=0.1, momentum=0.9, weight_decay=2e-5, schedule="step",
           milestones=(0.2, 0.4, 0.6, 0.8), gamma=0.5, epochs=100, batch_size=64,
           source="seed 001 (The AllConv Net): SGD, lr halved every 20 of 100 epochs, "
                  "with the scheduler stepped correctly (the seed never decayed it)"),
    Recipe("sgd-step", nesterov=True, weight_decay=5e-4, schedule="step",
           milestones=(0.5, 0.75), gamma=0.1, epochs=100, batch_size=128,
           source="SGD + Nesterov momentum, lr / 10 at 50% and 75% of training"),
    Recipe("sgd-cosine", nesterov=True, weight_decay=5e-4, schedule="cosine", warmup_epochs=1,
           epochs=30, batch_size=128, label_smoothing=0.1,
           source="SGD + Nesterov momentum, 1 warm-up epoch, cosine decay to 0, label smoothing"),
    Recipe("adamw-cosine", optimizer="adamw", lr=1e-3, weight_decay=1e-4, schedule="cosine",
           epochs=30, batch_size=128,
           source="AdamW (decoupled weight decay), cosine decay to 0"),
    Recipe("tutorial5-sgd", lr=0.1, momentum=0.9, weight_decay=1e-4, schedule="step",
           milestones=(100 / 180, 150 / 180), gamma=0.1, epochs=180, batch_size=128,
           source="UvA DL Tutorial 5, ResNets: SGD momentum 0.9, lr 0.1 / 10 at epochs 100 "
                  "and 150 of 180, weight decay 1e-4, batch 128"),
    Recipe("tutorial5-adamw", optimizer="adamw", lr=1e-3, weight_decay=1e-4, schedule="step",
           milestones=(100 / 180, 150 / 180), gamma=0.1, epochs=180, batch_size=128,
           source="UvA DL Tutorial 5, GoogleNet and DenseNet: AdamW lr 1e-3 / 10 at epochs "
                  "100 and 150 of 180, weight decay 1e-4, batch 128"),
    Recipe("ccnn-toy-paper", lr=1.6, momentum=0.9, nesterov=True, weight_decay=0.0,
           schedule="step", milestones=(0.5, 0.75), gamma=0.1, epochs=100, batch_size=16,
           source="Sadigh & Sen's MNIST demo: SGD with Nesterov momentum 0.9, no weight decay, "
                  "lr / 10 at 50% and 75% of 100 epochs, batch 16; its lr 0.1 on the summed "
                  "loss of 16 images is exactly lr 1.6 on the mean loss used here"),
    Recipe("mundt-sgdr", lr=0.01, momentum=0.9, weight_decay=5e-4, schedule="sgdr",
           final_lr=1e-5, cycle_epochs=10, cycle_mult=2, epochs=150, batch_size=128,
           source="Mundt et al.'s feature-amount sweep: SGD momentum 0.9, weight decay 5e-4, "
                  "batch 128, SGDR from 0.01 to 1e-5 per step, cycles of 10, 20, 40, 80 epochs "
                  "(restarts at epochs 10, 30, 70)"),
    Recipe("densenet-paper", lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4,
           schedule="step", milestones=(0.5, 0.75), gamma=0.1, epochs=300, batch_size=64,
           source="Huang et al. 2017 (DenseNet), CIFAR: SGD with Nesterov momentum 0.9, "
                  "lr 0.1 / 10 at 50% and 75% of 300 epochs, weight decay 1e-4, batch 64"),
    Recipe("densenet-fast", lr=0.2, momentum=0.9, nesterov=True, weight_decay=5e-4,
           schedule="cosine", warmup_epochs=2, epochs=60, batch_size=128, label_smoothing=0.1,
           source="the course's design: a fifth of the paper's epochs, double batch and lr, "
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
        raise ValueError(f"unknown schedule {recipe.schedule!r}; valid: step, cosine, sgdr, "
                         f"constant")
    floor = recipe.final_lr / recipe.lr
    return warmup * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def seed(value: int = 0) -> None:
    """Seed Python, NumPy and torch (call before building a model for a reproducible init)."""
    pl.seed_everything(value, verbose=False)


OUT_OF_MEMORY = ("out of memory", "CUDNN_STATUS_NOT_SUPPORTED", "can't allocate memory")


def is_out_of_memory(error: BaseException) -> bool:
    """Whether an error means the device ran out of memory (PyTorch's OutOfMemoryError, or the
    messages cuDNN and the CPU allocator give for it)."""
    return isinstance(error, torch.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and any(m in str(error) for m in OUT_OF_MEMORY))


class DoesNotFit(RuntimeError):
    """A training batch does not fit in memory even split into the smallest micro-batches."""


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite; the run stopped and recorded no result."""


class RunInterrupted(KeyboardInterrupt):
    """Training was stopped by SIGINT (Ctrl+C, a notebook's interrupt) or SIGTERM (a scheduler,
    ``kill``); every completed epoch is kept, and starting the same run again resumes it.
    ``signal_number`` says which; a script exits with 128 + it."""

    def __init__(self, message: str, signal_number: int):
        super().__init__(message)
        self.signal_number = signal_number


def _release_memory() -> None:
    """Return what a failed attempt held: called after an out-of-memory error, outside the
    ``except`` block, whose traceback would keep the attempt's tensors alive."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class Classifier(pl.LightningModule):
    """Image classification: cross-entropy (optional label smoothing) and accuracy.

    Metrics are accumulated on the device and averaged over all images of an epoch (weighted
    by batch size), so validation and test accuracy cover every image, the last batch included.

    Memory-safe: a training batch that runs out of memory is redone from its start in
    micro-batches of half the size, accumulating gradients of the loss normalised by the whole
    batch, so the optimizer sees the same batch (BatchNorm, though, then normalises per
    micro-batch). The smaller size is kept for the following batches; below ``min_micro_batch``
    the run stops with :class:`DoesNotFit`. Evaluation batches are likewise split on demand.
    """

    def __init__(self, model: nn.Module, recipe: Recipe | None = None, seed: int = 0,
                 channels_last: bool = False, tta: bool = False, min_micro_batch: int = 2):
        super().__init__()
        self.model = models.to_channels_last(model) if channels_last else model
        self.recipe, self.seed, self.channels_last, self.tta = recipe, seed, channels_last, tta
        self.automatic_optimization = False
        self.micro_batch, self.min_micro_batch, self.eval_chunk = None, min_micro_batch, None
        self._diverged_at = None  # the first step of this epoch whose loss was not finite
        self.test_probabilities = None  # a list to collect them in, when wanted
        self.save_hyperparameters({
            "model": getattr(model, "spec", None), "seed": seed,
            "recipe": dataclasses.asdict(recipe) if recipe else None})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x)

    def _scores(self, x: torch.Tensor, stage: str) -> torch.Tensor:
        """Logits; for evaluation with flip test-time augmentation, the log of the mean of the
        probabilities for the image and its mirror image (cross-entropy of it is their NLL)."""
        if not self.tta or stage == "train":
            return self(x)
        return ((self(x).float().softmax(1) + self(x.flip(3)).float().softmax(1)) / 2).log()

    def _evaluate_in_chunks(self, x: torch.Tensor, stage: str) -> torch.Tensor:
        """``_scores`` of an evaluation batch, in chunks halved after each out-of-memory error
        (the size found is kept for later batches)."""
        while True:
            size = self.eval_chunk or len(x)
            try:
                return torch.cat([self._scores(part, stage) for part in x.split(size)])
            except RuntimeError as error:
                if not is_out_of_memory(error):
                    raise
            _release_memory()
            if size == 1:
                raise DoesNotFit("a single image does not fit in memory for evaluation")
            self.eval_chunk = size // 2

    def _evaluation_step(self, batch, stage: str) -> torch.Tensor:
        """Log the batch's loss and accuracy; return its class probabilities."""
        x, y = batch
        logits = self._evaluate_in_chunks(x, stage)
        loss = F.cross_entropy(logits, y)
        self._log(stage, loss, (logits.argmax(dim=1) == y).float().mean(), len(y))
        return logits.float().softmax(dim=1)

    def _log(self, stage: str, loss: torch.Tensor, accuracy: torch.Tensor, size: int) -> None:
        # Epoch values are means weighted by batch size, summed over devices (sync_dist): the
        # accuracy of every image, however the batches were cut.
        for name, value in (("loss", loss), ("acc", accuracy)):
            self.log(f"{stage}_{name}", value, on_step=False, on_epoch=True, batch_size=size,
                     sync_dist=True, add_dataloader_idx=False,
                     prog_bar=name == "acc" and stage != "test")

    def training_step(self, batch, batch_idx):
        x, y = batch
        if self.micro_batch is None:
            self.micro_batch = len(y)
        optimizer = self.optimizers()
        while (loss := self._accumulate(x, y)) is None:  # out of memory: recover outside except
            optimizer.zero_grad(set_to_none=True)
            _release_memory()
            if self.micro_batch // 2 < self.min_micro_batch:
                raise DoesNotFit(f"a batch of {len(y)} does not fit in memory even in "
                                 f"micro-batches of {self.micro_batch}")
            self.micro_batch //= 2
            print(f"Out of memory: redoing the batch in micro-batches of {self.micro_batch}.")
        self._stop_if_diverged(loss, batch_idx)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        self.lr_schedulers().step()

    def _accumulate(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
        """Gradients of the batch's mean loss, summed over micro-batches; returns the loss, or
        None (and partial gradients) if the device ran out of memory."""
        loss, correct = x.new_zeros((), dtype=torch.float32), x.new_zeros((), dtype=torch.long)
        try:
            for part_x, part_y in zip(x.split(self.micro_batch), y.split(self.micro_batch)):
                logits = self(part_x)
                part = F.cross_entropy(logits, part_y, reduction="sum",
                                       label_smoothing=self.recipe.label_smoothing) / len(y)
                self.manual_backward(part)
                loss += part.detach()
                correct += (logits.argmax(dim=1) == part_y).sum()
        except RuntimeError as error:
            if not is_out_of_memory(error):
                raise
            return None
        self._log("train", loss, correct / len(y), len(y))
        return loss

    def _stop_if_diverged(self, loss: torch.Tensor, batch_idx: int) -> None:
        """Raise :class:`TrainingDiverged` once the training loss is NaN or infinite. The first
        bad step is noted on the device; it is read every step on a CPU and every 25 steps
        (and at the epoch's last) on a GPU, where each read waits for the GPU."""
        if self._diverged_at is None:
            self._diverged_at = torch.full((), -1, device=loss.device)
        bad = ~torch.isfinite(loss) & (self._diverged_at < 0)
        self._diverged_at = torch.where(bad, batch_idx, self._diverged_at)
        steps = self.trainer.num_training_batches
        if loss.device.type == "cuda" and batch_idx % 25 and batch_idx + 1 != steps:
            return
        if (step := int(self._diverged_at)) >= 0:
            raise _diverged(self.recipe, self.current_epoch,
                           f"the training loss became NaN or infinite at step {step + 1} of "
                           f"{steps}")

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        self._evaluation_step(batch, "val" if dataloader_idx == 0 else "test")

    def test_step(self, batch, batch_idx):
        probabilities = self._evaluation_step(batch, "test")
        if self.test_probabilities is not None:  # kept by fit: notebooks plot from them
            self.test_probabilities.append(probabilities.to(torch.float16).cpu())

    def predict_step(self, batch, batch_idx):
        x, y = batch
        return self._evaluate_in_chunks(x, "predict").float().softmax(dim=1), y

    def on_train_epoch_start(self):
        # Shuffling, augmentation and dropout are seeded per epoch, so that a resumed run
        # continues exactly as an uninterrupted one would have.
        loader = self.trainer.train_dataloader
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(self.current_epoch)
        torch.manual_seed(self.seed * 7919 + self.current_epoch + 1_000_003 * self.global_rank)
        self._diverged_at = None

    def configure_optimizers(self):
        r = self.recipe
        fused = {"fused": True} if self.device.type == "cuda" else {}
        if r.optimizer == "sgd":
            optimizer = torch.optim.SGD(self.parameters(), lr=r.lr, momentum=r.momentum,
                                        nesterov=r.nesterov, weight_decay=r.weight_decay, **fused)
        elif r.optimizer == "adamw":
            optimizer = torch.optim.AdamW(self.parameters(), lr=r.lr,
                                          weight_decay=r.weight_decay, **fused)
        else:
            raise ValueError(f"unknown optimizer {r.optimizer!r}; valid: sgd, adamw")
        epochs = self.trainer.max_epochs
        steps_per_epoch = self.trainer.estimated_stepping_batches / epochs
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_factor(r, (step + 0.5) / steps_per_epoch, epochs))
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def _diverged(recipe: Recipe, epoch: int, what: str) -> TrainingDiverged:
    """The error that stops a diverging run in ``epoch`` (counted from 0), saying ``what``."""
    kept = f"the folder keeps the checkpoint of epoch {epoch}" if epoch else "no epoch completed"
    return TrainingDiverged(
        f"training diverged in epoch {epoch + 1}: {what}. The learning rate ({recipe.lr:g} in "
        f"recipe {recipe.name!r}) is most likely too high for this model. Nothing was recorded "
        f"as a result ({kept}). Lower it, e.g. get_recipe({recipe.name!r}, lr="
        f"{recipe.lr / 10:g}), and train under another name or with overwrite=True.")


class StopIfDiverged(pl.Callback):
    """At the end of each training epoch, before its checkpoint is written (Lightning runs
    checkpointing last), stop a run whose validation loss or weights are no longer finite:
    weights can blow up while each step's loss still looked finite."""

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
    update; no evaluation). Saved in the checkpoint so that a resumed run keeps its earlier
    epochs."""

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
                          "step_seconds": self._steps_end - self._start})

    def state_dict(self):
        return {"rows": self.rows}

    def load_state_dict(self, state):
        if not self.rows:  # resuming (testing "best" later restores an older state too)
            self.restored = len(state["rows"])
        self.rows = list(state["rows"])


class ProgressBar(TQDMProgressBar):
    """Lightning's training bar (rate, time left, metrics) without the logger version number,
    and without bars for the short validation and test passes."""

    def get_metrics(self, trainer, module):
        items = super().get_metrics(trainer, module)
        items.pop("v_num", None)
        return items

    def init_validation_tqdm(self):
        return Tqdm(disable=True)

    def init_test_tqdm(self):
        return Tqdm(disable=True)

    def on_exception(self, trainer, module, exception):
        if self._train_progress_bar is not None:  # an interrupted run leaves no dangling bar
            self._train_progress_bar.close()


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, but straight into a temporary file beside the target,
    renamed when complete (Lightning's own goes through a temporary file in $TMPDIR, which a
    killed process leaves behind)."""

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        with files.atomic_path(path) as temporary:
            torch.save(checkpoint, temporary)


def results_table(runs: dict[str, Run]) -> pd.DataFrame:
    """One row per run: parameters, best epoch, validation and test accuracy, provenance."""
    return pd.DataFrame([{
        "model": name, "parameters": run.info.get("parameters"),
        "best epoch": run.info.get("best_epoch"), "val accuracy": run.info.get("best_val_acc"),
        "test accuracy": run.info.get("test_acc"),
        "test images": run.info.get("images", {}).get("test"),
        "train minutes": run.wall_minutes,
        "provenance": run.provenance} for name, run in runs.items()]).set_index("model")


def _trainer(precision: str, **options) -> pl.Trainer:
    options.setdefault("accelerator", config.device_type())
    options.setdefault("devices", 1)
    options.setdefault("logger", False)
    options.setdefault("enable_progress_bar", True)
    options.setdefault("benchmark", options["accelerator"] == "cuda")  # cuDNN picks its fastest
    return pl.Trainer(precision=config.precision() if precision == "auto" else precision,
                      enable_model_summary=False, num_sanity_val_steps=0,
                      plugins=[AtomicCheckpointIO()], **options)


def planned_epochs(recipe: Recipe, epochs: int | None = None) -> int:
    """How many epochs a run trains: ``epochs`` when given, else the recipe's, capped at
    ``config.QUICK_EPOCHS`` in quick mode. The one place this rule lives."""
    if epochs is not None:
        return positive_int(epochs, "epochs")
    return min(recipe.epochs, config.QUICK_EPOCHS) if config.is_quick() else recipe.epochs


def fit(model: nn.Module, data: ImageDataModule, recipe: str | Recipe = "sgd-cosine", *,
        name: str, epochs: int | None = None, seed: int = 0, precision: str = "auto",
        channels_last: bool | None = None, overwrite: bool | None = None,
        directory: str | Path | None = None, note: str = "", **trainer_options) -> Run:
    """Train ``model`` on ``data`` with ``recipe`` into ``<directory>/<name>/`` (default
    directory: ``config.runs_dir()``) and return the run, its best weights loaded.

    The folder holds one run, bound to its settings (see :mod:`helpers.runs`): an interrupted
    run with the same settings resumes from its last completed epoch; a finished one is loaded,
    not trained again; a run with other settings is an error that names the differences.
    ``overwrite=True`` deletes the run in the folder and trains afresh; it is the default in
    quick mode, whose smoke runs are never kept. ``epochs``: see :func:`planned_epochs`. The
    recipe decides the batch size. ``note`` is kept in the run record (e.g. how a recipe was
    shortened). A NaN or infinite loss stops the run (:class:`TrainingDiverged`); SIGINT and
    SIGTERM stop it with :class:`RunInterrupted`. Extra keyword arguments go to ``pl.Trainer``
    (e.g. ``devices=4, strategy="ddp"`` to scale one run across GPUs).
    """
    recipe = get_recipe(recipe) if isinstance(recipe, str) else recipe
    if not isinstance(recipe, Recipe):
        raise TypeError(f"recipe must be a recipe name or a Recipe, not {recipe!r}; valid "
                        f"names: {', '.join(RECIPES)}")
    runs.check_name(name)
    epochs = planned_epochs(recipe, epochs)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be a whole number, not {seed!r}")
    precision = config.precision() if precision == "auto" else precision
    data.batch_size = recipe.batch_size
    data.setup()
    if recipe.batch_size > len(data.train):
        raise ValueError(f"the batch size {recipe.batch_size} of recipe {recipe.name!r} is "
                         f"larger than the training split ({len(data.train)} images), so not "
                         f"one full batch could be trained on. Use more training images, or a "
                         f"smaller batch: get_recipe({recipe.name!r}, batch_size=...).")
    folder = Path(directory or config.runs_dir()) / name
    wanted = runs.definition(model, data, recipe, epochs, seed, precision)
    with runs.lock(folder):
        runs.remove_stray_parts(folder)
        afresh = config.is_quick() if overwrite is None else overwrite
        if afresh:
            runs.clear(folder)
        else:
            runs.check_definition(folder, wanted)
            if runs.is_complete(folder):
                print(f"{name} is finished in {folder}: loaded, not trained again "
                      f"(overwrite=True trains it afresh).")
                return runs.load(folder, model)
        runs.write_definition(folder, wanted)
        return _train(model, data, recipe, folder, wanted, channels_last, note, trainer_options,
                      afresh)


def _train(model, data, recipe, folder, definition, channels_last, note, trainer_options,
           afresh: bool) -> Run:
    """The training of :func:`fit`, in its locked run folder; writes the history, then the
    run record (last: a run is complete when its record exists). ``afresh``: whether the same
    call would start afresh (said when a signal stops the run)."""
    epochs, seed = definition["epochs"], definition["seed"]
    if channels_last is None:
        channels_last = config.device_type() in ("cuda", "cpu")
    steps = len(data.train) // recipe.batch_size
    module = Classifier(model, recipe, seed, channels_last)
    history = History()
    checkpoints = ModelCheckpoint(dirpath=folder, filename="best", monitor="val_acc",
                                  mode="max", save_last=True, save_on_train_epoch_end=True,
                                  enable_version_counter=False)
    callbacks = [history, StopIfDiverged(), checkpoints, *trainer_options.pop("callbacks", [])]
    if trainer_options.get("enable_progress_bar", True):
        callbacks.append(ProgressBar(refresh_rate=max(1, steps // 20)))
    last = folder / runs.LAST
    # Lightning's CSV logger deletes an existing metrics.csv: a resumed attempt logs beside it.
    attempt = len(list(folder.glob("logs/csv*"))) + 1 if last.exists() else 1
    csv_version = "csv" if attempt == 1 else f"csv-{attempt}"
    trainer = _trainer(
        definition["precision"], max_epochs=epochs, default_root_dir=folder,
        callbacks=callbacks, logger=[CSVLogger(folder, name="logs", version=csv_version),
                                     TensorBoardLogger(folder, name="logs",
                                                       version="tensorboard")],
        log_every_n_steps=max(1, min(50, steps)), **trainer_options)
    pl.seed_everything(seed, verbose=False)
    start = time.perf_counter()
    with _quiet():
        with _stopped_by_signals(folder, module, epochs, afresh):
            trainer.fit(module, datamodule=data, ckpt_path=last if last.exists() else None)
        table = pd.DataFrame(history.rows)  # before testing "best" restores an older state
        module.test_probabilities = []
        test = trainer.test(module, datamodule=data, ckpt_path="best", verbose=False)[0]
    model.eval()  # with the best epoch's weights, which the test loaded
    best = table.loc[table["val_acc"].idxmax()]
    info = {
        "name": folder.name, "model": getattr(model, "spec", None),
        "parameters": models.count_parameters(model),
        "data": data.name, "data_source": data.source,
        "images": definition["data"]["images"],
        "recipe": dataclasses.asdict(recipe), "epochs": epochs, "epochs_trained": len(table),
        "seed": seed, "mode": config.mode(),
        "smoke_run": config.is_quick() or data.train.is_stand_in,
        "precision": trainer.precision, "hardware": config.hardware(),
        "torch": torch.__version__, "lightning": pl.__version__,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "train_seconds": round(float(table["seconds"].sum()), 1),
        "best_epoch": int(best["epoch"]), "best_val_acc": float(best["val_acc"]),
        "test_loss": test["test_loss"], "test_acc": test["test_acc"],
        "micro_batch": module.micro_batch, "note": note, "commit": config.commit(),
        # this process's time, plus the epochs an interrupted earlier one finished
        "wall_seconds": round(time.perf_counter() - start
                              + float(table["seconds"].iloc[:history.restored].sum()), 1),
        "resumed_after_epoch": history.restored, "definition": definition,
    }
    runs.save_weights(folder, model)
    runs.save_test_probabilities(folder, torch.cat(module.test_probabilities),
                                 data.test.labels)
    files.write_text(folder / runs.HISTORY, table.to_csv(index=False))
    files.write_text(folder / runs.RECORD, json.dumps(info, indent=1))  # last: now complete
    return Run(folder.name, model, table, info, folder)


class _Signalled(BaseException):
    """Raised by the signal handlers of :func:`_stopped_by_signals` (not a KeyboardInterrupt,
    which Lightning would turn into ``sys.exit(1)`` and a process that ignores Ctrl+C)."""


@contextlib.contextmanager
def _stopped_by_signals(folder: Path, module: Classifier, epochs: int, afresh: bool):
    """Turn SIGINT and SIGTERM during training into :class:`RunInterrupted`, whose message
    says how to resume. (Lightning alone exits with status 0 on SIGTERM, as if it had
    finished, and ignores further Ctrl+C after the first.) Signal handlers can only be set in
    the main thread; elsewhere (e.g. a Ray worker) the signals keep their usual effect."""
    def stop(signal_number, frame):
        raise _Signalled(signal_number)

    main = threading.current_thread() is threading.main_thread()
    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)} if main else {}
    try:
        yield
    except (_Signalled, SIGTERMException) as error:
        number = error.args[0] if isinstance(error, _Signalled) else signal.SIGTERM
        again = ("started again as it was, it starts afresh in quick mode or with overwrite=True; "
                 "pass overwrite=False to resume it" if afresh else
                 "start the same run again to resume it")
        message = (f"{signal.Signals(number).name}: training of {folder.name} stopped in epoch "
                   f"{module.current_epoch + 1} of {epochs}. Every completed epoch is kept in "
                   f"{folder}; {again}.")
        print(message)
        raise RunInterrupted(message, int(number)) from None
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def evaluate(model: nn.Module, data: ImageDataModule, split: str = "test",
             precision: str = "auto", tta: bool = False) -> dict:
    """Loss and accuracy of ``model`` over every image of the 'val' or 'test' split; with
    ``tta``, averaging the predictions for each image and its horizontal mirror."""
    if split not in ("val", "test"):
        raise ValueError(f"unknown split {split!r}; valid: val, test")
    trainer = _trainer(precision, enable_progress_bar=False, enable_checkpointing=False)
    module = Classifier(model, tta=tta)
    evaluate_split = trainer.test if split == "test" else trainer.validate
    with _quiet():
        metrics = evaluate_split(module, datamodule=data, verbose=False)[0]
    model.eval()
    return {"loss": metrics[f"{split}_loss"], "acc": metrics[f"{split}_acc"],
            "images": len(getattr(data, split))}


def predict(model: nn.Module, data: ImageDataModule, precision: str = "auto",
            tta: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Class probabilities (flip-averaged with ``tta``) and true labels for every test image,
    on the CPU."""
    trainer = _trainer(precision, enable_progress_bar=False, enable_checkpointing=False)
    with _quiet():
        batches = trainer.predict(Classifier(model, tta=tta), datamodule=data)
    model.eval()
    probabilities = torch.cat([p.cpu() for p, _ in batches])
    labels = torch.cat([y.cpu() for _, y in batches])
    return probabilities, labels
