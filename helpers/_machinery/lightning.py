"""Lightning plumbing that a learner never needs to read.

Quieter logs and warnings, the progress bar, a checkpoint writer that never leaves half a file,
checkpoint callbacks that do not depend on where the run folder is, the Trainer's fixed
settings, and log folders that a resumed run adds beside the earlier ones."""

from __future__ import annotations

import contextlib
import logging
import shutil
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint, TQDMProgressBar
from pytorch_lightning.callbacks.progress.tqdm_progress import Tqdm
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger
from pytorch_lightning.plugins.io import TorchCheckpointIO
from pytorch_lightning.utilities.exceptions import MisconfigurationException

from . import config, files

# Lightning's start-up banners ("GPU available: ...", tips) are noise in a notebook.
for _name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
    logging.getLogger(_name).setLevel(logging.WARNING)


@contextlib.contextmanager
def quiet():
    """Silence Lightning's and torch's warnings about what is done on purpose here: deprecations
    inside Lightning itself, logs written into a run folder before its checkpoints, and DDP's
    notes on channels_last gradients."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
        warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not")
        # several processes (DDP): channels_last weights of one input channel have gradients
        # whose strides DDP does not expect (a copy, not an error); and Lightning's all_gather
        warnings.filterwarnings("ignore", message=r"Grad strides do not match bucket view")
        warnings.filterwarnings("ignore", message=r".*all_gather is deprecated")
        yield


class ProgressBar(TQDMProgressBar):
    """Lightning's training bar (rate, time left, metrics, accuracies in percent) without the
    logger version number, and without bars for the short validation and test passes."""

    def get_metrics(self, trainer, module):
        items = super().get_metrics(trainer, module)
        items.pop("v_num", None)
        return {name: f"{100 * value:.1f}%" if name.endswith("_acc") and isinstance(value, float)
                else value for name, value in items.items()}

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
    killed process leaves behind), and saying so when the disk is full."""

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        files.save_torch(checkpoint, path)


class FolderCheckpoint(ModelCheckpoint):
    """Lightning's checkpoint callback, writing ``<folder>/<name>.ckpt``, whose saved state does
    not depend on the folder's absolute path. Lightning drops its record of the best epoch when
    a run resumes from another path (the folder moved or renamed, ``saved_models/`` on a new
    machine), and the next epoch would then count as the best; here the recorded paths are
    taken to mean this folder's files of the same names. ``before_saving`` is called before
    every write (the run folder's lock check: it raises if the lock was lost)."""

    def __init__(self, folder: Path, name: str, before_saving=lambda: None, **options):
        super().__init__(dirpath=folder, filename=name, save_on_train_epoch_end=True,
                         enable_version_counter=False, **options)
        self._before_saving = before_saving

    def _save_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        self._before_saving()
        super()._save_checkpoint(trainer, filepath)

    def load_state_dict(self, state_dict: dict) -> None:
        here = Path(self.dirpath)

        def moved(path):
            return str(here / Path(path).name) if path else path

        state = dict(state_dict, dirpath=str(here))
        for key in ("best_model_path", "kth_best_model_path", "last_model_path"):
            if key in state:
                state[key] = moved(state[key])
        if "best_k_models" in state:
            state["best_k_models"] = {moved(path): score
                                      for path, score in state["best_k_models"].items()}
        super().load_state_dict(state)


PRECISIONS = ("auto", "32-true", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64-true")


def check_precision(owner: str, precision) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"{owner}: precision={precision!r} is not valid; valid: "
                         f"{', '.join(PRECISIONS)} ('auto': this machine's, see config.precision)")


def trainer(precision: str, **options) -> pl.Trainer:
    """A Trainer on this machine's device with the course's fixed settings; ``options`` (e.g.
    callbacks, loggers, ``devices=4, strategy="ddp"``) go to ``pl.Trainer``. Options it
    refuses (a device this machine lacks, ``devices=0``) are a ValueError naming them."""
    check_precision("Trainer", precision)
    given = {key: value for key, value in options.items()
             if key in ("accelerator", "devices", "num_nodes", "strategy", "profiler")}
    options.setdefault("accelerator", config.device_type())
    options.setdefault("devices", 1)
    options.setdefault("logger", False)
    options.setdefault("enable_progress_bar", True)
    options.setdefault("benchmark", options["accelerator"] == "cuda")  # cuDNN picks its fastest
    try:
        return pl.Trainer(precision=config.precision() if precision == "auto" else precision,
                          enable_model_summary=False, num_sanity_val_steps=0,
                          plugins=[AtomicCheckpointIO()], **options)
    except (MisconfigurationException, ImportError, ValueError, TypeError, RuntimeError) as error:
        raise ValueError(f"the Trainer options {given} do not work on this machine: "
                         f"{type(error).__name__}: {error}") from None


def loggers(folder: Path, resuming: bool) -> list:
    """CSV and TensorBoard loggers writing into ``folder/logs``. Lightning's CSV logger deletes
    an existing metrics.csv, so a resumed attempt logs into ``csv-2``, ``csv-3``, ... beside it.
    Starting afresh, the logs of an attempt stopped before its first checkpoint are removed
    first, so TensorBoard cannot show the dead attempt's curve beside the new one."""
    if not resuming:
        shutil.rmtree(Path(folder) / "logs", ignore_errors=True)
    attempt = len(list(Path(folder).glob("logs/csv*"))) + 1 if resuming else 1
    version = "csv" if attempt == 1 else f"csv-{attempt}"
    return [CSVLogger(folder, name="logs", version=version),
            TensorBoardLogger(folder, name="logs", version="tensorboard")]


def gathered_in_order(module: pl.LightningModule, parts: list) -> torch.Tensor:
    """The test probabilities of every process, back in the test split's order (process r
    tested images r, r + n, r + 2n, ... of n processes), on every process, as float16."""
    local = torch.cat(parts).float().to(module.device)
    counts = module.all_gather(torch.tensor(len(local), device=module.device)).tolist()
    padded = torch.zeros(max(counts), local.shape[1], device=module.device)
    padded[:len(local)] = local
    shares = module.all_gather(padded)
    whole = torch.empty(sum(counts), local.shape[1])
    for rank, count in enumerate(counts):
        whole[rank::len(counts)] = shares[rank, :count].cpu()
    return whole.to(torch.float16)
