"""The course's own fault-injection pass (issue 26): does anything lose, mix or hide work?

    .venv/bin/python scripts/fault_injection.py [--only CATEGORY] [--quick] [--keep]

Every case runs in a temporary folder of its own, in smoke mode, offline, on one thread, with
a tiny run (AllCNN c=8 on 128 images of the CIFAR-10 stand-in, 3 epochs of 4 steps) and does
what a careless user or a hostile file would: kills (SIGKILL at chosen and at seeded random
moments, SIGINT, SIGTERM, kills of a sweep), a full disk, damaged run folders, two writers,
bad arguments to every public function, a bad environment and hostile files. A run that is
disturbed and started again is compared, exactly (history, test accuracy, weights, test
probabilities), with one undisturbed twin of the same run.

It prints one line per case, ``category | case | verdict | detail``, then the counts per
category and verdict. Good verdicts:

* OK-ERROR: a clear error (a course error, or a ValueError/TypeError/OSError whose message
  names the problem), and nothing changed;
* OK-RECOVERED: resumed or retried to exactly the twin's result;
* OK: worked as it should;
* SKIPPED: this machine cannot make the fault (e.g. no permission to mount a tmpfs).

Failures (the exit status is 1 if there is any):

* LOST: work lost or mixed: a resumed run that differs from its twin, a finished run deleted
  or trained again, files from another run used, something read or written outside the run;
* RAW: an uncaught traceback, or an error that is not a clear course error;
* ACCEPTED: wrong input silently accepted;
* CHANGED: a clear error, but only after training, or after changing the folder so that the
  correct call fails next;
* HANG: the case did not end within its time limit.

The categories run one after the other, each in a worker process of its own (so that one
crash or hang cannot stop the pass); cases that start processes give each a time limit.
Internally the same file is also the driver those processes run (``--drive``) and the worker
(``--worker``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import hashlib
import io
import json
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
THIS = Path(__file__).resolve()
PYTHON = sys.executable
TRAIN_SCRIPT = ROOT / "scripts" / "train.py"

CATEGORIES = ("kills", "disk-full", "damaged", "concurrency", "arguments", "environment",
              "hostile")
GOOD = ("OK", "OK-ERROR", "OK-RECOVERED", "SKIPPED")
FAILURES = ("LOST", "RAW", "ACCEPTED", "CHANGED", "HANG")
VERDICTS = ("LOST", "RAW", "HANG", "ACCEPTED", "CHANGED", "SKIPPED", "OK-ERROR", "OK-RECOVERED",
            "OK")
BUDGET = {"kills": 420, "disk-full": 200, "damaged": 330, "concurrency": 260, "arguments": 300,
          "environment": 200, "hostile": 240}  # seconds per category worker, at most

BASE_ENV = {"COURSE_MODE": "smoke", "COURSE_OFFLINE": "1", "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg"}
MARK = "@@"  # the driver's markers on stdout


def one_line(text: str, limit: int = 220) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


# ============================================================================================
# The course's code, imported only in the driver and the workers
# ============================================================================================

H = argparse.Namespace()  # the helpers modules, torch and pl, once loaded


def _load_helpers():
    if getattr(H, "loaded", False):
        return
    import pytorch_lightning as pl
    import torch

    from helpers.models import checkered
    from helpers import checkpoints, data, exercises, memory_safe, models, recipes, sweep, training
    from helpers._machinery import config, datasets, downloads, files, runs
    H.__dict__.update(pl=pl, torch=torch, checkered=checkered, checkpoints=checkpoints,
                      config=config, data=data, datasets=datasets, downloads=downloads,
                      exercises=exercises, files=files, memory_safe=memory_safe, models=models,
                      recipes=recipes, runs=runs, sweep=sweep, training=training)
    H.course_errors = (runs.CheckpointError, runs.RunInUse, runs.LockLost,
                       runs.DefinitionMismatch, training.RunInterrupted,
                       training.TrainingDiverged, downloads.ConfigurationError,
                       downloads.DownloadError, datasets.DatasetNotFoundError,
                       memory_safe.DoesNotFit, checkered.ConversionError)

    class Steps(pl.Callback):
        """Counts the training steps a call made (0: it stopped before training)."""

        def __init__(self):
            self.count = 0

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            self.count += 1

    class HookCallback(pl.Callback):
        """Tells an :class:`Injector` where training is."""

        def __init__(self, injector):
            self.injector = injector

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            self.injector.event(f"batch:{trainer.current_epoch}:{batch_idx}")

        def on_train_epoch_end(self, trainer, module):
            self.injector.event(f"epoch-end:{trainer.current_epoch}")

        def on_validation_batch_start(self, trainer, module, batch, batch_idx,
                                      dataloader_idx=0):
            self.injector.event(f"val:{trainer.current_epoch}:{batch_idx}")

        def on_test_batch_start(self, trainer, module, batch, batch_idx, dataloader_idx=0):
            self.injector.event(f"test:{batch_idx}")

    H.Steps, H.HookCallback = Steps, HookCallback
    H.loaded = True


# The run every case trains, disturbs and compares (the same in the driver and the workers).

def make_model(seed: int = 0):
    H.training.seed(seed)
    return H.models.create("allcnn", c=8, num_classes=10, dropout=0.0)


def make_data(**options):
    options.setdefault("subset", (128, 64, 64))
    return H.data.ImageDataModule("CIFAR10", val_size=1000, eval_batch_size=64,
                                  smoke=H.config.is_smoke(), **options)


def make_recipe():
    return H.recipes.get_recipe("sgd-cosine", batch_size=32, epochs=3, lr=0.05)


def fit_run(name="run", seed=0, callbacks=(), overwrite=False, **options):
    return H.training.fit(make_model(seed), make_data(), make_recipe(), name=name, epochs=3,
                          seed=seed, precision="32-true", enable_progress_bar=False,
                          overwrite=overwrite, callbacks=list(callbacks), **options)


def sweep_variants():
    return [H.sweep.Variant(0, 0.0, 4.0, 0.0, tuple([4] * 13 + [8, 8])),
            H.sweep.Variant(1, 1.0, 4.0, 0.0, tuple([6] * 13 + [8, 8]))]


def sweep_settings():
    # sgd-cosine's batch is 128 images: the brief's subset (64, 32, 32) is refused (a case of
    # its own in 'arguments'), so the sweep trains on 128
    return H.sweep.SweepSettings("CIFAR10", "sgd-cosine", epochs=2, subset=(128, 32, 32))


# ============================================================================================
# Injecting a fault at a moment: writes, the lock, training, the final test
# ============================================================================================

class Injector:
    """Does ``action`` once, at the ``n``-th occurrence of an event (``hook`` is
    'EVENT[@n]'). Events: ``lock`` (a run or sweep folder's lock just taken),
    ``write-before:NAME``, ``write-part:NAME`` (the temporary file complete, not yet renamed),
    ``write-half:NAME`` (the same, the temporary file cut to half first),
    ``write-after:NAME`` (renamed into place), ``batch:E:B``, ``epoch-end:E``, ``val:E:B``,
    ``test:B``."""

    def __init__(self, hook: str | None, action):
        key, _, n = (hook or "").partition("@")
        self.key, self.n, self.action = key or None, int(n or 1), action
        self.counts: dict = {}
        self.fired = False

    def event(self, key: str, temporary: Path | None = None) -> None:
        if self.key is None or self.fired:
            return
        self.counts[key] = self.counts.get(key, 0) + 1
        if key == self.key and self.counts[key] == self.n:
            self.fired = True
            if key.startswith("write-half:") and temporary is not None:
                content = Path(temporary).read_bytes()
                Path(temporary).write_bytes(content[:len(content) // 2])
            self.action()

    def install(self):
        """Patch the course's write and lock paths; returns the function that undoes it."""
        files, runs = H.files, H.runs
        original_atomic, original_lock = files.atomic_path, runs.lock
        injector = self

        @contextlib.contextmanager
        def atomic_path(target):
            name = Path(target).name
            injector.event(f"write-before:{name}")
            with original_atomic(target) as temporary:
                yield temporary
                injector.event(f"write-part:{name}")
                injector.event(f"write-half:{name}", temporary)
            injector.event(f"write-after:{name}")

        @contextlib.contextmanager
        def lock(folder):
            with original_lock(folder) as held:
                injector.event("lock")
                yield held

        files.atomic_path, runs.lock = atomic_path, lock

        def undo():
            files.atomic_path, runs.lock = original_atomic, original_lock
        return undo

    def callback(self):
        return H.HookCallback(self)


def _kill_self():
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(30)


def _pause(release: str):
    print(f"{MARK}PAUSED", flush=True)
    deadline = time.time() + 120
    while not os.path.exists(release) and time.time() < deadline:
        time.sleep(0.05)


def _action(spec: dict):
    kind = spec.get("action", "kill")
    if kind == "kill":
        return _kill_self
    if kind in ("sigint", "sigterm"):
        number = signal.SIGINT if kind == "sigint" else signal.SIGTERM
        return lambda: os.kill(os.getpid(), number)
    if kind == "pause":
        return functools.partial(_pause, spec["release"])
    if kind == "mark":  # say that training reached the hook, and go on
        return lambda: print(f"{MARK}AT-HOOK", flush=True)
    raise ValueError(f"unknown action {kind!r}")


def drive(spec: dict) -> None:
    """The process a case starts, kills, signals or pauses: one fit of the run, or one sweep."""
    print(f"{MARK}START", flush=True)
    _load_helpers()
    injector = Injector(spec.get("hook"), _action(spec))
    injector.install()
    if spec.get("sweep"):
        original_fit = H.training.fit

        def fit_with_hook(*args, **kwargs):
            kwargs["callbacks"] = [*kwargs.get("callbacks", []), injector.callback()]
            return original_fit(*args, **kwargs)
        H.training.fit = fit_with_hook
    print(f"{MARK}READY", flush=True)
    try:
        if spec.get("sweep"):
            H.sweep.run_sweep(sweep_variants(), sweep_settings(), Path(spec["directory"]))
        else:
            fit_run(name=spec.get("name", "run"), seed=spec.get("seed", 0),
                    callbacks=[injector.callback()])
    except H.training.RunInterrupted as stop:
        stop.exit()  # its line is printed already, as train.py does
    except (ValueError, TypeError, OSError, *H.course_errors) as error:
        print(MARK + "ERROR " + json.dumps({
            "type": type(error).__name__, "message": str(error),
            "course": isinstance(error, H.course_errors)}), flush=True)
        print(f"driver: error: {error}", file=sys.stderr)
        sys.exit(1)
    print(f"{MARK}DONE", flush=True)


# ============================================================================================
# Cases: their folders, processes, comparisons and judgement
# ============================================================================================

class CaseTimeout(BaseException):
    pass


@dataclasses.dataclass
class Outcome:
    value: object = None
    error: BaseException | None = None
    out: str = ""
    err: str = ""
    tb: str = ""


def attempt(function, *args, **kwargs) -> Outcome:
    """Call ``function``, capturing what it prints and any exception (a timeout passes)."""
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            value = function(*args, **kwargs)
        return Outcome(value, None, out.getvalue(), err.getvalue())
    except CaseTimeout:
        raise
    except BaseException as error:  # noqa: BLE001 (every way out is judged)
        return Outcome(None, error, out.getvalue(), err.getvalue(), traceback.format_exc())


def _where(tb: str) -> str:
    frames = [line.strip() for line in tb.splitlines() if line.strip().startswith('File "')]
    return f" at {one_line(frames[-1], 120)}" if frames else ""


def _missing(text: str, keywords) -> list[str]:
    """The keywords ``text`` does not name; a tuple of alternatives is named by any of them."""
    lowered = text.lower()
    missing = []
    for keyword in keywords:
        options = keyword if isinstance(keyword, tuple) else (keyword,)
        if keyword and not any(str(o).lower() in lowered for o in options):
            missing.append(" or ".join(map(str, options)))
    return missing


def judge(error: BaseException, *keywords, tb: str = "") -> tuple[str, str]:
    """OK-ERROR for a course error, or a ValueError/TypeError/OSError whose message names
    every keyword; RAW for anything else."""
    text = str(error)
    missing = _missing(text, keywords)
    detail = f"{type(error).__name__}: {one_line(text, 200)}"
    if isinstance(error, H.course_errors):
        return "OK-ERROR", detail + (f" [does not name {', '.join(missing)}]" if missing else "")
    if isinstance(error, (ValueError, TypeError, OSError)) and not missing:
        return "OK-ERROR", detail
    why = f" [does not name {', '.join(missing)}]" if missing else " [not a course error]"
    return "RAW", detail + why + _where(tb)


def judge_reported(report: dict, *keywords: str) -> tuple[str, str]:
    """:func:`judge` for an error a driver process reported."""
    text = report["message"]
    missing = _missing(text, keywords)
    detail = f"{report['type']}: {one_line(text, 200)}"
    if report["course"]:
        return "OK-ERROR", detail + (f" [does not name {', '.join(missing)}]" if missing else "")
    if not missing:
        return "OK-ERROR", detail
    return "RAW", detail + f" [does not name {', '.join(missing)}]"


def worst(*verdicts: tuple[str, str]) -> tuple[str, str]:
    ranked = sorted(verdicts, key=lambda v: VERDICTS.index(v[0]))
    return ranked[0]


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def snapshot(path: Path) -> dict:
    """Everything under ``path``, without following links or opening anything but regular
    files: relative path -> (kind, content hash or link target)."""
    found = {}
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return found
    for parent, names, file_names in os.walk(path):
        for name in names + file_names:
            full = Path(parent) / name
            info = os.lstat(full)
            rel = str(full.relative_to(path))
            if stat.S_ISLNK(info.st_mode):
                found[rel] = ("link", os.readlink(full))
            elif stat.S_ISREG(info.st_mode):
                found[rel] = ("file", sha(full))
            elif stat.S_ISDIR(info.st_mode):
                found[rel] = ("dir", "")
            else:
                found[rel] = ("other", oct(info.st_mode))
    return found


def changes(before: dict, after: dict, allowed=()) -> list[str]:
    """What differs, leaving out a lock file's content and removed temporary (.part) files."""
    out = []
    for rel in sorted(set(before) | set(after)):
        name = Path(rel).name
        if name == ".lock" or any(rel == a or rel.startswith(a + "/") for a in allowed):
            continue
        if name.endswith(".part") and rel not in after:
            continue
        if before.get(rel) != after.get(rel):
            what = ("new" if rel not in before else "removed" if rel not in after
                    else "changed")
            out.append(f"{rel} {what}")
    return out


class Ctx:
    """One case's folders: saved/ (SAVED_MODELS_DIR), data/ (DATA_DIR), tmp/ (TMPDIR)."""

    def __init__(self, root: Path, category: str, index: int):
        self.root = root
        self.dir = root / category / f"{index:03d}"
        for sub in ("saved", "data", "tmp"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        self.saved, self.data, self.tmp = (self.dir / s for s in ("saved", "data", "tmp"))
        self.mounts: list[Path] = []

    def folder(self, name="run") -> Path:
        return self.saved / "smoke" / name

    def env(self, **extra) -> dict:
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("COURSE_", "TORCH_FORCE"))}
        env.update(BASE_ENV, SAVED_MODELS_DIR=str(self.saved), DATA_DIR=str(self.data),
                   TMPDIR=str(self.tmp))
        for key, value in extra.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = str(value)
        return env

    @contextlib.contextmanager
    def inproc(self, **extra):
        """This case's environment in this process (a shared, empty DATA_DIR unless given:
        the smoke stand-in is made once per worker)."""
        wanted = {"SAVED_MODELS_DIR": str(self.saved),
                  "DATA_DIR": str(self.root / "shared-data"), **extra}
        previous = {key: os.environ.get(key) for key in wanted}
        for key, value in wanted.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = str(value)
        try:
            yield
        finally:
            for key, value in previous.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def mount(self, *arguments) -> bool:
        done = subprocess.run(["mount", *map(str, arguments)], capture_output=True)
        return done.returncode == 0

    def mount_tmpfs(self, path: Path, size: str = "8M") -> bool:
        path.mkdir(parents=True, exist_ok=True)
        if self.mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", path):
            self.mounts.append(path)
            return True
        return False

    def mount_read_only(self, path: Path) -> bool:
        """``path`` bound onto itself, read-only."""
        if not self.mount("--bind", path, path):
            return False
        self.mounts.append(path)
        return self.mount("-o", "remount,ro,bind", path)

    def unmount(self, path: Path) -> None:
        if path in self.mounts:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)
            self.mounts.remove(path)

    def cleanup(self) -> None:
        for path in reversed(list(self.mounts)):
            self.unmount(path)

    def strays(self, allowed_top=(), runs_kept=("smoke/run",)) -> list[str]:
        """What a case wrote outside its run folder(s): in saved/ beside them, in tmp/ (but
        torch's empty inductor cache folder), in data/, or beside saved/ in the case's folder
        (the processes' working directory)."""
        found = []
        for path in self.saved.rglob("*"):
            rel = str(path.relative_to(self.saved))
            if not any(rel == k or rel.startswith(k + "/") or k.startswith(rel + "/")
                       for k in runs_kept):
                found.append(f"saved/{rel}")
        for path in self.tmp.iterdir():
            if not (path.name.startswith("torchinductor_") and path.is_dir()
                    and not any(path.iterdir())):
                found.append(f"tmp/{path.name}")
        found += [f"data/{p.name}" for p in self.data.iterdir()]
        found += [p.name for p in self.dir.iterdir()
                  if p.name not in ("saved", "data", "tmp", *allowed_top)]
        return found


