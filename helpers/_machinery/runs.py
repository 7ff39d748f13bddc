"""Run folders: one run per folder, bound to the settings it was trained with.

:func:`training.fit` trains into ``<runs dir>/<name>/``. This module keeps that folder honest:

* a run name is a name (letters, digits, ``-``, ``_``, ``.``), never a path, so nothing is ever
  written or deleted outside the run's own folder;
* ``definition.json``, written before the first step, says what defines the run (model, data,
  augmentation, recipe, epochs, seed, precision); starting the run again with other settings is
  an error that names the differences, never a silent resume or load;
* one process at a time trains into a folder: a lock that the operating system releases when
  its process ends, however it ends;
* ``run.json`` is written last: a run is complete when, and only when, it exists.

A finished run (:class:`Run`) is the model with its history and its run record.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import re
import shutil
import socket
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from . import config, files

DEFINITION, RECORD, HISTORY, LOCK = "definition.json", "run.json", "history.csv", ".lock"
BEST, LAST, LOGS = "best.ckpt", "last.ckpt", "logs"
WEIGHTS, PROBABILITIES = "weights.pt", "test_probabilities.pt"
# Everything a run writes into its folder; nothing else is ever deleted from it.
RUN_FILES = (DEFINITION, RECORD, HISTORY, LOCK, BEST, LAST, LOGS, WEIGHTS, PROBABILITIES)

# A recipe's description: prose, not a setting, so not part of a run's definition.
PROSE = ("description",)

_NAME = re.compile(r"[A-Za-z0-9._-]+")


class CheckpointError(RuntimeError):
    """A checkpoint or run file that cannot be used; the message names it and the remedy."""


class DefinitionMismatch(ValueError):
    """A run folder holds a run defined differently from the one asked for."""


class RunInUse(RuntimeError):
    """Another process is training into the run folder."""


# Folders of saved_models/ that the course keeps for itself (each mode's runs, the exercise
# runs and records, the sweeps, and 'quick', the smoke mode's old name): a run by such a name
# would be mixed with them, git-ignored, or deleted by make clean.
RESERVED_NAMES = ("cpu", "smoke", "quick", "exercises", "exercise-records", "sweeps",
                  "README.md")


def check_name(name, what: str = "run name") -> str:
    """``name`` if it is a valid run or folder name, else a ValueError saying what one is."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name.startswith("."):
        raise ValueError(f"{what} {name!r} is not a valid name: use letters, digits, '-', '_' "
                         f"and '.' only, not starting with '.' (no '/'), e.g. 'allcnn-c64-s0'. "
                         f"It names a folder under the runs directory; it is never a path.")
    if name.lower() in (reserved.lower() for reserved in RESERVED_NAMES):
        raise ValueError(f"{what} {name!r} is a folder the course uses for itself "
                         f"({', '.join(RESERVED_NAMES)}); choose another, e.g. '{name}-run'.")
    return name


# --- what defines a run --------------------------------------------------------------------

def _plain(value):
    """``value`` as JSON would give it back (tuples become lists), for comparisons."""
    return json.loads(json.dumps(value, default=str))


def settings(model: dict, data=None, recipe=None, seed: int = 0) -> dict:
    """What decides a run's weights, read without loading any data: the model's own definition
    (:func:`helpers.models.definition`), the data set and how it is cut and seen, the recipe
    (its ``description`` is prose, not a setting, and is left out) and the seed. Without
    ``data`` or ``recipe`` they are left out too (and not compared)."""
    defined = {"model": model}
    if data is not None:
        defined["data"] = {"name": data.name, "split_seed": data.seed, "augment": data.augment,
                           "size": data.size, "channels": data.channels,
                           "test_every_epoch": data.test_every_epoch}
    if recipe is not None:
        defined["recipe"] = {k: v for k, v in dataclasses.asdict(recipe).items() if k not in PROSE}
    defined["seed"] = seed
    return _plain(defined)