class Proc:
    """A driver (or script) process with its output collected as it comes."""

    def __init__(self, args, env, cwd):
        self.started = time.monotonic()
        self.p = subprocess.Popen(list(map(str, args)), env=env, cwd=str(cwd),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  start_new_session=True)
        self.out_lines: list[str] = []
        self.err_lines: list[str] = []
        self.readers = [threading.Thread(target=self._read, args=(stream, lines), daemon=True)
                        for stream, lines in ((self.p.stdout, self.out_lines),
                                     (self.p.stderr, self.err_lines))]
        for reader in self.readers:
            reader.start()

    @staticmethod
    def _read(stream, lines):
        for line in stream:
            lines.append(line.rstrip("\n"))

    def wait_for(self, marker: str, timeout: float = 60) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(line.startswith(marker) for line in self.out_lines):
                return True
            if self.p.poll() is not None:
                time.sleep(0.1)
                return any(line.startswith(marker) for line in self.out_lines)
            time.sleep(0.02)
        return False

    def wait(self, timeout: float = 120):
        """The exit status, or None after killing it when it ran past ``timeout``."""
        try:
            rc = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill_group()
            self.p.wait()
            rc = None
        for reader in self.readers:
            reader.join(5)
        return rc

    def signal(self, number) -> None:
        if self.p.poll() is None:
            os.kill(self.p.pid, number)

    def kill_after(self, seconds: float) -> None:
        """SIGKILL ``seconds`` after the process started (unless it ended before)."""
        while time.monotonic() - self.started < seconds and self.p.poll() is None:
            time.sleep(0.01)
        self.signal(signal.SIGKILL)

    def kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.p.pid, signal.SIGKILL)

    @property
    def out(self) -> str:
        return "\n".join(self.out_lines)

    @property
    def err(self) -> str:
        return "\n".join(self.err_lines)

    def error(self) -> dict | None:
        for line in self.out_lines:
            if line.startswith(MARK + "ERROR "):
                return json.loads(line[len(MARK + "ERROR "):])
        return None

    def printed(self) -> list[str]:
        """Lines a user would see on stdout (not the markers, not the stand-in's notice)."""
        return [line for line in self.out_lines
                if line and not line.startswith((MARK, "***"))]


def driver(ctx: Ctx, spec: dict, **env) -> Proc:
    return Proc([PYTHON, THIS, "--drive", json.dumps(spec)], ctx.env(**env), ctx.dir)


def tail(text: str, lines: int = 3) -> str:
    return one_line(" / ".join(text.strip().splitlines()[-lines:]), 300)


# --- the twins: the undisturbed run and sweep, and exact comparisons with them ---------------

HISTORY_COLUMNS = ("epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc")
RECORD_FIELDS = ("test_acc", "test_loss", "best_epoch", "best_val_acc", "epochs_trained",
                 "epochs", "seed", "definition")
SWEEP_COLUMNS = ("variant", "status", "epochs", "best_epoch", "best_val_acc", "test_acc",
                 "best_test_acc", "last_test_acc", "last_train_acc", "train_acc", "val_acc",
                 "test_acc_per_epoch", "micro_batch", "widths", "parameters")


class Twin:
    def __init__(self, folder: Path):
        import pandas as pd
        self.folder = folder
        self.info = json.loads((folder / "run.json").read_text())
        self.history = pd.read_csv(folder / "history.csv")
        self.weights = H.torch.load(folder / "weights.pt", weights_only=True)
        self.probabilities = H.torch.load(folder / "test_probabilities.pt", weights_only=True)

    def _history_diff(self, history) -> list[str]:
        import numpy as np
        if history is None:
            return ["no history"]
        out = []
        for column in HISTORY_COLUMNS:
            if column not in history or len(history) != len(self.history) or not np.array_equal(
                    history[column].to_numpy(), self.history[column].to_numpy()):
                out.append(f"history column {column} differs")
        return out

    def _weights_diff(self, state) -> list[str]:
        torch = H.torch
        if set(state) != set(self.weights):
            return ["weights have other keys"]
        bad = [k for k in state if not torch.equal(state[k].cpu(), self.weights[k])]
        return [f"weights differ ({len(bad)} tensors, e.g. {bad[0]})"] if bad else []

    def diff_info(self, info) -> list[str]:
        return [f"record {key}: {info.get(key)!r} vs twin {self.info.get(key)!r}"[:160]
                for key in RECORD_FIELDS if info.get(key) != self.info.get(key)]

    def diff_run(self, run) -> list[str]:
        """How a Run that fit or load returned differs from the twin."""
        if run is None or not hasattr(run, "model"):
            return [f"returned {type(run).__name__}, not a run"]
        state = {k: v.detach() for k, v in run.model.state_dict().items()}
        return (self._weights_diff(state) + self.diff_info(dict(run.info))
                + self._history_diff(run.history))

    def diff_folder(self, folder: Path) -> list[str]:
        """How a run folder's results differ from the twin's."""
        import pandas as pd
        torch = H.torch
        try:
            info = json.loads((folder / "run.json").read_text())
            history = pd.read_csv(folder / "history.csv")
            weights = torch.load(folder / "weights.pt", weights_only=True)
            probabilities = torch.load(folder / "test_probabilities.pt", weights_only=True)
        except Exception as error:  # noqa: BLE001
            return [f"the folder's results are not readable ({type(error).__name__}: "
                    f"{one_line(error, 80)})"]
        out = self.diff_info(info) + self._history_diff(history) + self._weights_diff(weights)
        if not (torch.equal(probabilities["probabilities"], self.probabilities["probabilities"])
                and torch.equal(probabilities["labels"], self.probabilities["labels"])):
            out.append("test probabilities differ")
        return out


def sweep_table_diff(table, twin_csv: Path) -> list[str]:
    import pandas as pd
    twin = pd.read_csv(twin_csv)
    if table is None or len(table) != len(twin):
        return [f"{0 if table is None else len(table)} rows, the twin has {len(twin)}"]
    mine = pd.read_csv(io.StringIO(table.to_csv(index=False)))  # as the file would hold it
    return [f"column {c} differs" for c in SWEEP_COLUMNS
            if c in twin and (c not in mine or mine[c].astype(str).tolist()
                              != twin[c].astype(str).tolist())]


# ============================================================================================
# kills: SIGKILL at chosen and random moments, SIGINT, SIGTERM, a killed sweep
# ============================================================================================

KILL_HOOKS = ["lock", "write-part:definition.json", "batch:0:2", "epoch-end:0",
              "write-part:best.ckpt", "write-half:last.ckpt", "write-after:best.ckpt",
              "batch:1:1", "write-before:last.ckpt@2", "write-after:last.ckpt@3", "test:0",
              "write-part:weights.pt", "write-after:test_probabilities.pt",
              "write-part:history.csv", "write-part:run.json", "write-after:run.json"]
QUICK_KILL_HOOKS = ["batch:0:2", "write-half:last.ckpt", "write-before:last.ckpt@2", "test:0",
                    "write-part:run.json", "write-after:run.json"]
SWEEP_KILL_HOOKS = ["write-part:last.ckpt@3", "write-part:variant-000.json",
                    "write-after:variant-000.json", "write-part:run.json@2"]


def resume_and_compare(ctx: Ctx, twin: Twin, note: str, finished_before: bool,
                       allowed_top=()) -> tuple[str, str]:
    """Start the run again (here, as a user would) and compare it with the twin."""
    folder = ctx.folder()
    record = sha(folder / "run.json") if (folder / "run.json").exists() else None
    steps = H.Steps()
    with ctx.inproc():
        outcome = attempt(fit_run, callbacks=[steps])
    if outcome.error is not None:
        verdict, detail = judge(outcome.error, tb=outcome.tb)
        return ("RAW" if verdict == "RAW" else "LOST"), f"{note}; started again: {detail}"
    problems = twin.diff_run(outcome.value) + twin.diff_folder(folder)
    if finished_before and steps.count:
        problems.append(f"the finished run was trained again ({steps.count} steps)")
    if finished_before and record and sha(folder / "run.json") != record:
        problems.append("the finished run's record was rewritten")
    problems += [f"written outside the run folder: {s}" for s in ctx.strays(allowed_top)]
    if "Traceback" in outcome.err:
        problems.append("a traceback on stderr: " + tail(outcome.err))
    if problems:
        return "LOST", f"{note}; " + "; ".join(problems[:4])
    resumed = outcome.value.info.get("resumed_after_epoch")
    if finished_before:
        return "OK", f"{note}; loaded, not trained again, equals the twin"
    return "OK-RECOVERED", (f"{note}; resumed after epoch {resumed} ({steps.count} steps): "
                            f"equals the twin")


def kill_case(ctx: Ctx, twin: Twin, hook=None, delay=None):
    process = driver(ctx, {"hook": hook, "action": "kill"})
    if delay is not None:
        process.kill_after(delay)
    rc = process.wait(150)
    if rc is None:
        return "HANG", "the run did not end within 150 s"
    note = {-9: "killed", 0: "it finished before the kill"}.get(rc, f"exit status {rc}")
    if hook and rc != -9:
        return "RAW", f"the hook {hook} never fired ({note}): {tail(process.err)}"
    if "Traceback" in process.err:
        return "RAW", f"{note}, with a traceback: {tail(process.err)}"
    if rc not in (-9, 0):
        return "RAW", f"{note}: {tail(process.err)}"
    return resume_and_compare(ctx, twin, note, (ctx.folder() / "run.json").exists())


def signal_case(ctx: Ctx, twin: Twin, number, hook=None, from_outside_at=None, twice=False):
    """``number`` sent by the run itself at ``hook``, or from outside once the run reaches the
    hook ``from_outside_at`` (it prints a marker there), so that the signal meets the fit
    however slowly the machine starts it."""
    name = signal.Signals(number).name
    spec = ({"hook": hook, "action": name.lower()} if hook else
            {"hook": from_outside_at, "action": "mark"} if from_outside_at else {})
    process = driver(ctx, spec)
    if from_outside_at is not None:
        if not process.wait_for(MARK + "AT-HOOK", 90):
            process.wait(5)
            return "RAW", f"the run never reached {from_outside_at}: {tail(process.err)}"
        process.signal(number)
        if twice:
            time.sleep(0.15)
            process.signal(number)
    rc = process.wait(150)
    if rc is None:
        return "HANG", f"the run did not end within 150 s of {name}"
    if rc == 0:
        note = "it finished before the signal"
        return resume_and_compare(ctx, twin, note, True)
    lines, problems = signal_problems(process, rc, number)
    if problems:
        verdict, detail = resume_and_compare(ctx, twin, "", False)
        return "RAW", "; ".join(problems) + f"; started again: {verdict} {detail}"
    return resume_and_compare(ctx, twin, f"status {rc}, one line '{one_line(lines[0], 70)}'",
                              False)


def signal_problems(process: Proc, rc: int, number) -> tuple[list[str], list[str]]:
    """The lines naming signal ``number`` a stopped process printed, and what is wrong with
    how it stopped: one line, status 128 + number, no traceback."""
    name = signal.Signals(number).name
    lines = [line for line in process.printed() if line.startswith(f"{name}:")]
    problems = []
    if rc != 128 + number:
        problems.append(f"exit status {rc}, not {128 + number}")
    if len(lines) != 1:
        problems.append(f"{len(lines)} lines saying {name}")
    if "Traceback" in process.err:
        problems.append("a traceback: " + tail(process.err, 2))
    return lines, problems


def train_script_signal_case(ctx: Ctx, twin: Twin, number):
    name = signal.Signals(number).name
    folder = ctx.folder("sig")
    process = Proc([PYTHON, TRAIN_SCRIPT, "cnn-toy", "CIFAR10", "sgd-cosine", "--name", "sig",
                    "--epochs", "60"], ctx.env(), ctx.dir)
    deadline = time.monotonic() + 120
    while not (folder / "last.ckpt").exists() and process.p.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    process.signal(number)
    rc = process.wait(90)
    if rc is None:
        return "HANG", f"train.py did not end within 90 s of {name}"
    lines, problems = signal_problems(process, rc, number)
    if (folder / "run.json").exists() or not (folder / "last.ckpt").exists():
        problems.append("the folder is not an interrupted run with its last epoch")
    if problems:
        return "RAW", "; ".join(problems)
    return "OK", f"status {rc}, one line: {one_line(lines[0], 110)}"


def sweep_kill_case(ctx: Ctx, root: Path, hook=None, delay=None):
    directory = ctx.dir / "sweep"
    process = driver(ctx, {"sweep": True, "directory": str(directory), "hook": hook,
                           "action": "kill"})
    if delay is not None:
        process.kill_after(delay)
    rc = process.wait(180)
    if rc is None:
        return "HANG", "the sweep did not end within 180 s"
    if hook and rc != -9 or rc not in (-9, 0) or "Traceback" in process.err:
        return "RAW", f"exit status {rc}: {tail(process.err)}"
    note = "killed" if rc == -9 else "it finished before the kill"
    with ctx.inproc():
        outcome = attempt(H.sweep.run_sweep, sweep_variants(), sweep_settings(), directory)
    if outcome.error is not None:
        verdict, detail = judge(outcome.error, tb=outcome.tb)
        return ("RAW" if verdict == "RAW" else "LOST"), f"{note}; run again: {detail}"
    problems = sweep_table_diff(outcome.value, root / "sweep-twin" / "sweep" / "results.csv")
    problems += sweep_table_diff(H.sweep.results(directory),
                                 root / "sweep-twin" / "sweep" / "results.csv")
    problems += [f"outside: {s}" for s in ctx.strays(("sweep",), ())]
    if problems:
        return "LOST", f"{note}; " + "; ".join(problems[:4])
    return "OK-RECOVERED", f"{note}; run again: the table equals the twin's"


def kill_cases(quick: bool, root: Path):
    timing = json.loads((root / "twin.json").read_text())
    rng = random.Random(26)
    delays = sorted(round(rng.uniform(0.3, timing["done"] * 1.05), 2) for _ in range(6))
    hooks = QUICK_KILL_HOOKS if quick else KILL_HOOKS
    if quick:
        delays = delays[2:4]
    cases = [(f"SIGKILL at {hook}", functools.partial(kill_case, hook=hook)) for hook in hooks]
    cases += [(f"SIGKILL at a random moment, {delay:.2f} s after start "
               f"(start-up {timing['ready']:.1f} s, done {timing['done']:.1f} s)",
               functools.partial(kill_case, delay=delay)) for delay in delays]
    cases += [
        ("SIGINT in epoch 2 (self-sent at batch:1:1)",
         functools.partial(signal_case, number=signal.SIGINT, hook="batch:1:1")),
        ("SIGTERM in epoch 2 (self-sent at batch:1:1)",
         functools.partial(signal_case, number=signal.SIGTERM, hook="batch:1:1")),
        ("SIGINT in the final test",
         functools.partial(signal_case, number=signal.SIGINT, hook="test:0")),
        ("SIGTERM in the final test",
         functools.partial(signal_case, number=signal.SIGTERM, hook="test:0")),
        ("SIGTERM from outside in epoch 1 (at batch:0:2)",
         functools.partial(signal_case, number=signal.SIGTERM, from_outside_at="batch:0:2")),
        ("SIGINT twice from outside (Ctrl+C, Ctrl+C) in epoch 1 (at batch:0:2)",
         functools.partial(signal_case, number=signal.SIGINT, from_outside_at="batch:0:2",
                           twice=True)),
        ("scripts/train.py stopped by SIGINT",
         functools.partial(train_script_signal_case, number=signal.SIGINT)),
        ("scripts/train.py stopped by SIGTERM",
         functools.partial(train_script_signal_case, number=signal.SIGTERM)),
    ]
    if quick:
        cases = [c for c in cases if "SIGTERM from outside" not in c[0]
                 and "final test" not in c[0]]
    twin = None

    def with_twin(function):
        def run(ctx):
            nonlocal twin
            twin = twin or Twin(root / "twin" / "saved" / "smoke" / "run")
            return function(ctx, twin)
        return run

    out = [(name, with_twin(function), 200) for name, function in cases]
    sweep_hooks = SWEEP_KILL_HOOKS[1:3] if quick else SWEEP_KILL_HOOKS
    out += [(f"sweep SIGKILL at {hook}",
             functools.partial(sweep_kill_case, root=root, hook=hook), 240)
            for hook in sweep_hooks]
    if not quick:
        delay = round(rng.uniform(6, timing["sweep_done"]), 2)
        out.append((f"sweep SIGKILL at a random moment, {delay:.2f} s after start",
                    functools.partial(sweep_kill_case, root=root, delay=delay), 240))
    return out


# ============================================================================================
# disk full: a tmpfs of 8 MB as SAVED_MODELS_DIR, filled at chosen moments
# ============================================================================================

def fill(disk: Path):
    with open(disk / "filler", "wb") as handle, contextlib.suppress(OSError):
        while True:
            handle.write(bytes(1 << 16))
            handle.flush()


def disk_case(ctx: Ctx, root: Path, hook: str, sweep_run: bool = False):
    disk = ctx.dir / "disk"
    if not ctx.mount_tmpfs(disk):
        return "SKIPPED", "cannot mount a tmpfs here (needs root)"
    twin = Twin(root / "twin" / "saved" / "smoke" / "run")
    injector = Injector(None if hook == "start" else hook, lambda: fill(disk))
    undo = injector.install()
    folder = disk / "sweep" if sweep_run else disk / "smoke" / "run"
    try:
        with ctx.inproc(SAVED_MODELS_DIR=disk):
            if hook == "start":
                fill(disk)
            if sweep_run:
                original_fit = H.training.fit

                def fit_with_hook(*args, **kwargs):
                    kwargs["callbacks"] = [*kwargs.get("callbacks", []), injector.callback()]
                    return original_fit(*args, **kwargs)
                H.training.fit = fit_with_hook
                try:
                    first = attempt(H.sweep.run_sweep, sweep_variants(), sweep_settings(),
                                    folder)
                finally:
                    H.training.fit = original_fit
            else:
                first = attempt(fit_run, callbacks=[injector.callback()])
    finally:
        undo()
    if hook != "start" and not injector.fired:
        return "RAW", f"the moment {hook} never came (case error)"
    if first.error is None:
        verdict = ("ACCEPTED", "the disk was full, yet the call reported nothing")
    else:
        verdict = judge(first.error, "no space left on device", str(folder.parent),
                        tb=first.tb)
    if "Traceback" in first.err:
        verdict = worst(verdict, ("RAW", "a traceback on stderr: " + tail(first.err)))
    parts = [str(p.relative_to(disk)) for p in disk.rglob(".*.part")]
    (disk / "filler").unlink(missing_ok=True)
    with ctx.inproc(SAVED_MODELS_DIR=disk):
        if sweep_run:
            again = attempt(H.sweep.run_sweep, sweep_variants(), sweep_settings(), folder)
        else:
            again = attempt(fit_run)
    if again.error is not None:
        v, d = judge(again.error, tb=again.tb)
        return worst(verdict, ("RAW" if v == "RAW" else "LOST", f"after making room: {d}"))
    if sweep_run:
        problems = sweep_table_diff(again.value, root / "sweep-twin" / "sweep" / "results.csv")
    else:
        problems = twin.diff_run(again.value) + twin.diff_folder(folder)
    if parts:
        problems.append(f"half-written files left: {', '.join(parts[:3])}")
    if problems:
        return "LOST", f"{verdict[1]}; after making room: " + "; ".join(problems[:3])
    if verdict[0] != "OK-ERROR":
        return verdict
    return "OK-RECOVERED", f"{verdict[1][:150]} ...; after making room: equals the twin"


DISK_HOOKS = ["start", "write-before:best.ckpt", "write-before:last.ckpt",
              "write-before:best.ckpt@2", "batch:1:1", "epoch-end:2", "test:0",
              "write-before:weights.pt", "write-before:test_probabilities.pt",
              "write-before:history.csv", "write-before:run.json"]


def disk_cases(quick: bool, root: Path):
    hooks = ["start", "write-before:last.ckpt", "batch:1:1", "write-before:run.json"] \
        if quick else DISK_HOOKS
    cases = [(f"disk full {'from the start' if h == 'start' else 'at ' + h}",
              functools.partial(disk_case, root=root, hook=h), 90) for h in hooks]
    cases += [("sweep, disk full at write-before:variant-000.json",
               functools.partial(disk_case, root=root, hook="write-before:variant-000.json",
                                 sweep_run=True), 120)]
    if not quick:
        cases.append(("sweep, disk full at write-before:results.csv",
                      functools.partial(disk_case, root=root, hook="write-before:results.csv",
                                        sweep_run=True), 120))
    return cases


# ============================================================================================
# damaged folders: every file of an interrupted and of a finished run, damaged six ways
# ============================================================================================

INTERRUPTED_FILES = ["definition.json", "last.ckpt", "best.ckpt", "logs", ".lock"]
FINISHED_FILES = ["definition.json", "last.ckpt", "best.ckpt", "run.json", "history.csv",
                  "weights.pt", "test_probabilities.pt", "logs", ".lock"]
DAMAGES = ["truncate", "garble", "delete", "empty", "read-only", "symlink outside"]
QUICK_DAMAGES = ["truncate", "garble", "delete", "symlink outside"]


def prepare_templates(root: Path) -> None:
    """templates/interrupted (stopped by SIGINT in epoch 3, two epochs kept), templates/finished
    (the twin), templates/sibling (the same run at seed 1, finished): each a run folder."""
    templates = root / "templates"
    if (templates / "sibling").exists():
        return
    templates.mkdir(exist_ok=True)
    shutil.copytree(root / "twin" / "saved" / "smoke" / "run", templates / "finished",
                    symlinks=True)
    saved = templates / "saved"
    injector = Injector("batch:2:0", lambda: os.kill(os.getpid(), signal.SIGINT))
    previous = os.environ.get("SAVED_MODELS_DIR")
    os.environ["SAVED_MODELS_DIR"] = str(saved)
    os.environ["DATA_DIR"] = str(root / "shared-data")
    try:
        stopped = attempt(fit_run, callbacks=[injector.callback()])
        if not isinstance(stopped.error, H.training.RunInterrupted):
            raise RuntimeError(f"the interrupted template did not stop: {stopped.error!r}")
        shutil.copytree(saved / "smoke" / "run", templates / "interrupted", symlinks=True)
        sibling = attempt(fit_run, name="sibling", seed=1)
        if sibling.error is not None:
            raise RuntimeError(f"the sibling run failed: {sibling.error!r}")
        shutil.copytree(saved / "smoke" / "sibling", templates / "sibling", symlinks=True)
    finally:
        if previous is not None:
            os.environ["SAVED_MODELS_DIR"] = previous


def place(root: Path, state: str, folder: Path) -> Path:
    folder.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(root / "templates" / state, folder, symlinks=True)
    return folder