def definition(model: dict, data, recipe, epochs: int, seed: int, precision: str) -> dict:
    """What defines a run: change any of it and it is another run. Its :func:`settings`, and
    what only a run that has its data knows: the images of each part and whether they are the
    smoke mode's stand-in; then its epochs and precision."""
    data.setup()
    defined = settings(model, data, recipe, seed)
    defined["data"] = {"name": data.name, "stand_in": data.train.is_stand_in,
                       "images": {"train": len(data.train), "val": len(data.val),
                                  "test": len(data.test)},
                       **{key: value for key, value in defined["data"].items() if key != "name"}}
    return {"model": defined["model"], "data": defined["data"], "recipe": defined["recipe"],
            "epochs": epochs, "seed": seed, "precision": precision}


def run_precision(folder: Path, precision: str = "auto") -> str:
    """The precision the run in ``folder`` trains in: ``precision`` as given, or for "auto" the
    run's own when the folder holds one (so that a run begun on other hardware goes on as it
    began), else this machine's (:func:`~helpers._machinery.config.precision`)."""
    if precision != "auto":
        return precision
    return (saved_definition(folder) or {}).get("precision") or config.precision()


def saved_definition(folder: Path) -> dict | None:
    """The definition of the run in ``folder`` (its ``definition.json``); None if the folder
    holds no run."""
    folder = Path(folder)
    if (folder / DEFINITION).exists():
        return _read_json(folder / DEFINITION)
    if any((folder / name).exists() for name in (LAST, BEST, WEIGHTS, RECORD)):
        raise DefinitionMismatch(
            f"{folder} holds a run but no record of the settings it was trained with, so "
            f"it cannot be resumed or loaded safely. Train under another name, or pass "
            f"overwrite=True (scripts/train.py: --overwrite) to delete it and train afresh.")
    return None


def differences(saved: dict, wanted: dict, fields=None, prefix: str = "",
                labels: tuple[str, str] = ("in the folder", "now")) -> list[str]:
    """Lines 'field: saved value (in the folder) vs wanted value (now)' for every leaf that
    differs; only ``fields`` (top-level names) when given; ``labels`` name the two sides. A field
    the saved definition does not have (an older record) is not compared."""
    lines = []
    for key, value in wanted.items():
        if (fields is not None and not prefix and key not in fields) or key not in saved:
            continue
        old = saved[key]
        if isinstance(value, dict) and isinstance(old, dict):
            lines += differences(old, value, None, f"{prefix}{key}.", labels)
        elif old != value:
            lines.append(f"{prefix}{key}: {old!r} {labels[0]} vs {value!r} {labels[1]}")
    return lines


def mismatch(folder: Path, wanted: dict, fields=None, record: str = DEFINITION) -> list[str]:
    """The one check of "is this folder the same run": how the settings ``folder`` is bound to
    (its ``record``: a run's ``definition.json``, a sweep's ``sweep.json``) differ from
    ``wanted``, one line per difference (only in ``fields`` when given); [] when they agree or
    the folder holds nothing yet."""
    saved = saved_definition(folder) if record == DEFINITION else saved_record(folder, record)
    return [] if saved is None else differences(saved, wanted, fields)


def check_same_run(folder: Path, wanted: dict, fields=None, record: str = DEFINITION) -> None:
    """Raise :class:`DefinitionMismatch` if ``folder`` is bound to settings other than
    ``wanted`` (:func:`mismatch`), naming each difference and the remedies."""
    lines = mismatch(folder, wanted, fields, record)
    if not lines:
        return
    if record == DEFINITION:
        state = "a finished" if is_complete(folder) else "an interrupted"
        held = f"{state} run with other settings"
        remedy = ("Train under another name, or delete that run and train afresh: pass "
                  "overwrite=True (scripts/train.py: --overwrite), or remove the folder.")
    else:
        held = "a sweep with another SweepSettings"
        remedy = "Run this sweep into another folder (or delete that one to start it afresh)."
    raise DefinitionMismatch(f"{folder} holds {held}:\n  " + "\n  ".join(lines) + "\n" + remedy)


def saved_record(folder: Path, record: str) -> dict | None:
    """The settings record ``record`` of ``folder`` (a sweep's ``sweep.json``); None if absent."""
    path = Path(folder) / record
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as error:
        raise CheckpointError(f"{path} is unreadable ({error}); restore it, or run the sweep "
                              f"into another folder.") from error