def damage(path: Path, how: str, outside: Path, sibling: Path) -> None:
    def each_file(function):
        if path.is_dir():
            for item in sorted(path.rglob("*")):
                if item.is_file():
                    function(item)
        else:
            function(path)

    if how == "truncate":
        each_file(lambda f: f.write_bytes(f.read_bytes()[:len(f.read_bytes()) // 2]))
    elif how == "garble":
        def garble(f):
            content = bytearray(f.read_bytes())
            if not content:
                f.write_bytes(b"\xff\xfe garbage \x00 not a process")
                return
            middle, span = len(content) // 2, max(1, min(64, len(content) // 4))
            content[middle:middle + span] = b"\xff" * span
            f.write_bytes(bytes(content))
        each_file(garble)
    elif how == "delete":
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    elif how == "empty":
        if path.is_dir():
            shutil.rmtree(path)
            path.mkdir()
        else:
            path.write_bytes(b"")
    elif how == "read-only":
        if path.is_dir():
            for item in path.rglob("*"):
                item.chmod(0o555 if item.is_dir() else 0o444)
            path.chmod(0o555)
        else:
            path.chmod(0o444)
    elif how == "symlink outside":
        target = outside / path.name
        source = sibling / path.name if (sibling / path.name).exists() else path
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy2(source, target)
        shutil.rmtree(path) if path.is_dir() else path.unlink()
        path.symlink_to(target)
    else:
        raise ValueError(how)


def grade_call(outcome: Outcome, twin: Twin, keyword: str, steps=None, before=None,
               folder=None, finished=False, what="fit") -> tuple[str, str]:
    """The verdict on one call on a damaged or hostile folder."""
    if outcome.error is not None:
        verdict, detail = judge(outcome.error, keyword, tb=outcome.tb)
        if verdict == "OK-ERROR" and steps is not None and steps.count:
            return "CHANGED", f"{what}: {detail} - after training {steps.count} steps"
        if verdict == "OK-ERROR" and before is not None:
            changed = changes(before, snapshot(folder))
            if changed:
                return "CHANGED", f"{what}: {detail} - and changed {', '.join(changed[:3])}"
        return verdict, f"{what}: {detail}"
    problems = twin.diff_run(outcome.value)
    if "Traceback" in outcome.err:
        problems.append("a traceback on stderr")
    if finished and steps is not None and steps.count:
        problems.append(f"the finished run was trained again ({steps.count} steps)")
    if problems:
        return "LOST", f"{what} returned a run: " + "; ".join(problems[:3])
    if steps is not None and steps.count:
        return "OK-RECOVERED", f"{what}: resumed ({steps.count} steps), equals the twin"
    return "OK", f"{what}: equals the twin"


def folder_case(ctx: Ctx, root: Path, state: str, prepare, keyword: str,
                extra_calls: bool | None = None, expect_error: bool = False,
                marker: Path | None = None) -> tuple[str, str]:
    """Put a template run (``state``) at saved/run, let ``prepare(folder, outside)`` damage
    it, then: fit (resume or load), and for a finished run also runs.load, load_or_train and
    the recorded test probabilities. The outside folder must stay as it was."""
    twin = Twin(root / "twin" / "saved" / "smoke" / "run")
    folder = place(root, state, ctx.saved / "run")
    outside = ctx.dir / "outside"
    outside.mkdir()
    prepared = prepare(folder, outside)
    if isinstance(prepared, tuple):  # a case that cannot be made here
        return prepared
    before, outside_before = snapshot(folder), snapshot(outside)
    finished = state == "finished"
    steps = H.Steps()
    verdicts = []
    with ctx.inproc():
        fitted = attempt(fit_run, directory=ctx.saved, callbacks=[steps])
        verdicts.append(grade_call(fitted, twin, keyword, steps, before, folder, finished))
        if fitted.error is None and not finished:
            problems = twin.diff_folder(folder)
            if problems:
                verdicts.append(("LOST", "the folder after fit: " + "; ".join(problems[:3])))
        if finished if extra_calls is None else extra_calls:
            loaded = attempt(H.runs.load, folder, make_model())
            verdicts.append(grade_call(loaded, twin, keyword, what="runs.load"))
            if loaded.error is None:
                probabilities = attempt(loaded.value.test_probabilities)
                if probabilities.error is not None:
                    verdicts.append(judge(probabilities.error, keyword, tb=probabilities.tb))
                elif probabilities.value is not None and not H.torch.equal(
                        probabilities.value[0].half(), twin.probabilities["probabilities"]):
                    verdicts.append(("LOST", "Run.test_probabilities() differ from the twin's"))
            steps_again = H.Steps()
            asked = attempt(H.checkpoints.load_or_train, make_model(), make_data(),
                            make_recipe(), name="run", epochs=3, precision="32-true",
                            enable_progress_bar=False, overwrite=False, directory=ctx.saved,
                            callbacks=[steps_again])
            verdicts.append(grade_call(asked, twin, keyword, steps_again, finished=finished,
                                       what="load_or_train"))
    changed_outside = changes(outside_before, snapshot(outside))
    if changed_outside:
        verdicts.append(("LOST", f"the file outside was changed: {changed_outside[:2]}"))
    if marker is not None and marker.exists():
        verdicts.append(("LOST", f"the pickled payload ran: {marker.name} exists"))
    if expect_error and all(v[0] in ("OK", "OK-RECOVERED") for v in verdicts):
        verdicts.append(("ACCEPTED", "accepted as a run: " + verdicts[0][1]))
    verdict = worst(*verdicts)
    details = [d for v, d in verdicts if v == verdict[0]]
    return verdict[0], one_line(" | ".join(dict.fromkeys(details)), 420)


def damaged_case(ctx: Ctx, root: Path, state: str, name: str, how: str):
    sibling = root / "templates" / "sibling"

    def prepare(folder, outside):
        damage(folder / name, how, outside, sibling)
    return folder_case(ctx, root, state, prepare, name)


def read_only_mount_case(ctx: Ctx, root: Path, state: str):
    def prepare(folder, outside):
        if not ctx.mount_read_only(folder):
            return "SKIPPED", "cannot bind-mount read-only here"
    try:
        return folder_case(ctx, root, state, prepare, "read-only")
    finally:
        ctx.cleanup()


def damaged_cases(quick: bool, root: Path):
    damages = QUICK_DAMAGES if quick else DAMAGES
    cases = []
    for state, names in (("interrupted", INTERRUPTED_FILES), ("finished", FINISHED_FILES)):
        for name in names:
            for how in damages:
                cases.append((f"{state} run, {name}: {how}",
                              functools.partial(damaged_case, root=root, state=state,
                                                name=name, how=how), 90))
        cases.append((f"{state} run on a read-only mount",
                      functools.partial(read_only_mount_case, root=root, state=state), 90))
    return cases


# ============================================================================================
# concurrency: two writers, a lock taken away, two sweeps
# ============================================================================================

def paused(ctx: Ctx, hook="batch:1:0", sweep_run=False):
    release = ctx.dir / "release"
    spec = {"hook": hook, "action": "pause", "release": str(release)}
    if sweep_run:
        spec.update(sweep=True, directory=str(ctx.dir / "sweep"))
    process = driver(ctx, spec)
    if not process.wait_for(MARK + "PAUSED", 90):
        process.wait(5)
        raise RuntimeError(f"the first process did not reach {hook}: {tail(process.err)}")
    return process, release


def finish(process: Proc, release: Path, timeout=120):
    release.write_text("go")
    return process.wait(timeout)


def second_writer_case(ctx: Ctx, root: Path):
    twin = Twin(root / "twin" / "saved" / "smoke" / "run")
    first, release = paused(ctx)
    with ctx.inproc():
        holder = attempt(H.runs.in_use, ctx.folder())
        start = time.monotonic()
        second = attempt(fit_run)
        seconds = time.monotonic() - start
    rc = finish(first, release)
    verdicts = []
    if holder.error is not None or not holder.value or str(first.p.pid) not in holder.value:
        verdicts.append(("RAW", f"runs.in_use said {holder.value!r} / {holder.error!r}"))
    if not isinstance(second.error, H.runs.RunInUse):
        verdicts.append(("LOST", f"the second writer was not refused: {second.error!r}"))
    elif seconds > 10:
        verdicts.append(("HANG", f"refused only after {seconds:.0f} s"))
    if rc != 0:
        verdicts.append(("RAW", f"the first process ended with {rc}: {tail(first.err)}"))
    problems = twin.diff_folder(ctx.folder())
    if problems:
        verdicts.append(("LOST", "the first run: " + "; ".join(problems[:3])))
    if verdicts:
        return worst(*verdicts)
    return "OK-ERROR", (f"refused in {seconds:.1f} s: {one_line(second.error, 150)}; the first "
                        f"run finished equal to the twin")


def train_script_overwrite_case(ctx: Ctx, root: Path):
    twin = Twin(root / "twin" / "saved" / "smoke" / "run")
    first, release = paused(ctx)
    other = Proc([PYTHON, TRAIN_SCRIPT, "cnn-toy", "CIFAR10", "sgd-cosine", "--name", "run",
                  "--overwrite", "--epochs", "1"], ctx.env(), ctx.dir)
    rc_other = other.wait(90)
    rc = finish(first, release)
    problems = []
    if rc_other != 1 or "in use" not in other.err:
        problems.append(f"train.py --overwrite ended with {rc_other}: {tail(other.err)}")
    if "Traceback" in other.err:
        problems.append("a traceback")
    if rc != 0:
        problems.append(f"the first process ended with {rc}: {tail(first.err)}")
    problems += twin.diff_folder(ctx.folder())
    if problems:
        return "LOST", "; ".join(problems[:3])
    return "OK-ERROR", f"train.py refused: {tail(other.err, 1)}; the first run is intact"


def lock_taken_case(ctx: Ctx, root: Path, how: str):
    twin = Twin(root / "twin" / "saved" / "smoke" / "run")
    folder = ctx.folder()
    first, release = paused(ctx)
    if how == "deleted":
        (folder / ".lock").unlink()
    elif how == "replaced":
        (folder / ".lock").unlink()
        (folder / ".lock").write_text("process 1 on another machine")
    elif how == "folder deleted":
        shutil.rmtree(folder)
    elif how == "deleted, and a second process trains the run":
        (folder / ".lock").unlink()
        with ctx.inproc():
            second = attempt(fit_run)
        if second.error is not None:
            finish(first, release)
            return judge(second.error, tb=second.tb)[0], f"the second process: {second.error}"
        record = sha(folder / "run.json")
    rc = finish(first, release)
    report = first.error()
    problems = []
    if rc != 1 or not report or report["type"] != "LockLost":
        problems.append(f"the first process ended with {rc}, {report}: {tail(first.err)}")
    if "Traceback" in first.err:
        problems.append("a traceback")
    if how == "folder deleted":
        if folder.exists():
            problems.append("the deleted folder was recreated: "
                            + ", ".join(sorted(snapshot(folder))[:4]))
        if problems:
            return "LOST", "; ".join(problems)
        return "OK-ERROR", f"stopped: {one_line(report['message'], 150)}; nothing recreated"
    if how.startswith("deleted, and"):
        if sha(folder / "run.json") != record:
            problems.append("the first process rewrote the second one's record")
        problems += twin.diff_folder(folder)
        if problems:
            return "LOST", "; ".join(problems[:3])
        return "OK-ERROR", (f"the first stopped: {one_line(report['message'], 120)}; the "
                            f"folder holds the second's run, equal to the twin")
    if (folder / "run.json").exists():
        problems.append("the first process wrote its record anyway")
    last = H.torch.load(folder / "last.ckpt", weights_only=True)
    if last["epoch"] != 0:
        problems.append(f"last.ckpt was written after the lock was lost (epoch {last['epoch']})")
    if problems:
        return "LOST", "; ".join(problems)
    verdict, detail = resume_and_compare(ctx, twin, "stopped with LockLost", False,
                                         allowed_top=("release",))  # the case's own file
    return verdict, f"{one_line(report['message'], 110)}; {detail}"


def two_runs_case(ctx: Ctx, root: Path):
    twin = Twin(root / "twin" / "saved" / "smoke" / "run")
    first = driver(ctx, {"name": "run"})
    second = driver(ctx, {"name": "run2"})
    rcs = first.wait(150), second.wait(150)
    if rcs != (0, 0):
        return "RAW", f"exit statuses {rcs}: {tail(first.err)} {tail(second.err)}"
    problems = twin.diff_folder(ctx.folder("run"))
    problems += [p for p in twin.diff_folder(ctx.folder("run2"))]
    problems += ctx.strays(runs_kept=("smoke/run", "smoke/run2"))
    if problems:
        return "LOST", "; ".join(problems[:3])
    return "OK", "two runs trained side by side into one saved_models/: each equals the twin"


def same_process_case(ctx: Ctx, root: Path):
    with ctx.inproc():
        folder = ctx.folder()
        with H.runs.lock(folder):
            outcome = attempt(fit_run)
    if isinstance(outcome.error, H.runs.RunInUse):
        return "OK-ERROR", one_line(outcome.error, 160)
    if outcome.error is None:
        return "LOST", "a second fit in the process holding the lock trained into the folder"
    return judge(outcome.error, tb=outcome.tb)


def two_sweeps_case(ctx: Ctx, root: Path):
    first, release = paused(ctx, "batch:0:0", sweep_run=True)
    with ctx.inproc():
        start = time.monotonic()
        second = attempt(H.sweep.run_sweep, sweep_variants(), sweep_settings(),
                         ctx.dir / "sweep")
        seconds = time.monotonic() - start
    rc = finish(first, release, 180)
    problems = []
    if not isinstance(second.error, H.runs.RunInUse):
        problems.append(f"the second sweep was not refused: {second.error!r}")
    if rc != 0:
        problems.append(f"the first sweep ended with {rc}: {tail(first.err)}")
    problems += sweep_table_diff(H.sweep.results(ctx.dir / "sweep"),
                                 root / "sweep-twin" / "sweep" / "results.csv")
    if problems:
        return "LOST", "; ".join(problems[:3])
    return "OK-ERROR", (f"refused in {seconds:.1f} s: {one_line(second.error, 120)}; the first "
                        f"sweep's table equals the twin's")


def concurrency_cases(quick: bool, root: Path):
    cases = [
        ("a second process trains the same run at once", second_writer_case),
        ("train.py --overwrite into a run another process trains", train_script_overwrite_case),
        ("another process deletes .lock mid-run",
         functools.partial(lock_taken_case, how="deleted")),
        ("another process replaces .lock mid-run",
         functools.partial(lock_taken_case, how="replaced")),
        ("another process deletes the run folder mid-run",
         functools.partial(lock_taken_case, how="folder deleted")),
        (".lock deleted mid-run and a second process trains the run meanwhile",
         functools.partial(lock_taken_case, how="deleted, and a second process trains the run")),
        ("two different runs at once into one saved_models/", two_runs_case),
        ("a second fit in the process that holds the lock", same_process_case),
        ("two sweeps into one folder", two_sweeps_case),
    ]
    if quick:
        cases = [c for c in cases if "train.py" not in c[0] and "replaces" not in c[0]
                 and "two different" not in c[0]]
    return [(name, functools.partial(function, root=root), 200) for name, function in cases]


# ============================================================================================
# arguments: wrong types, values and names for every public function
# ============================================================================================

def expect_error(ctx: Ctx, make, keywords=(), inproc=True):
    """``make()`` must raise a clear error naming ``keywords``; success is ACCEPTED."""
    with ctx.inproc() if inproc else contextlib.nullcontext():
        outcome = attempt(make)
    if outcome.error is None:
        return "ACCEPTED", f"accepted, returned {one_line(repr(outcome.value), 100)}"
    return judge(outcome.error, *keywords, tb=outcome.tb)


def expect_ok(ctx: Ctx, make):
    with ctx.inproc():
        outcome = attempt(make)
    if outcome.error is None:
        return "OK", f"accepted as it should: {one_line(repr(outcome.value), 100)}"
    verdict, detail = judge(outcome.error, tb=outcome.tb)
    return ("RAW" if verdict == "RAW" else "ACCEPTED"), f"a valid call refused: {detail}"


def fit_arguments_case(ctx: Ctx, root: Path, keywords, finished=False, **changes_):
    """fit with one wrong argument: a clear error naming it, the folder left as it was (a
    bad call that binds the folder so that the correct call then fails is CHANGED)."""
    if finished:
        place(root, "finished", ctx.folder())
    before = snapshot(ctx.saved)
    call = dict(model=None, data=None, recipe=None, name="run", epochs=3,
                precision="32-true", enable_progress_bar=False, overwrite=False)
    call.update(changes_)
    steps = H.Steps()

    def run():
        model = make_model() if call["model"] is None else call["model"]
        data = make_data() if call["data"] is None else call["data"]
        recipe = make_recipe() if call["recipe"] is None else call["recipe"]
        options = {k: v for k, v in call.items() if k not in ("model", "data", "recipe")}
        if isinstance(options.get("callbacks"), list):
            options["callbacks"] = [*options["callbacks"], steps]
        elif "callbacks" not in options:
            options["callbacks"] = [steps]
        return H.training.fit(None if call["model"] == "<None>" else model,
                              None if call["data"] == "<None>" else data,
                              None if call["recipe"] == "<None>" else recipe, **options)
    with ctx.inproc():
        outcome = attempt(run)
    if outcome.error is None:
        what = "loaded the finished run" if not steps.count else f"trained {steps.count} steps"
        return "ACCEPTED", f"accepted: {what}"
    verdict, detail = judge(outcome.error, *keywords, tb=outcome.tb)
    if verdict != "OK-ERROR":
        if (ctx.folder() / "definition.json").exists() and not finished:
            with ctx.inproc():
                correct = attempt(fit_run)
            if correct.error is not None:
                detail += (f" - and it left definition.json, so the correct call then fails: "
                           f"{one_line(correct.error, 120)}")
        return verdict, detail
    if steps.count:
        return "CHANGED", f"{detail} - after training {steps.count} steps"
    changed = changes(before, snapshot(ctx.saved), allowed=("smoke", "smoke/run"))
    made = changes(before, snapshot(ctx.saved))
    if finished and changed:
        return "CHANGED", f"{detail} - and the finished run changed: {', '.join(changed[:3])}"
    if (ctx.folder() / "definition.json").exists() and not finished:
        with ctx.inproc():
            correct = attempt(fit_run)
        if correct.error is not None:
            return "CHANGED", (f"{detail} - and it left definition.json, so the correct call "
                               f"then fails: {one_line(correct.error, 140)}")
        return "OK-ERROR", detail + " (left a definition.json; the correct call still works)"
    return "OK-ERROR", detail + (f" (made {', '.join(made[:2])})" if made else "")


def model_case(ctx: Ctx, name: str):
    """Every hyper-parameter of model ``name`` given a wrong type or value, one at a time."""
    defaults = H.models.hyperparameters(name)
    trials = [("bogus_option", 1), ("num_classes", "10"), ("num_classes", 1),
              ("num_classes", None), ("num_classes", True)]
    for key, default in defaults.items():
        if key == "num_classes":
            continue
        if isinstance(default, bool):
            trials += [(key, "no"), (key, 1)]
        elif isinstance(default, int):
            trials += [(key, -1), (key, "3"), (key, 2.5)]
        elif isinstance(default, float):
            trials += [(key, "0.5"), (key, -1.0)]
        elif isinstance(default, tuple) and default and all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in default):
            trials += [(key, ()), (key, (0,) * len(default)), (key, "abc")]
        elif isinstance(default, str):
            trials += [(key, 5), (key, "bogus-value")]
    accepted, raw = [], []
    for key, value in trials:
        with ctx.inproc():
            outcome = attempt(H.models.create, name, **{key: value})
        if outcome.error is None:
            accepted.append(f"{key}={value!r}")
            continue
        verdict, detail = judge(outcome.error, (key, repr(value)), tb=outcome.tb)
        if verdict == "RAW":
            raw.append(f"{key}={value!r}: {detail[:140]}")
    if raw:
        return "RAW", f"{len(raw)} of {len(trials)}: " + " || ".join(raw[:3])
    if accepted:
        return "ACCEPTED", f"{len(accepted)} of {len(trials)} accepted: {', '.join(accepted)}"
    return "OK-ERROR", f"all {len(trials)} wrong values refused, each naming its argument"


def tiny_run(ctx: Ctx, root: Path):
    folder = place(root, "finished", ctx.saved / "loaded")
    return H.runs.load(folder, make_model())


def sweep_bound_case(ctx: Ctx):
    """The brief's sweep settings: sgd-cosine (batch 128) on 64 training images."""
    directory = ctx.dir / "sweep"
    with ctx.inproc():
        outcome = attempt(lambda: H.sweep.run_sweep(
            sweep_variants()[:1], H.sweep.SweepSettings("CIFAR10", "sgd-cosine", epochs=2,
                                                        subset=(64, 32, 32)), directory))
    if outcome.error is None:
        return "ACCEPTED", f"accepted: {one_line(outcome.value.to_dict('records'), 150)}"
    verdict, detail = judge(outcome.error, "batch", tb=outcome.tb)
    if verdict != "OK-ERROR":
        return verdict, detail
    with ctx.inproc():
        fixed = attempt(H.sweep.run_sweep, sweep_variants()[:1], sweep_settings(), directory)
    if fixed.error is not None:
        return "CHANGED", (f"{detail[:150]} - and the corrected settings are then refused in "
                           f"that folder: {one_line(fixed.error, 160)}")
    return "OK-ERROR", detail


def ray_case(ctx: Ctx, workers):
    # Ray keeps sockets under its temporary folder, whose paths may not exceed 107 bytes:
    # a short one, so that what is judged is the course's answer to workers
    short = Path(tempfile.mkdtemp(prefix="fi-ray-", dir="/tmp"))
    previous = tempfile.tempdir
    tempfile.tempdir = None
    try:
        with ctx.inproc(TMPDIR=short, RAY_TMPDIR=short):
            return expect_error(ctx, lambda: H.sweep.run_sweep(
                sweep_variants()[:1], sweep_settings(), ctx.dir / "sweep", workers=workers),
                ("workers",))
    finally:
        tempfile.tempdir = previous
        shutil.rmtree(short, ignore_errors=True)
        with contextlib.suppress(Exception):
            import ray
            if ray.is_initialized():
                ray.shutdown()


def argument_cases(quick: bool, root: Path):
    cases = []

    def add(name, function, timeout=60):
        cases.append((name, function, timeout))

    def fit_bad(label, keywords, finished=False, **changes_):
        add(f"fit({label})" + (" on a finished run" if finished else ""),
            functools.partial(fit_arguments_case, root=root, keywords=keywords,
                              finished=finished, **changes_))

    # fit's own arguments
    fit_bad("overwrite='no'", ["overwrite"], finished=True, overwrite="no")
    fit_bad("overwrite='False'", ["overwrite"], finished=True, overwrite="False")
    fit_bad("overwrite=1", ["overwrite"], finished=True, overwrite=1)
    fit_bad("channels_last='yes'", ["channels_last"], channels_last="yes")
    fit_bad("memory_safe='no'", ["memory_safe"], memory_safe="no")
    fit_bad("note=None", ["note"], note=None)
    fit_bad("note=5", ["note"], note=5)
    for value in ("3", -1, 0, 2.5, True, float("inf")):
        fit_bad(f"epochs={value!r}", ["epochs"], epochs=value)
    for value in ("0", 1.5, True, None, -1, 2 ** 64):
        fit_bad(f"seed={value!r}", ["seed"], seed=value)
    for value in ("bogus", None, "64-bogus"):
        fit_bad(f"precision={value!r}", ["precision"], precision=value)
    for value in (None, "", "a/b", "..", ".hidden", "run name", "quick", "sweeps", "exercises",
                  "smoke", "cpu", "CPU", "exercise-records", "README.md", 5, "x" * 300, "ü",
                  "a\nb"):
        fit_bad(f"name={one_line(repr(value), 24)}", ["name"], name=value)
    fit_bad("directory=5", ["directory"], directory=5)
    add("fit(directory=a file)", lambda ctx: fit_arguments_case(
        ctx, root, [str(ctx.dir / "a-file")], directory=(ctx.dir / "a-file", (
            ctx.dir / "a-file").write_text("x"))[0]))
    fit_bad("model='allcnn'", ["model"], model="allcnn")
    fit_bad("model=None", ["model"], model="<None>")
    fit_bad("data='CIFAR10'", ["data"], data="CIFAR10")
    fit_bad("data=None", ["data"], data="<None>")
    fit_bad("recipe='nope'", ["recipe"], recipe="nope")
    fit_bad("recipe=None", ["recipe"], recipe="<None>")
    fit_bad("recipe=5", ["recipe"], recipe=5)
    # Trainer options that would change what a run computes, or that make no sense
    for option, value in [("limit_train_batches", 2), ("accumulate_grad_batches", 2),
                          ("max_steps", 3), ("max_epochs", 1), ("min_epochs", 5),
                          ("fast_dev_run", True), ("overfit_batches", 1),
                          ("gradient_clip_val", 1.0), ("val_check_interval", 0.5),
                          ("check_val_every_n_epoch", 2), ("limit_val_batches", 1),
                          ("default_root_dir", "/tmp"), ("logger", False),
                          ("enable_checkpointing", False), ("epoch", 3),
                          ("strategy", "ddp_spawn"), ("strategy", "ddp_notebook"),
                          ("devices", 0), ("devices", "two"), ("accelerator", "tpu"),
                          ("accelerator", "gpu"), ("callbacks", "x"), ("callbacks", [object()]),
                          ("enable_progress_bar", "no"), ("deterministic", "no"),
                          ("benchmark", "no"), ("sync_batchnorm", True), ("profiler", "bogus"),
                          ("num_nodes", 0), ("detect_anomaly", "no")]:
        keyword = {"callbacks": "callback"}.get(option, option)
        fit_bad(f"{option}={value!r}", [keyword], **{option: value})
    add("fit(a recipe whose batch exceeds the training split)", lambda ctx: fit_arguments_case(
        ctx, root, ["batch"], recipe=H.recipes.get_recipe("sgd-cosine", batch_size=10 ** 9)))

    # load_or_train
    def lot(**kw):
        call = dict(name="run", epochs=3, precision="32-true", enable_progress_bar=False,
                    overwrite=False)
        call.update(kw)
        return lambda: H.checkpoints.load_or_train(make_model(), make_data(), make_recipe(),
                                                   **call)
    for label, kw, keyword in [("name='..'", {"name": ".."}, "name"),
                               ("name='quick'", {"name": "quick"}, "quick"),
                               ("overwrite='no'", {"overwrite": "no"}, "overwrite"),
                               ("url='ftp://example.org/x'", {"url": "ftp://example.org/x"},
                                "url"),
                               ("url=5", {"url": 5}, "url"), ("sha256=5", {"sha256": 5},
                                                              "sha256")]:
        add(f"load_or_train({label})", lambda ctx, m=lot(**kw), k=keyword: expect_error(
            ctx, m, (k,)))
    add("load_or_train(no checkpoint, data and recipe None)", lambda ctx: expect_error(
        ctx, lambda: H.checkpoints.load_or_train(make_model(), None, None, name="run"),
        ("run",)))
    # ImageDataModule
    def module(**kw):
        def make():
            options = {"val_size": 1000, "subset": (128, 64, 64), "smoke": H.config.is_smoke(),
                       **kw}
            m = H.data.ImageDataModule(options.pop("name", "CIFAR10"), **options)
            m.setup()
            return m.describe()
        return make
    for key, value in [("name", "CIFAR11"), ("name", None), ("name", 5), ("name", "cifar10"),
                       ("val_size", "5000"), ("val_size", -5), ("val_size", 0),
                       ("val_size", 1.0), ("val_size", 60000), ("val_size", True),
                       ("val_size", float("nan")), ("seed", "0"), ("seed", True),
                       ("seed", -1), ("augment", "jitter"), ("augment", 5), ("augment", ""),
                       ("eval_batch_size", 0), ("eval_batch_size", "64"),
                       ("eval_batch_size", 2.5), ("eval_batch_size", True), ("subset", ()),
                       ("subset", (1, 2)), ("subset", (0, 1, 1)), ("subset", ("a", 1, 1)),
                       ("subset", "all"), ("subset", (128, 64, 64.0)),
                       ("subset", (-1, 1, 1)),
                       ("test_every_epoch", "no"), ("size", 0), ("size", -1), ("size", "32"),
                       ("size", 2.5), ("channels", 0), ("channels", 2), ("channels", "3")]:
        keyword = {"name": "CIFAR" if value in ("CIFAR11", "cifar10") else "name"}.get(key, key)
        add(f"ImageDataModule({key}={one_line(repr(value), 20)})",
            lambda ctx, m=module(**{key: value}), k=keyword: expect_error(ctx, m, (k,)))
    add("ImageDataModule(subset as a list) is fine",
        lambda ctx: expect_ok(ctx, module(subset=[128, 64, 64])))
    if H.datasets.DEBIAN_FASHION_MNIST.is_dir():  # real data: asking for more is an error
        add("ImageDataModule('FashionMNIST', subset=(10**9, 64, 64))", lambda ctx: expect_error(
            ctx, module(name="FashionMNIST", subset=(10 ** 9, 64, 64)), ("subset",)))
    # a smoke run's stand-in has 10,000 / 2,000 images: a subset is cut to what it has
    add("ImageDataModule(subset=(10**9, 64, 64)) on the stand-in is cut to its 9,000",
        lambda ctx: expect_ok(ctx, module(subset=(10 ** 9, 64, 64))))
    # get_recipe
    for name, kw, keyword in [("nope", {}, "nope"), (None, {}, "recipe"),
                              ("sgd-cosine", {"lr": "0.1"}, "lr"),
                              ("sgd-cosine", {"lr": -1}, "lr"),
                              ("sgd-cosine", {"lr": float("nan")}, "lr"),
                              ("sgd-cosine", {"lr": float("inf")}, "lr"),
                              ("sgd-cosine", {"epochs": 0}, "epochs"),
                              ("sgd-cosine", {"epochs": 2.5}, "epochs"),
                              ("sgd-cosine", {"batch_size": 0}, "batch_size"),
                              ("sgd-cosine", {"batch_size": "32"}, "batch_size"),
                              ("sgd-cosine", {"batch_size": True}, "batch_size"),
                              ("sgd-cosine", {"bogus": 1}, "bogus"),
                              ("sgd-cosine", {"momentum": 1.5}, "momentum"),
                              ("sgd-cosine", {"weight_decay": -1}, "weight_decay"),
                              ("sgd-cosine", {"warmup_epochs": -1}, "warmup_epochs"),
                              ("sgd-cosine", {"schedule": "linear"}, "schedule"),
                              ("sgd-cosine", {"optimizer": "adam"}, "optimizer"),
                              ("sgd-step", {"milestones": (1.5,)}, "milestones"),
                              ("sgd-step", {"milestones": "0.5"}, "milestones"),
                              ("sgd-step", {"gamma": 0}, "gamma"),
                              ("sgd-cosine", {"nesterov": "no"}, "nesterov"),
                              ("sgd-cosine", {"label_smoothing": 1.0}, "label_smoothing"),
                              ("mundt-sgdr", {"cycle_mult": 0.5}, "cycle_mult"),
                              ("sgd-cosine", {"final_lr": -1}, "final_lr"),
                              ("sgd-cosine", {"name": 5}, "name")]:
        label = ", ".join([repr(name)] + [f"{k}={v!r}" for k, v in kw.items()])
        add(f"get_recipe({label})", lambda ctx, n=name, k=kw, w=keyword: expect_error(
            ctx, lambda: H.recipes.get_recipe(n, **k), (w,)))
    # every model, every hyper-parameter
    for name in H.models.names():
        add(f"models.create({name!r}, every hyper-parameter wrong)",
            functools.partial(model_case, name=name), 120)
    add("models.create('nope')", lambda ctx: expect_error(
        ctx, lambda: H.models.create("nope"), ("nope",)))
    add("models.create(5)", lambda ctx: expect_error(ctx, lambda: H.models.create(5), ("5",)))
    # the sweep
    for kw, keyword in [({"data": "nope"}, "nope"), ({"recipe": "nope"}, "nope"),
                        ({"epochs": 0}, "epochs"), ({"epochs": "2"}, "epochs"),
                        ({"seed": "0"}, "seed"), ({"seed": True}, "seed"),
                        ({"val_size": "x"}, "val_size"), ({"val_size": -5}, "val_size"),
                        ({"augment": "jitter"}, "augment"), ({"abandon_after": 0}, "abandon"),
                        ({"subset": "bad"}, "subset"), ({"subset": (1, 2)}, "subset"),
                        ({"width_scale": 0}, "width_scale"), ({"width_scale": 2},
                                                              "width_scale"),
                        ({"width_scale": "1"}, "width_scale"),
                        ({"width_scale": float("nan")}, "width_scale")]:
        def settings_then_sweep(ctx, kw=kw, keyword=keyword):
            options = {"data": "CIFAR10", "recipe": "sgd-cosine", "epochs": 2,
                       "subset": (128, 32, 32), **kw}
            return expect_error(ctx, lambda: H.sweep.run_sweep(
                sweep_variants()[:1], H.sweep.SweepSettings(**options), ctx.dir / "sweep"),
                (keyword,))
        label = ", ".join(f"{k}={v!r}" for k, v in kw.items())
        add(f"SweepSettings({label})", settings_then_sweep)
    add("SweepSettings sgd-cosine with subset (64, 32, 32) (smaller than its batch)",
        sweep_bound_case, 90)
    for label, variants, keyword in [("variants='abc'", "abc", "variants"),
                                     ("variants=None", None, "variants"),
                                     ("variants=[1, 2]", [1, 2], "variants")]:
        add(f"run_sweep({label})", lambda ctx, v=variants, k=keyword: expect_error(
            ctx, lambda: H.sweep.run_sweep(v, sweep_settings(), ctx.dir / "sweep"), (k,)))
    add("run_sweep(directory=a file)", lambda ctx: expect_error(
        ctx, lambda: ((ctx.dir / "sweep").write_text("x"), H.sweep.run_sweep(
            sweep_variants()[:1], sweep_settings(), ctx.dir / "sweep"))[1],
        (str(ctx.dir / "sweep"),)))
    add("run_sweep(settings='CIFAR10')", lambda ctx: expect_error(
        ctx, lambda: H.sweep.run_sweep(sweep_variants()[:1], "CIFAR10", ctx.dir / "sweep"),
        ("settings",)))
    if not quick:
        add("run_sweep(workers='2')", functools.partial(ray_case, workers="2"), 90)
        add("run_sweep(workers=-1)", functools.partial(ray_case, workers=-1), 90)
    # the checkered layers
    checkered = H.checkered
    for label, make, keyword in [
            ("CheckeredConv2d(-1, 8, 3)", lambda: checkered.CheckeredConv2d(-1, 8, 3),
             "in_channels"),
            ("CheckeredConv2d('3', 8, 3)", lambda: checkered.CheckeredConv2d("3", 8, 3),
             "in_channels"),
            ("CheckeredConv2d(3, 8, 0)", lambda: checkered.CheckeredConv2d(3, 8, 0),
             "kernel"),
            ("CheckeredConv2d(3, 8, 3, stride=3)",
             lambda: checkered.CheckeredConv2d(3, 8, 3, stride=3), "stride"),
            ("CheckeredConv2d(3, 8, 3, padding=-1)",
             lambda: checkered.CheckeredConv2d(3, 8, 3, padding=-1), "padding"),
            ("CheckeredConv2d(3, 8, 3, sampling='bogus')",
             lambda: checkered.CheckeredConv2d(3, 8, 3, sampling="bogus"), "sampling"),
            ("CheckeredConv2d(3, 8, 3, bias='no')",
             lambda: checkered.CheckeredConv2d(3, 8, 3, bias="no"), "bias"),
            ("CheckeredConv2d(3, 8, 3, groups=2)",
             lambda: checkered.CheckeredConv2d(3, 8, 3, groups=2), "groups"),
            ("CheckeredConv2d(3, 8, 3, depth=0)",
             lambda: checkered.CheckeredConv2d(3, 8, 3, depth=0), "depth"),
            ("CheckeredConv2d(3, 8, 3, dilation=0)",
             lambda: checkered.CheckeredConv2d(3, 8, 3, dilation=0), "dilation"),
            ("CheckeredConv2d(3, 8, 3)(a 4-D tensor)",
             lambda: checkered.CheckeredConv2d(3, 8, 3)(H.torch.zeros(1, 3, 8, 8)), "4-D"),
            ("CheckeredConv2d(3, 8, 3)([1, 2])",
             lambda: checkered.CheckeredConv2d(3, 8, 3)([1, 2]), "Tensor"),
            ("CheckeredMaxPool2d(0)", lambda: checkered.CheckeredMaxPool2d(0), "kernel_size"),
            ("CheckeredMaxPool2d(2, stride=3)",
             lambda: checkered.CheckeredMaxPool2d(2, stride=3), "stride"),
            ("CheckeredMaxPool2d(2, padding=2)",
             lambda: checkered.CheckeredMaxPool2d(2, padding=2), "padding"),
            ("CheckeredMaxPool2d(2, sampling='x')",
             lambda: checkered.CheckeredMaxPool2d(2, sampling="x"), "sampling"),
            ("CheckeredAvgPool2d('2')", lambda: checkered.CheckeredAvgPool2d("2"),
             "kernel_size"),
            ("SubmapMeanPool(1, mode='median')",
             lambda: checkered.SubmapMeanPool(1, mode="median"), "mode"),
            ("SubmapMeanPool(0)", lambda: checkered.SubmapMeanPool(0), "output_size"),
            ("convert_to_checkered('model')", lambda: checkered.convert_to_checkered("model"),
             "Module"),
            ("convert_to_checkered(model, sampling='bogus')",
             lambda: checkered.convert_to_checkered(make_model(), sampling="bogus"),
             "sampling"),
            ("convert_to_checkered(model, input_shape=(3, 32))",
             lambda: checkered.convert_to_checkered(make_model(), input_shape=(3, 32)),
             "input_shape"),
            ("convert_to_checkered(model, input_shape=(3, -1, 32))",
             lambda: checkered.convert_to_checkered(make_model(), input_shape=(3, -1, 32)),
             "height"),
            ("convert_to_checkered(model, input_shape=(1, 32, 32)) (wrong channels)",
             lambda: checkered.convert_to_checkered(make_model(), input_shape=(1, 32, 32)),
             "channels"),
            ("sampler_sequence(0)", lambda: checkered.sampler_sequence(0), "submaps"),
            ("sampler_sequence('4')", lambda: checkered.sampler_sequence("4"), "submaps"),
            ("sampler_sequence(True)", lambda: checkered.sampler_sequence(True), "submaps"),
            ("sampler_sequence(3, 'spread')", lambda: checkered.sampler_sequence(3, "spread"),
             "power-of-two"),
            ("sampler_sequence(4, 'bogus')", lambda: checkered.sampler_sequence(4, "bogus"),
             "sampling"),
            ("sampler_sequence(4, 'random', seed=-1)",
             lambda: checkered.sampler_sequence(4, "random", seed=-1), "seed"),
            ("sampled_pixels(0, 1, 'naive')", lambda: checkered.sampled_pixels(0, 1, "naive"),
             "size"),
            ("sampled_pixels(8, 1, 'bogus')", lambda: checkered.sampled_pixels(8, 1, "bogus"),
             "bogus")]:
        add(label, lambda ctx, m=make, k=keyword: expect_error(ctx, m, (k,)))
    add("convert_to_checkered(the course's cnn-toy) works", lambda ctx: expect_ok(
        ctx, lambda: type(H.checkered.convert_to_checkered(H.models.create("cnn-toy"))).__name__))
    # exercises
    add("exercises.check('x')", lambda ctx: expect_error(
        ctx, lambda: H.exercises.check("x"), ("run",)))
    add("exercises.check(None)", lambda ctx: expect_error(
        ctx, lambda: H.exercises.check(None), ("run",)))
    add("exercises.check(run, hint=5)", lambda ctx: expect_error(
        ctx, lambda: H.exercises.check(tiny_run(ctx, root), hint=5), ("hint",)))
    add("exercises.check(run, like=5)", lambda ctx: expect_error(
        ctx, lambda: H.exercises.check(tiny_run(ctx, root), like=5), ("like",)))
    add("exercises.check_parameters('model', 10)", lambda ctx: expect_error(
        ctx, lambda: H.exercises.check_parameters("model", 10), ("model",)))
    add("exercises.check_parameters(model, '100')", lambda ctx: expect_error(
        ctx, lambda: H.exercises.check_parameters(make_model(), "100", input_shape=(3, 32, 32)),
        ("expected_count",)))
    # evaluate and predict
    for label, make, keyword in [
            ("evaluate(split='train')",
             lambda: H.training.evaluate(make_model(), make_data(), split="train"), "split"),
            ("evaluate(split=None)",
             lambda: H.training.evaluate(make_model(), make_data(), split=None), "split"),
            ("evaluate(precision='bogus')",
             lambda: H.training.evaluate(make_model(), make_data(), precision="bogus"),
             "precision"),
            ("evaluate(tta='no')",
             lambda: H.training.evaluate(make_model(), make_data(), tta="no"), "tta"),
            ("evaluate(model='allcnn')",
             lambda: H.training.evaluate("allcnn", make_data()), "model"),
            ("evaluate(data='CIFAR10')",
             lambda: H.training.evaluate(make_model(), "CIFAR10"), "data"),
            ("evaluate(data=None)", lambda: H.training.evaluate(make_model(), None), "data"),
            ("predict(precision='bogus')",
             lambda: H.training.predict(make_model(), make_data(), precision="bogus"),
             "precision"),
            ("predict(tta='no')",
             lambda: H.training.predict(make_model(), make_data(), tta="no"), "tta"),
            ("predict(model=None)", lambda: H.training.predict(None, make_data()), "model")]:
        add(label, lambda ctx, m=make, k=keyword: expect_error(ctx, m, (k,)))
    return cases


# ============================================================================================
# environment: the course's variables, wrong
# ============================================================================================

def env_error_case(ctx: Ctx, variables: dict, keywords, call=None):
    values = {k: v(ctx) if callable(v) else v for k, v in variables.items()}
    before = snapshot(ctx.dir)
    with ctx.inproc(**values):
        outcome = attempt(call or fit_run)
    if outcome.error is None:
        return "ACCEPTED", f"accepted: {one_line(repr(outcome.value), 100)}"
    verdict, detail = judge(outcome.error, *keywords, tb=outcome.tb)
    made = [c for c in changes(before, snapshot(ctx.dir)) if not c.startswith("tmp")]
    if verdict == "OK-ERROR" and made:
        return "CHANGED", f"{detail} - and wrote {', '.join(made[:3])}"
    return verdict, detail


def env_ok_case(ctx: Ctx, root: Path, variables: dict, where):
    twin = Twin(root / "twin" / "saved" / "smoke" / "run")
    values = {k: v(ctx) if callable(v) else v for k, v in variables.items()}
    with ctx.inproc(**values):
        outcome = attempt(fit_run)
    if outcome.error is not None:
        verdict, detail = judge(outcome.error, tb=outcome.tb)
        return ("RAW" if verdict == "RAW" else "ACCEPTED"), f"refused: {detail}"
    expected = where(ctx)
    if Path(outcome.value.directory).resolve() != expected.resolve():
        return "LOST", f"the run went to {outcome.value.directory}, not {expected}"
    problems = twin.diff_run(outcome.value) + twin.diff_folder(expected)
    if problems:
        return "LOST", "; ".join(problems[:3])
    return "OK", f"trained into {expected.relative_to(ctx.dir)}, equal to the twin"


def config_case(ctx: Ctx, variables: dict, check, expectation: str):
    with ctx.inproc(**variables):
        outcome = attempt(check)
    if outcome.error is not None:
        return judge(outcome.error, tb=outcome.tb)
    if outcome.value:
        return "OK", expectation
    return "ACCEPTED", f"not {expectation}: {outcome.value!r}"


def payload_file(path: Path, marker: Path, kind: str = "checkpoint") -> None:
    """Rewrite ``path`` (a torch file) with a pickled object that creates ``marker`` when
    unpickled."""
    content = H.torch.load(path, weights_only=True) if path.exists() else {}
    if not isinstance(content, dict):
        content = {"value": content}
    content["payload"] = Payload(str(marker))
    H.torch.save(content, path)


class Payload:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def payload_case(ctx: Ctx, root: Path, state: str, name: str, in_process=True):
    marker = ctx.dir / "PAYLOAD-RAN"

    def prepare(folder, outside):
        payload_file(folder / name, marker)
    with ctx.inproc(TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1"):
        verdict = folder_case(ctx, root, state, prepare, name, marker=marker)
        epochs = attempt(H.runs.epochs_done, ctx.saved / "run")
    if marker.exists():
        return "LOST", f"the pickled payload in {name} ran"
    if epochs.error is not None:
        return worst(verdict, judge(epochs.error, tb=epochs.tb))
    return verdict


def payload_process_case(ctx: Ctx, root: Path):
    """The same, in a fresh process started with the variable set."""
    marker = ctx.dir / "PAYLOAD-RAN"
    folder = place(root, "interrupted", ctx.folder())
    payload_file(folder / "last.ckpt", marker)
    process = driver(ctx, {}, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1")
    rc = process.wait(120)
    if marker.exists():
        return "LOST", "the pickled payload in last.ckpt ran"
    report = process.error()
    if rc is None:
        return "HANG", "the driver did not end"
    if "Traceback" in process.err:
        return "RAW", tail(process.err)
    if rc != 1 or report is None:
        return "ACCEPTED", f"exit status {rc}: the crafted checkpoint was resumed from"
    return judge_reported(report, "last.ckpt")


def environment_cases(quick: bool, root: Path):
    cases = []

    def add(name, function, timeout=60):
        cases.append((name, function, timeout))

    def a_file(ctx):
        (ctx.dir / "a-file").write_text("not a folder")
        return str(ctx.dir / "a-file")

    def dangling(ctx):
        (ctx.dir / "dangling").symlink_to(ctx.dir / "nowhere")
        return str(ctx.dir / "dangling")

    def loop(ctx):
        (ctx.dir / "loop-a").symlink_to(ctx.dir / "loop-b")
        (ctx.dir / "loop-b").symlink_to(ctx.dir / "loop-a")
        return str(ctx.dir / "loop-a")

    def long_name(ctx):
        return str(ctx.dir / ("x" * 300))

    def long_path(ctx):
        return str(ctx.dir.joinpath(*["y" * 250] * 20))

    def through_file(ctx):
        return a_file(ctx) + "/sub"

    def read_only(ctx):
        folder = ctx.dir / "ro-saved"
        folder.mkdir()
        if not ctx.mount_read_only(folder):
            raise RuntimeError("cannot bind-mount read-only")
        return str(folder)

    for label, value, keywords in [("COURSE_MODE=bogus", {"COURSE_MODE": "bogus"},
                                    ["COURSE_MODE"]),
                                   ("COURSE_MODE=quick", {"COURSE_MODE": "quick"},
                                    ["smoke"]),
                                   ("COURSE_MODE unset (cpu mode), CIFAR10 not here",
                                    {"COURSE_MODE": None}, ["CIFAR10"]),
                                   ("COURSE_OFFLINE=maybe", {"COURSE_OFFLINE": "maybe"},
                                    ["COURSE_OFFLINE"]),
                                   ("SAVED_MODELS_DIR = a file", {"SAVED_MODELS_DIR": a_file},
                                    ["SAVED_MODELS_DIR", "file"]),
                                   ("SAVED_MODELS_DIR = a dangling symlink",
                                    {"SAVED_MODELS_DIR": dangling}, ["SAVED_MODELS_DIR"]),
                                   ("SAVED_MODELS_DIR = a symlink loop",
                                    {"SAVED_MODELS_DIR": loop}, ["SAVED_MODELS_DIR", "loop"]),
                                   ("SAVED_MODELS_DIR with a 300-character name",
                                    {"SAVED_MODELS_DIR": long_name},
                                    ["SAVED_MODELS_DIR", "too long"]),
                                   ("SAVED_MODELS_DIR 5,000 characters long",
                                    {"SAVED_MODELS_DIR": long_path}, ["SAVED_MODELS_DIR"]),
                                   ("SAVED_MODELS_DIR through a file",
                                    {"SAVED_MODELS_DIR": through_file},
                                    ["SAVED_MODELS_DIR", "file"]),
                                   ("SAVED_MODELS_DIR on a read-only mount",
                                    {"SAVED_MODELS_DIR": read_only}, ["read-only"]),
                                   ("RANK=1 left in the environment", {"RANK": "1"},
                                    ["RANK"])]:
        add(label, lambda ctx, v=value, k=keywords: env_error_case(ctx, v, k))
    for label, value in [("DATA_DIR = a file (cpu mode)", a_file),
                         ("DATA_DIR = a dangling symlink (cpu mode)", dangling),
                         ("DATA_DIR = a symlink loop (cpu mode)", loop),
                         ("DATA_DIR with a 300-character name (cpu mode)", long_name)]:
        add(label, lambda ctx, v=value: env_error_case(
            ctx, {"DATA_DIR": v, "COURSE_MODE": "cpu"}, ["CIFAR10"]))
    add("DATA_DIR = a file (smoke mode: the stand-in)", lambda ctx: env_ok_case(
        ctx, root, {"DATA_DIR": a_file}, lambda c: c.folder()))
    add("COURSE_MODE=' Smoke '", lambda ctx: env_ok_case(
        ctx, root, {"COURSE_MODE": " Smoke "}, lambda c: c.folder()))
    add("COURSE_OFFLINE=' TRUE '", lambda ctx: env_ok_case(
        ctx, root, {"COURSE_OFFLINE": " TRUE "}, lambda c: c.folder()))
    add("SAVED_MODELS_DIR='~/x' (expanded)", lambda ctx: env_ok_case(
        ctx, root, {"SAVED_MODELS_DIR": "~/x", "HOME": str(ctx.dir / "home")},
        lambda c: c.dir / "home" / "x" / "smoke" / "run"))
    add("SAVED_MODELS_DIR relative (to the checkout)", lambda ctx: env_ok_case(
        ctx, root, {"SAVED_MODELS_DIR": os.path.relpath(ctx.dir / "rel", ROOT)},
        lambda c: c.dir / "rel" / "smoke" / "run"))
    add("SAVED_MODELS_DIR a symlink to a folder", lambda ctx: env_ok_case(
        ctx, root, {"SAVED_MODELS_DIR": (lambda c: ((c.dir / "real").mkdir(), (
            c.dir / "link").symlink_to(c.dir / "real"), str(c.dir / "link"))[2])(ctx)},
        lambda c: c.dir / "real" / "smoke" / "run"))
    add("SAVED_MODELS_DIR='  ' (blank: the checkout's saved_models/)", lambda ctx: config_case(
        ctx, {"SAVED_MODELS_DIR": "  "},
        lambda: H.config.saved_models_dir() == ROOT / "saved_models",
        "the checkout's saved_models/"))
    add("LOCAL_RANK=0 (the first process) trains", lambda ctx: env_ok_case(
        ctx, root, {"LOCAL_RANK": "0"}, lambda c: c.folder()))
    add("COURSE_EXERCISES=yes (a typo of full)", lambda ctx: env_error_case(
        ctx, {"COURSE_EXERCISES": "yes"}, ["COURSE_EXERCISES"], call=H.exercises.full))
    add("COURSE_TUTORIAL5_URL='not a url'", lambda ctx: env_error_case(
        ctx, {"COURSE_TUTORIAL5_URL": "not a url"}, ["COURSE_TUTORIAL5_URL"],
        call=lambda: H.downloads.tutorial5_url("x.ckpt")))
    for state, name in [("interrupted", "last.ckpt"), ("interrupted", "best.ckpt"),
                        ("finished", "weights.pt"), ("finished", "best.ckpt"),
                        ("finished", "test_probabilities.pt"), ("finished", "last.ckpt")]:
        add(f"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1, {state} run, {name} with a pickled payload",
            functools.partial(payload_case, root=root, state=state, name=name), 90)
    add("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 in a new process, last.ckpt with a payload",
        functools.partial(payload_process_case, root=root), 150)
    add("TORCH_FORCE_WEIGHTS_ONLY_LOAD=1, an interrupted run resumes",
        functools.partial(resume_forced, root=root), 90)
    for label, variables in [("scripts/train.py with COURSE_MODE=bogus",
                              {"COURSE_MODE": "bogus"}),
                             ("scripts/train.py with SAVED_MODELS_DIR = a file",
                              {"SAVED_MODELS_DIR": "FILE"})]:
        add(label, functools.partial(train_script_env_case, variables=variables), 90)
    return cases


def resume_forced(ctx: Ctx, root: Path):
    twin = Twin(root / "twin" / "saved" / "smoke" / "run")
    place(root, "interrupted", ctx.folder())
    with ctx.inproc(TORCH_FORCE_WEIGHTS_ONLY_LOAD="1"):
        outcome = attempt(fit_run)
    return grade_call(outcome, twin, "", steps=None)


def train_script_env_case(ctx: Ctx, variables: dict):
    if variables.get("SAVED_MODELS_DIR") == "FILE":
        (ctx.dir / "a-file").write_text("x")
        variables = {"SAVED_MODELS_DIR": ctx.dir / "a-file"}
    process = Proc([PYTHON, TRAIN_SCRIPT, "cnn-toy", "CIFAR10", "sgd-cosine", "--name", "e",
                    "--epochs", "1"], ctx.env(**variables), ctx.dir)
    rc = process.wait(90)
    if rc is None:
        return "HANG", "train.py did not end"
    if "Traceback" in process.err:
        return "RAW", f"exit status {rc}, a traceback: {tail(process.err, 2)}"
    if rc == 0:
        return "ACCEPTED", "train.py trained"
    key = next(iter(variables))
    if key not in process.err:
        return "RAW", f"exit status {rc}, the message does not name {key}: {tail(process.err)}"
    return "OK-ERROR", f"exit status {rc}: {tail(process.err, 1)}"


# ============================================================================================
# hostile files: links, FIFOs, devices, junk records, payloads, files of another run
# ============================================================================================

def hostile_case(ctx: Ctx, root: Path, state: str, prepare, keyword: str,
                 expect_error_=False, extra_calls=None):
    return folder_case(ctx, root, state, prepare, keyword, extra_calls=extra_calls,
                       expect_error=expect_error_)


def lock_case(ctx: Ctx, root: Path, make):
    """A hostile .lock: fit and runs.in_use must refuse it at once, leaving the target."""
    def prepare(folder, outside):
        (folder / ".lock").unlink()
        make(folder / ".lock", outside)
    verdict = folder_case(ctx, root, "interrupted", prepare, ".lock", expect_error=True)
    with ctx.inproc():
        holder = attempt(H.runs.in_use, ctx.saved / "run")
    if holder.error is None:
        return worst(verdict, ("ACCEPTED", f"runs.in_use said {holder.value!r}"))
    return worst(verdict, judge(holder.error, ".lock", tb=holder.tb))


def precious(outside: Path) -> Path:
    target = outside / "precious.txt"
    target.write_text("someone else's file: never truncate, never print\n")
    return target


def fifo_case(ctx: Ctx, root: Path, state: str, name: str):
    def prepare(folder, outside):
        path = folder / name
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        os.mkfifo(path)
    return folder_case(ctx, root, state, prepare, name)


def planted_record_case(ctx: Ctx, root: Path, content: str):
    def prepare(folder, outside):
        (folder / "run.json").write_text(content)
    return folder_case(ctx, root, "interrupted", prepare, "run.json", extra_calls=True)


def foreign_case(ctx: Ctx, root: Path, state: str, name: str):
    def prepare(folder, outside):
        shutil.copy2(root / "templates" / "sibling" / name, folder / name)
    return folder_case(ctx, root, state, prepare, name)


def stray_part_case(ctx: Ctx, root: Path, kind: str):
    def prepare(folder, outside):
        stray = folder / ".best.ckpt.4242.part"
        if kind == "link":
            stray.symlink_to(precious(outside))
        else:
            stray.mkdir()
            (stray / "inside").write_text("x")
    return folder_case(ctx, root, "interrupted", prepare, ".part")


def foreign_file_overwrite_case(ctx: Ctx, root: Path):
    folder = place(root, "finished", ctx.folder())
    (folder / "notes.txt").write_text("not the course's")
    before = snapshot(folder)
    with ctx.inproc():
        outcome = attempt(fit_run, overwrite=True)
    if outcome.error is None:
        return "LOST", "overwrite=True trained over a folder holding notes.txt"
    verdict, detail = judge(outcome.error, "notes.txt", tb=outcome.tb)
    changed = changes(before, snapshot(folder))
    if changed:
        return "LOST", f"{detail} - but deleted {', '.join(changed[:3])}"
    return verdict, detail


def edited_definition_case(ctx: Ctx, root: Path):
    def prepare(folder, outside):
        definition = json.loads((folder / "definition.json").read_text())
        definition["seed"] = 1
        (folder / "definition.json").write_text(json.dumps(definition))
    return folder_case(ctx, root, "finished", prepare, "seed", expect_error=True)


def hostile_cases(quick: bool, root: Path):
    cases = []

    def add(name, function, timeout=60):
        cases.append((name, functools.partial(function, root=root), timeout))

    add(".lock a symlink to a file outside", functools.partial(
        lock_case, make=lambda path, outside: path.symlink_to(precious(outside))))
    add(".lock a dangling symlink", functools.partial(
        lock_case, make=lambda path, outside: path.symlink_to(outside / "nowhere")))
    add(".lock a FIFO", functools.partial(lock_case, make=lambda path, outside: os.mkfifo(path)))
    add(".lock a folder", functools.partial(lock_case, make=lambda path, outside: path.mkdir()))
    add(".lock a character device", functools.partial(
        lock_case, make=lambda path, outside: os.mknod(path, stat.S_IFCHR | 0o666,
                                                        os.makedev(1, 3))))
    for label, state, sub in [("logs/ a symlink to a folder outside", "interrupted", "logs"),
                              ("logs/csv/metrics.csv a symlink outside (finished run)",
                               "finished", "logs/csv/metrics.csv"),
                              ("logs/tensorboard a symlink outside", "interrupted",
                               "logs/tensorboard")]:
        def prepare(folder, outside, sub=sub):
            path = folder / sub
            target = outside / "target"
            if path.is_dir():
                shutil.copytree(path, target)
                shutil.rmtree(path)
            else:
                target.write_text("someone else's log")
                path.unlink()
            path.symlink_to(target)
        add(label, lambda ctx, root, s=state, p=prepare, k=Path(sub).name: hostile_case(
            ctx, root, s, p, k, expect_error_=True))
    for state, names in (("interrupted", ["definition.json", "last.ckpt", "best.ckpt",
                                          "run.json"]),
                         ("finished", ["run.json", "history.csv", "weights.pt",
                                       "test_probabilities.pt", "definition.json"])):
        for name in names:
            add(f"{state} run, {name} a FIFO", functools.partial(fifo_case, state=state,
                                                                 name=name), 45)
    for content in ["{}", "[]", "null", '{"test_acc": 0.99}',
                    '{"test_acc": "junk", "epochs": "x"}', '{"test_acc": 0.99, "epochs": 0}']:
        add(f"interrupted run, run.json planted: {content}",
            functools.partial(planted_record_case, content=content))
    for state, name in [("finished", "weights.pt"), ("finished", "history.csv"),
                        ("finished", "test_probabilities.pt"), ("interrupted", "last.ckpt")]:
        add(f"{state} run, {name} copied from another run (same model, seed 1)",
            functools.partial(foreign_case, state=state, name=name))
    add("a stray .part symlink to a file outside", functools.partial(stray_part_case,
                                                                       kind="link"))
    add("a stray .part folder", functools.partial(stray_part_case, kind="folder"))
    add("overwrite=True on a folder holding notes.txt", foreign_file_overwrite_case)
    add("definition.json edited by hand (seed 1)", edited_definition_case)
    for state, name in [("interrupted", "last.ckpt"), ("finished", "weights.pt")]:
        add(f"{state} run, {name} with a pickled payload (the worker forces "
            f"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1)",
            functools.partial(payload_case, state=state, name=name), 90)
    add("a lone best.ckpt with a pickled payload, loaded by load_or_train", lone_payload_case)
    return cases


def lone_payload_case(ctx: Ctx, root: Path):
    """A downloaded or copied checkpoint (best.ckpt without a run record) with a payload."""
    marker = ctx.dir / "PAYLOAD-RAN"
    folder = ctx.saved / "run"
    folder.mkdir(parents=True)
    shutil.copy2(root / "templates" / "finished" / "best.ckpt", folder / "best.ckpt")
    payload_file(folder / "best.ckpt", marker)
    with ctx.inproc():
        outcome = attempt(H.checkpoints.load_or_train, make_model(), name="run")
    if marker.exists():
        return "LOST", "the payload ran"
    if outcome.error is None:
        return "ACCEPTED", "the crafted checkpoint was loaded"
    return judge(outcome.error, "best.ckpt", tb=outcome.tb)


# ============================================================================================
# the worker: one category's cases, each with a time limit
# ============================================================================================

CASES = {"kills": kill_cases, "disk-full": disk_cases, "damaged": damaged_cases,
         "concurrency": concurrency_cases, "arguments": argument_cases,
         "environment": environment_cases, "hostile": hostile_cases}
PREPARE = {"damaged": prepare_templates, "hostile": prepare_templates,
           "environment": prepare_templates, "arguments": prepare_templates}


def _unblock_fifos(folder: Path) -> None:
    """Open every FIFO under ``folder`` for writing and close it, so that a reader blocked on
    one sees the end of its file."""
    for parent, names, file_names in os.walk(folder):
        for name in names + file_names:
            path = Path(parent) / name
            with contextlib.suppress(OSError):
                if stat.S_ISFIFO(os.lstat(path).st_mode):
                    os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))


def run_case(function, ctx: Ctx, timeout: float) -> tuple[str, str]:
    fired = threading.Event()
    main = threading.main_thread().ident

    def on_timeout():
        fired.set()
        _unblock_fifos(ctx.dir)

    def alarm(*_):
        raise CaseTimeout()

    signal.signal(signal.SIGALRM, alarm)
    first = threading.Timer(timeout, on_timeout)
    second = threading.Timer(timeout + 10, lambda: signal.pthread_kill(main, signal.SIGALRM))
    first.start()
    second.start()
    try:
        verdict, detail = function(ctx)
    except CaseTimeout:
        verdict, detail = "HANG", f"still running after {timeout + 10:.0f} s"
    except BaseException as error:  # noqa: BLE001 (a case of this script went wrong)
        verdict = "RAW"
        detail = (f"in the case itself: {type(error).__name__}: {one_line(error, 150)}"
                  f"{_where(traceback.format_exc())}")
    finally:
        first.cancel()
        second.cancel()
        ctx.cleanup()
    if fired.is_set() and verdict != "HANG":
        verdict, detail = "HANG", f"blocked for {timeout:.0f} s (then freed: {detail[:150]})"
    return verdict, detail


def worker(category: str, root: Path, quick: bool, keep: bool) -> None:
    os.environ.update(BASE_ENV)
    os.environ["TMPDIR"] = str(root / f"tmp-{category}")
    (root / f"tmp-{category}").mkdir(exist_ok=True)
    (root / "shared-data").mkdir(exist_ok=True)
    if category == "hostile":
        os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
    _load_helpers()
    H.torch.set_num_threads(1)
    results = root / f"results-{category}.jsonl"
    cases = CASES[category](quick, root)
    (root / f"plan-{category}.json").write_text(json.dumps([name for name, _, _ in cases]))
    prepared = None
    if category in PREPARE:
        try:
            PREPARE[category](root)
        except Exception as error:  # noqa: BLE001
            prepared = f"preparation failed: {type(error).__name__}: {one_line(error, 200)}"
    with open(results, "a") as out:
        for index, (name, function, timeout) in enumerate(cases):
            ctx = Ctx(root, category, index)
            started = time.monotonic()
            if prepared:
                verdict, detail = "RAW", prepared
            else:
                verdict, detail = run_case(function, ctx, timeout)
            out.write(json.dumps({"case": name, "verdict": verdict, "detail": detail,
                                  "seconds": round(time.monotonic() - started, 1)}) + "\n")
            out.flush()
            if verdict in GOOD and not keep:
                shutil.rmtree(ctx.dir, ignore_errors=True)


# ============================================================================================
# the pass
# ============================================================================================

def make_twins(root: Path) -> None:
    """The undisturbed run and sweep every disturbed one is compared with."""
    timing = {}
    for label, spec in (("run", {}), ("sweep", {"sweep": True,
                                              "directory": str(root / "sweep-twin" / "sweep")})):
        home = root / ("twin" if label == "run" else "sweep-twin")
        for sub in ("saved", "data", "tmp"):
            (home / sub).mkdir(parents=True, exist_ok=True)
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("COURSE_", "TORCH_FORCE"))}
        env.update(BASE_ENV, SAVED_MODELS_DIR=str(home / "saved"), DATA_DIR=str(home / "data"),
                   TMPDIR=str(home / "tmp"))
        process = Proc([PYTHON, THIS, "--drive", json.dumps(spec)], env, home)
        ready = process.wait_for(MARK + "READY", 120)
        ready_at = time.monotonic() - process.started
        rc = process.wait(300)
        if rc != 0 or not ready:
            raise SystemExit(f"the undisturbed {label} failed (status {rc}):\n{process.err}")
        if label == "run":
            timing.update(ready=ready_at, done=time.monotonic() - process.started)
        else:
            timing["sweep_done"] = time.monotonic() - process.started
    (root / "twin.json").write_text(json.dumps(timing))