def definition_text(definition: dict) -> str:
    """A definition as one canonical string: what a run's checkpoints carry to say whose they
    are (compared with the folder's definition before resuming)."""
    return json.dumps(definition, sort_keys=True)


def write_definition(folder: Path, wanted: dict) -> None:
    files.write_text(Path(folder) / DEFINITION, json.dumps(wanted, indent=1))


# --- the folder: one writer, complete only when whole ---------------------------------------

try:
    import fcntl

    def _try_lock(handle) -> bool:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock(handle) -> None:
        fcntl.flock(handle, fcntl.LOCK_UN)
except ImportError:  # Windows
    import msvcrt

    # Windows locks a byte range, which other processes then cannot read: every process locks
    # the same byte, far past the holder's line.
    _LOCKED_BYTE = 1 << 20

    def _try_lock(handle) -> bool:
        handle.seek(_LOCKED_BYTE)
        try:
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(handle) -> None:
        handle.seek(_LOCKED_BYTE)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)


class LockLost(RuntimeError):
    """A run folder's lock file was removed or replaced, or the folder deleted, while its
    holder trained: another process may have written there since."""


# never follow a link, never wait on a FIFO (neither flag exists on Windows)
_NO_FOLLOW_NO_WAIT = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)


def _open_regular(path: Path, writable: bool = True, what: str = "the run's lock file"):
    """``path`` opened without following a symbolic link and without blocking on a FIFO, and
    only if it is a regular file: anything else is an error naming it (as ``what``)."""
    flags = (os.O_RDWR | os.O_CREAT if writable else os.O_RDONLY) | _NO_FOLLOW_NO_WAIT
    try:
        descriptor = os.open(path, flags, 0o644)
    except OSError as error:
        if error.errno not in (errno.ELOOP, errno.EISDIR):
            raise
        descriptor = None
    if descriptor is None or not stat.S_ISREG(os.fstat(descriptor).st_mode):
        if descriptor is not None:
            os.close(descriptor)
        raise CheckpointError(f"{path} is not a regular file (a symbolic link, a FIFO, a folder "
                              f"or a device), so it cannot be {what}; delete it (the run's "
                              f"other files are untouched) and start again.")
    # a garbled holder line is only text to show: it must not stop anyone
    return os.fdopen(descriptor, "r+" if writable else "r", errors="replace")


def check_own_files(folder: Path) -> None:
    """Raise :class:`CheckpointError` if any of a run's files or folders in ``folder`` (its
    logs included) is a symbolic link, or a file is not a regular one (a FIFO, which would
    block whoever reads it): a run reads and writes its own folder's files and nothing else."""
    folder = Path(folder)
    special = [folder / name for name in RUN_FILES if (folder / name).exists()
               and not (folder / name).is_symlink() and not (folder / name).is_file()
               and not (name == LOGS and (folder / name).is_dir())]
    if special:
        raise CheckpointError(f"{special[0]} is not a regular file (a FIFO, a folder or a "
                              f"device), so it cannot be one of the run's files, and reading it "
                              f"could block. Delete it and start again.")
    linked = [folder / name for name in RUN_FILES if (folder / name).is_symlink()]
    if (folder / LOGS).is_dir() and not (folder / LOGS).is_symlink():
        for parent, names, file_names in os.walk(folder / LOGS):
            linked += [Path(parent) / n for n in names + file_names
                       if (Path(parent) / n).is_symlink()]
    if linked:
        raise CheckpointError(f"{linked[0]} is a symbolic link: a run folder holds its own "
                              f"files, and nothing is read or written through a link out of it. "
                              f"Replace the link by the file it points to, or delete it, and "
                              f"start again.")