def run_category(category: str, root: Path, quick: bool, keep: bool, print_line) -> list:
    results = root / f"results-{category}.jsonl"
    plan_file = root / f"plan-{category}.json"
    log = open(root / f"worker-{category}.log", "w")
    process = subprocess.Popen([PYTHON, str(THIS), "--worker", category, "--root", str(root)]
                               + (["--quick"] if quick else []) + (["--keep"] if keep else []),
                               stdout=log, stderr=subprocess.STDOUT, cwd=str(root),
                               start_new_session=True)
    deadline = time.monotonic() + BUDGET[category] * (0.6 if quick else 1)
    seen = 0
    rows = []
    while True:
        done = process.poll() is not None
        if results.exists():
            lines = results.read_text().splitlines()
            for line in lines[seen:]:
                row = json.loads(line)
                rows.append(row)
                print_line(category, row)
            seen = len(lines)
        if done:
            break
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            break
        time.sleep(0.3)
    log.close()
    plan = json.loads(plan_file.read_text()) if plan_file.exists() else []
    over = time.monotonic() > deadline
    reported = {row["case"] for row in rows}
    if not plan and process.returncode:
        plan = [f"the {category} worker"]
    for name in plan:
        if name not in reported:
            last = (root / f"worker-{category}.log").read_text().strip().splitlines()[-1:]
            row = {"case": name, "verdict": "HANG" if over else "RAW",
                   "detail": (f"the category ran past its {BUDGET[category]} s" if over else
                              f"the worker died ({process.returncode}): "
                              f"{one_line(' '.join(last), 150)}")}
            rows.append(row)
            print_line(category, row)
    return rows