class HeldLock:
    """The lock of a run folder, held by this process (see :func:`lock`)."""

    def __init__(self, folder: Path, handle):
        self.folder, self.path, self._handle = folder, folder / LOCK, handle
        held = os.fstat(handle.fileno())
        self._identity = (held.st_dev, held.st_ino)

    def check(self) -> None:
        """Raise :class:`LockLost` unless ``.lock`` is still the file this process locked and
        the folder holds no symbolic link (called before every checkpoint and result is
        written)."""
        try:
            now = os.stat(self.path, follow_symlinks=False)
        except FileNotFoundError:
            now = None
        if now is None or (now.st_dev, now.st_ino) != self._identity:
            what = "was deleted" if not self.folder.exists() else (
                "lost its lock file" if now is None else "had its lock file replaced")
            raise LockLost(f"{self.folder} {what} while this process trained into it, so another "
                           f"process may have written there since; this one stopped without "
                           f"writing anything more. Look at the folder, then start the run "
                           f"again: it resumes from its last completed epoch (or pass "
                           f"overwrite=True to train afresh).")
        check_own_files(self.folder)


@contextlib.contextmanager
def lock(folder: Path) -> Iterator[HeldLock]:
    """Hold ``folder``'s lock: a second process asking for it gets :class:`RunInUse` at once.

    The lock is the operating system's lock on ``.lock``, released when its process ends,
    however it ends; the file keeps the holder's process id, so a lock file left by a killed
    process is taken over with one line saying so. The file itself stays (deleting it would
    let two processes lock two different files: the holder notices, see
    :meth:`HeldLock.check`). A ``.lock`` that is a symbolic link, a FIFO or any other
    non-regular file is refused, as is a run file or log that is a symbolic link."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    handle = _open_regular(folder / LOCK)
    try:
        holder = handle.read().strip()
        if not _try_lock(handle):
            raise RunInUse(f"{folder} is in use: another process is training into it "
                           f"({holder or 'process unknown'}). Wait for it to finish, or train "
                           f"under another name.")
        try:
            check_own_files(folder)
            if holder:
                print(f"{folder}: taking over the lock left by a process that no longer runs "
                      f"({holder}).")
            # written past Python's buffer, so that a full disk fails here, once, by name
            line = (f"process {os.getpid()} on {socket.gethostname()} since "
                    f"{datetime.now(timezone.utc).isoformat(timespec='seconds')}")
            os.ftruncate(handle.fileno(), 0)
            try:
                os.lseek(handle.fileno(), 0, os.SEEK_SET)
                os.write(handle.fileno(), line.encode())
            except OSError as error:
                files.raise_if_disk_full(error, folder / LOCK, "Nothing was trained or written.")
                raise
            yield HeldLock(folder, handle)
        finally:
            os.ftruncate(handle.fileno(), 0)  # released cleanly: nothing to take over
            _unlock(handle)
    finally:
        handle.close()  # closing releases the lock


def in_use(folder: Path) -> str | None:
    """Who is training into ``folder`` now (its lock holder's line), or None when no live
    process holds its lock. It takes the lock for an instant to find out, so that a second
    ``make reference`` leaves a run that another one is training alone."""
    path = Path(folder) / LOCK
    if not path.exists() and not path.is_symlink():
        return None
    # read only: a checkout that cannot be written to works too
    with _open_regular(path, writable=False) as handle:
        holder = handle.read().strip()
        if not _try_lock(handle):
            return holder or "process unknown"
        _unlock(handle)
        return None


def is_complete(folder: Path) -> bool:
    """Whether ``folder`` holds a finished run (its run record is written last)."""
    return (Path(folder) / RECORD).exists()


def keeps_nothing(folder: Path) -> bool:
    """Whether ``folder`` holds a run definition but no trained epoch and no result: what an
    attempt stopped before its first epoch (or by an error before training) leaves. Another
    run may start there: nothing would be lost."""
    folder = Path(folder)
    return (folder / DEFINITION).exists() and not any(
        (folder / name).exists() for name in (LAST, BEST, WEIGHTS, RECORD, HISTORY))


def remove_stray_parts(folder: Path) -> list[Path]:
    """Delete the temporary files of writes that a killed process left in ``folder`` (call
    while holding its lock: then no write is in progress)."""
    stray = [path for path in Path(folder).rglob(".*.part") if path.is_file() or path.is_symlink()]
    for path in stray:
        path.unlink(missing_ok=True)
    return stray


def clear(folder: Path) -> None:
    """Delete the run in ``folder`` (its own files only); a folder that holds anything else is
    not a run folder and is left alone, with an error."""
    folder = Path(folder)
    if not folder.exists():
        return
    foreign = sorted(p.name for p in folder.iterdir() if p.name not in RUN_FILES)
    if foreign:
        raise ValueError(f"{folder} is not a run folder (it holds {', '.join(foreign[:5])}"
                         f"{', ...' if len(foreign) > 5 else ''}); nothing was deleted. "
                         f"Train under another name.")
    for name in RUN_FILES:
        path = folder / name
        if name == LOCK:
            continue
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


# --- a finished run ---------------------------------------------------------------------------

class Record(dict):
    """A run record: the dict written to ``run.json`` (or, for a checkpoint without one, where
    it came from), with properties for the questions notebooks ask of it."""

    @property
    def is_published(self) -> bool:
        """A checkpoint downloaded from its publisher, not trained by the course."""
        return bool(self.get("url"))

    @property
    def is_smoke_run(self) -> bool:
        """Trained in smoke mode or on the synthetic stand-in: proves the code runs, no more."""
        return bool(self.get("smoke_run"))

    @property
    def smoke_label(self) -> str:
        """' — SMOKE RUN (mode, data): not a result' to append to the title or caption of what a
        smoke run shows; empty for any other run."""
        if not self.is_smoke_run:
            return ""
        return f" — SMOKE RUN ({self['mode']} mode, {self['data_source']}): not a result"

    @property
    def is_result(self) -> bool:
        """Trained by the course, on real data, in full mode: its numbers are results."""
        return "test_acc" in self and not self.is_smoke_run

    @property
    def data(self) -> str | None:
        """The data set's name (None for a published checkpoint)."""
        return self.get("data")

    @property
    def epochs(self) -> int | None:
        """The epochs the run was planned for (None for a published checkpoint)."""
        return self.get("epochs")

    @property
    def test_acc(self) -> float | None:
        """Test accuracy of the best-validation weights (None for a published checkpoint)."""
        return self.get("test_acc")


@dataclass
class Run:
    """A trained (or loaded) model with its history and its run record."""
    name: str
    model: nn.Module
    history: pd.DataFrame | None
    info: Record
    directory: Path

    def __post_init__(self):
        self.info = Record(self.info)

    def test_probabilities(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(probabilities as float32, labels) of every test image under the best weights, as
        the run recorded them; None if it recorded none."""
        path = Path(self.directory) / PROBABILITIES
        check_own_files(self.directory)
        if not path.exists():
            return None
        check_checksum(self.directory, self.info, PROBABILITIES)
        try:
            saved = files.load_torch(path)
            return saved["probabilities"].float(), saved["labels"]
        except Exception as error:  # a damaged file: say which
            raise CheckpointError(f"{path} is unreadable ({type(error).__name__}: {error}). "
                                  f"{_remedy(Path(self.directory))}") from error

    @property
    def wall_minutes(self) -> float | None:
        return wall_minutes(self.info)

    @property
    def provenance(self) -> str:
        """What this run's numbers are: data, recipe, hardware and date, or 'SMOKE RUN'."""
        info = self.info
        if "test_acc" not in info:  # a checkpoint without a run record: downloaded, or copied
            if info.is_published:
                return f"published checkpoint {info['url']}, not trained by the course"
            return f"checkpoint {info.get('checkpoint', self.directory)} without a run record"
        if info.is_smoke_run:
            return info.smoke_label.removeprefix(" — ")
        train = (info.get("images") or {}).get("train")
        data = f"{info['data']} ({train:,} training images)" if train else info["data"]
        return (f"{data}, recipe {info['recipe']['name']}, {info['epochs']} epochs, "
                f"{info['hardware']}, {info['date'][:10]}")


def check_resumable(folder: Path, definition: dict) -> None:
    """Before an interrupted run resumes: raise a :class:`CheckpointError` naming a damaged,
    missing or foreign checkpoint (one another run wrote: its recorded definition is not
    ``definition``) and the remedy, so that it fails now, not after training every epoch (the
    final test reads ``best.ckpt``) and again on every rerun."""
    folder = Path(folder)
    if not (folder / LAST).exists():
        return  # nothing to resume: the run starts from its first epoch, writing both anew
    for name in (LAST, BEST):
        path = folder / name
        problem = "is missing" if not path.exists() else None
        if problem is None:
            try:
                state = files.load_torch(path, mmap=True)
                if not (isinstance(state, dict) and "state_dict" in state and "epoch" in state):
                    problem = "is not a Lightning checkpoint"
                elif state.get("run_definition") not in (None, definition_text(definition)):
                    problem = ("was written by another run (its settings are not this "
                               "folder's definition.json)")
            except Exception as error:  # truncated, garbled, not a zip: all mean damaged
                problem = f"is damaged ({type(error).__name__}: {str(error)[:120]})"
        if problem:
            remedy = ("delete it to train the run again from its first epoch" if name == LAST
                      else "the best epoch's weights are lost with it")
            raise CheckpointError(
                f"{path} {problem}, so the interrupted run in {folder} cannot resume: {remedy}, "
                f"or pass overwrite=True to train it afresh (nothing has been trained yet).")


def _last_checkpoint(folder: Path) -> dict | None:
    """The interrupted run's last checkpoint in ``folder``, or None without a readable one
    (resuming it then says what is wrong)."""
    path = Path(folder) / LAST
    if not path.exists():
        return None
    try:
        state = files.load_torch(path, mmap=True)
    except Exception:  # damaged: check_resumable names it
        return None
    return state if isinstance(state, dict) else None


def recorded_layout(folder: Path) -> bool | None:
    """Whether the interrupted run in ``folder`` trains channels-last (its last checkpoint
    says); None without a checkpoint that says."""
    return (_last_checkpoint(folder) or {}).get("channels_last")


def recorded_dense_kernels(folder: Path) -> bool | None:
    """Whether the interrupted run in ``folder`` trains its dense blocks through the course's
    C++ kernels (its last checkpoint says; one from before they existed trained without);
    None without a readable checkpoint."""
    checkpoint = _last_checkpoint(folder)
    return None if checkpoint is None else bool(checkpoint.get("dense_kernels", False))


def epochs_done(folder: Path) -> int:
    """How many epochs an interrupted run has completed (the history in its last checkpoint);
    0 without one, or with one that cannot be read (resuming it then says what is wrong)."""
    try:
        return len(_last_checkpoint(folder)["callbacks"]["History"]["rows"])
    except (TypeError, KeyError):  # an estimate only: never fail here
        return 0


def wall_minutes(info: dict) -> float | None:
    """How long a run took, in minutes, from its record (None when it was not recorded)."""
    seconds = info.get("wall_seconds")
    return None if seconds is None else round(seconds / 60, 1)


def _read_json(path: Path) -> dict:
    try:
        with _open_regular(Path(path), writable=False, what="a run's record") as handle:
            value = json.loads(handle.read())
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{path} is unreadable ({type(error).__name__}: {error}). "
                              f"{_remedy(path.parent)}") from error
    if not isinstance(value, dict):
        raise CheckpointError(f"{path} does not hold a record. {_remedy(path.parent)}")
    return value


def _remedy(folder: Path) -> str:
    return (f"Restore it (e.g. `git checkout -- {folder}` for a run the course ships), or train "
            f"the run again with overwrite=True (deletes {folder}).")


def read_record(folder: Path) -> tuple[dict, pd.DataFrame | None]:
    """The run record and history of the finished run in ``folder``, checked: an unreadable
    record, or a history that is missing, unreadable or shorter than the record says, is a
    :class:`CheckpointError` naming the file."""
    folder = Path(folder)
    check_own_files(folder)
    info = _read_json(folder / RECORD)
    if "test_acc" not in info and not (folder / DEFINITION).exists():
        return info, None  # a record of a published checkpoint: no history of ours
    if not isinstance(info.get("test_acc"), (int, float)):
        raise CheckpointError(f"{folder / RECORD} does not hold a finished run's results (no "
                              f"test accuracy). {_remedy(folder)}")
    path = folder / HISTORY
    if path.exists():
        check_checksum(folder, info, HISTORY)
    try:
        history = pd.read_csv(path)
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{path} is missing or unreadable ({type(error).__name__}). "
                              f"{_remedy(folder)}") from error
    epochs = info.get("epochs_trained")
    complete = ("epoch" in history and "val_acc" in history
                and history["epoch"].tolist() == list(range(1, len(history) + 1))
                and len(history) == epochs and history["val_acc"].notna().all())
    if not complete:
        raise CheckpointError(f"{path} is truncated or damaged: {len(history)} epoch row(s), "
                              f"the run record says {epochs}. {_remedy(folder)}")
    return info, history


def load_weights(path: str | Path, model: nn.Module, sha256: str | None = None) -> dict:
    """Load a checkpoint's weights into ``model`` (strictly) and return the checkpoint.

    Accepts a plain state dict, or a Lightning checkpoint of the course's classifier (whose
    ``state_dict`` keys start with ``model.``)."""
    path = Path(path)
    remedy = f"Delete {path} and run again to download or train it afresh."
    if sha256 and (actual := files.sha256(path)) != sha256:
        raise CheckpointError(f"{path} has sha256 {actual}, expected {sha256}: it is corrupt or "
                              f"not the published file. {remedy}")
    try:
        checkpoint = files.load_torch(path)
    except Exception as error:  # torch raises many types for a damaged file
        raise CheckpointError(f"{path} is not a readable checkpoint "
                              f"({type(error).__name__}: {error}). {remedy}") from error
    lightning = isinstance(checkpoint, dict) and isinstance(checkpoint.get("state_dict"), dict)
    state = checkpoint["state_dict"] if lightning else checkpoint
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds no state dict. {remedy}")
    if lightning and state and all(key.startswith("model.") for key in state):
        state = {key[len("model."):]: value for key, value in state.items()}  # the Classifier's
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"{path} does not fit this model ({error}). Check the model's "
                              f"hyper-parameters, or {remedy[0].lower()}{remedy[1:]}") from error
    return checkpoint