def unmount_all(root: Path) -> None:
    """Unmount whatever a killed worker left mounted under ``root``."""
    with contextlib.suppress(OSError):
        points = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
        for point in sorted((p for p in points if p.startswith(str(root))), reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=CATEGORIES, help="one category")
    parser.add_argument("--quick", action="store_true", help="fewer moments and damages")
    parser.add_argument("--keep", action="store_true",
                        help="keep every case's folder (default: only those of failures)")
    parser.add_argument("--drive", help=argparse.SUPPRESS)
    parser.add_argument("--worker", choices=CATEGORIES, help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drive is not None:
        drive(json.loads(args.drive))
        return
    if args.worker:
        worker(args.worker, Path(args.root), args.quick, args.keep)
        return
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="fault-injection-"))
    print(f"fault injection in {root} ({'quick' if args.quick else 'full'} pass)", flush=True)
    make_twins(root)
    print(f"twins ready in {time.monotonic() - started:.0f} s", flush=True)
    categories = [args.only] if args.only else list(CATEGORIES)
    all_rows = {}

    def print_line(category, row):
        print(f"{category} | {row['case']} | {row['verdict']} | {row['detail']}", flush=True)

    for category in categories:
        all_rows[category] = run_category(category, root, args.quick, args.keep, print_line)
    print()
    header = f"{'category':<12}" + "".join(f"{v:>13}" for v in VERDICTS) + f"{'total':>8}"
    print(header)
    totals = dict.fromkeys(VERDICTS, 0)
    for category, rows in all_rows.items():
        counts = {v: sum(r["verdict"] == v for r in rows) for v in VERDICTS}
        for v in VERDICTS:
            totals[v] += counts[v]
        print(f"{category:<12}" + "".join(f"{counts[v]:>13}" for v in VERDICTS)
              + f"{len(rows):>8}")
    print(f"{'all':<12}" + "".join(f"{totals[v]:>13}" for v in VERDICTS)
          + f"{sum(totals.values()):>8}")
    failures = sum(totals[v] for v in FAILURES)
    print(f"\n{sum(totals.values())} cases in {time.monotonic() - started:.0f} s; {failures} "
          f"failure(s). Folders of failed cases are kept under {root}.")
    unmount_all(root)
    if not failures and not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