def save_weights(folder: Path, model: nn.Module) -> None:
    """``model``'s weights as a plain state dict (no optimizer state): what a finished run
    ships, loadable with ``torch.load(..., weights_only=True)``."""
    files.save_torch(model.state_dict(), Path(folder) / WEIGHTS)


def save_test_probabilities(folder: Path, probabilities: torch.Tensor,
                            labels: torch.Tensor) -> None:
    """The best weights' class probabilities (float16) for every test image, with the labels:
    notebooks draw confusion matrices and galleries from them without evaluating again."""
    if len(probabilities) != len(labels):
        raise ValueError(f"{len(probabilities)} probabilities for {len(labels)} test images")
    files.save_torch({"probabilities": probabilities.to(torch.float16).cpu(),
                      "labels": labels.cpu()}, Path(folder) / PROBABILITIES)


CHECKED = (WEIGHTS, PROBABILITIES, HISTORY)  # the files a run record binds by checksum


def checksums(folder: Path) -> dict:
    """The sha256 of each of a finished run's :data:`CHECKED` files, kept in its record."""
    return {name: files.sha256(Path(folder) / name) for name in CHECKED
            if (Path(folder) / name).exists()}


def check_checksum(folder: Path, info: dict, name: str) -> None:
    """Raise :class:`CheckpointError` unless ``name`` is the file the run record ``info``
    binds by its sha256."""
    path = Path(folder) / name
    if not path.exists():
        raise CheckpointError(f"{path} is missing. {_remedy(Path(folder))}")
    expected = (info.get("files") or {}).get(name)
    if expected is None or files.sha256(path) != expected:
        how = ("run.json binds no such file" if expected is None
               else "its sha256 differs from run.json's")
        raise CheckpointError(f"{path} is not the file this run recorded ({how}): it was "
                              f"replaced, damaged or copied in. {_remedy(Path(folder))}")


def load(folder: Path, model: nn.Module) -> Run:
    """The finished run in ``folder``: its best weights (``weights.pt``) loaded into ``model``
    in eval mode, its history and its record."""
    folder = Path(folder)
    info, history = read_record(folder)
    check_checksum(folder, info, WEIGHTS)
    load_weights(folder / WEIGHTS, model)
    model.eval()
    return Run(folder.name, model, history, info, folder)
