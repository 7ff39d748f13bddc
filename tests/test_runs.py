"""Run folders cannot lose or mix work: names are names, a folder is bound to the settings of its
run, one process writes it, a run is complete only when whole, and a bad argument, a diverging
loss or a signal ends a run with a clear message."""

import contextlib
import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
from doubles import CrashAt, Crashed

from helpers import checkpoints, data, models, recipes, sweep, training
from helpers._machinery import config, files, runs

ROOT = Path(__file__).resolve().parents[1]
TRAIN_SCRIPT = ROOT / "scripts" / "train.py"
RECIPE = recipes.get_recipe("sgd-cosine", batch_size=32, epochs=3, lr=0.05)


def _data(**options):
    options.setdefault("subset", (128, 64, 64))
    return data.ImageDataModule("CIFAR10", smoke=True, val_size=1000, eval_batch_size=64, **options)


def _model(c=8):
    training.seed(0)
    return models.create("allcnn", c=c, num_classes=10, dropout=0.0)


def _fit(name, model=None, recipe=RECIPE, **options):
    options.setdefault("overwrite", False)  # as in full mode: keep, resume or refuse
    options.setdefault("epochs", 2)
    return training.fit(model or _model(), _data(), recipe, name=name, precision="32-true",
                        enable_progress_bar=False, **options)


def _smoke_runs(course_env) -> Path:
    return course_env / "saved_models" / "smoke"


# --- 1. a run name is a name, not a path ---------------------------------------------------

BAD_NAMES = ["..", ".", "", "a/b", "/tmp", "../saved_models", "run name", "ü"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_run_name_that_is_not_a_name_is_refused_and_nothing_is_deleted(course_env, name):
    saved = course_env / "saved_models"
    sentinel, other = saved / "keep-me.txt", saved / "smoke" / "other-run" / "run.json"
    other.parent.mkdir(parents=True)
    sentinel.write_text("a finished run's neighbour")
    other.write_text("{}")
    with pytest.raises(ValueError, match="not a valid name: use letters, digits"):
        training.fit(_model(), _data(), RECIPE, name=name, epochs=1)
    with pytest.raises(ValueError, match="not a valid name"):
        checkpoints.load_or_train(_model(), _data(), RECIPE, name=name)
    assert sentinel.exists() and other.exists()


def test_the_training_script_refuses_a_path_as_name(course_env):
    sentinel = course_env / "saved_models" / "keep-me.txt"
    sentinel.parent.mkdir(parents=True)
    sentinel.write_text("x")
    done = subprocess.run([sys.executable, str(TRAIN_SCRIPT), "cnn-toy", "CIFAR10", "sgd-cosine",
                           "--name", ".."], capture_output=True, text=True, check=False)
    assert done.returncode == 2 and "not a valid name" in done.stderr
    assert sentinel.exists()


def test_a_sweep_folder_must_have_a_valid_name(course_env):
    spec = sweep.SweepSettings("CIFAR10", "sgd-cosine", epochs=1)
    with pytest.raises(ValueError, match="sweep folder name '..' is not a valid name"):
        sweep.run_sweep([], spec, course_env / "sweeps" / "..")


def test_overwrite_deletes_only_the_run_s_own_files(course_env):
    folder = _smoke_runs(course_env) / "mine"
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("not the course's")
    with pytest.raises(ValueError, match="not a run folder .*notes.txt.*nothing was deleted"):
        _fit("mine", overwrite=True)
    assert (folder / "notes.txt").exists()


# --- 2. a run folder is bound to its settings -----------------------------------------------

def test_a_finished_run_is_loaded_not_trained_again(course_env, capsys):
    first = _fit("bound")
    record = (first.directory / "run.json").read_text()
    again = _fit("bound", model=_model())
    assert "is finished in" in capsys.readouterr().out
    assert (first.directory / "run.json").read_text() == record  # nothing rewritten
    pd.testing.assert_frame_equal(again.history, first.history)
    for a, b in zip(first.model.state_dict().values(), again.model.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("change, field", [
    ({"seed": 5}, "seed: 0 in the folder vs 5 now"),
    ({"epochs": 3}, "epochs: 2 in the folder vs 3 now"),
    ({"recipe": recipes.get_recipe("sgd-step", batch_size=32)}, "recipe.schedule: 'cosine'"),
    ({"model": "c=16"}, "model.hparams.c: 8 in the folder vs 16 now"),
])
def test_rerunning_a_finished_run_with_other_settings_is_an_error(course_env, change, field):
    first = _fit("fixed")
    record = (first.directory / "run.json").read_text()
    if change.get("model"):
        change = {"model": _model(c=16)}
    with pytest.raises(runs.DefinitionMismatch, match="finished run with other settings") as info:
        _fit("fixed", **change)
    message = str(info.value)
    assert field in message and "another name" in message and "overwrite=True" in message
    assert "remove the folder" in message  # what a learner whose old runs no longer fit can do
    assert (first.directory / "run.json").read_text() == record


def test_overwrite_trains_afresh_with_the_new_settings(course_env):
    _fit("afresh")
    run = _fit("afresh", seed=5, overwrite=True)
    assert run.info["seed"] == 5 and run.info["definition"]["seed"] == 5


def test_an_interrupted_run_with_other_settings_is_not_resumed(course_env):
    with pytest.raises(Crashed):
        _fit("half", epochs=3, callbacks=[CrashAt(epoch=1, batch=2)])
    with pytest.raises(runs.DefinitionMismatch, match="interrupted run with other settings"):
        _fit("half", epochs=3, seed=1)
    resumed = _fit("half", epochs=3)
    assert resumed.history["epoch"].tolist() == [1, 2, 3]


def test_load_or_train_tells_a_learner_who_changed_the_model(course_env):
    training.fit(_model(c=8), _data(), RECIPE, name="nb", epochs=1, precision="32-true",
                 directory=config.saved_models_dir(), enable_progress_bar=False)
    loaded = checkpoints.load_or_train(_model(c=8), _data(), RECIPE, name="nb")
    assert loaded.info["test_acc"] is not None
    with pytest.raises(runs.DefinitionMismatch, match="model.hparams.c: 8 in the folder vs 32"):
        checkpoints.load_or_train(_model(c=32), _data(), RECIPE, name="nb")
    with pytest.raises(runs.DefinitionMismatch, match="seed: 0 in the folder vs 3"):
        checkpoints.load_or_train(_model(c=8), _data(), RECIPE, seed=3, name="nb")


def test_load_or_train_loads_a_full_run_from_quick_mode_data(course_env):
    """A notebook in smoke mode asks with its small subset; the saved full run still loads."""
    training.fit(_model(), _data(subset=(256, 64, 64)), RECIPE, name="full", epochs=1,
                 precision="32-true", directory=config.saved_models_dir(),
                 enable_progress_bar=False)
    run = checkpoints.load_or_train(_model(), _data(subset=(128, 64, 64)), RECIPE, name="full")
    assert run.info["images"]["train"] == 256


def test_a_sweep_folder_is_bound_to_its_spec(course_env):
    folder = course_env / "sweeps" / "bound"
    first = sweep.SweepSettings("CIFAR10", "sgd-cosine", epochs=1, subset=(128, 32, 32))
    other = sweep.SweepSettings("CIFAR10", "sgd-cosine", epochs=2, subset=(128, 32, 32))
    sweep.run_sweep([], other, folder)
    sweep.run_sweep([], first, folder)  # nothing trained yet: nothing to lose, so rebound
    assert json.loads((folder / "sweep.json").read_text())["epochs"] == 1
    tiny = sweep.Variant(0, 0.0, 4.0, 0.0, tuple([4] * 13 + [8, 8]))
    sweep.run_sweep([tiny], first, folder)
    sweep.run_sweep([tiny], first, folder)  # the same spec: fine
    with pytest.raises(runs.DefinitionMismatch, match="another SweepSettings:\n  epochs: 1 in the "
                                                      "folder vs 2 now"):
        sweep.run_sweep([], other, folder)


# --- 3. one writer per run folder --------------------------------------------------------------

@pytest.mark.slow
def test_a_second_process_cannot_train_into_a_folder_in_use(course_env, hold_lock):
    folder = _smoke_runs(course_env) / "busy"
    holder = hold_lock(folder)
    start = time.perf_counter()
    with pytest.raises(runs.RunInUse, match=f"in use: another process .*process {holder.pid}"):
        _fit("busy")
    assert time.perf_counter() - start < 10  # at once, not after waiting
    assert not (folder / "definition.json").exists()


@pytest.mark.slow
def test_the_lock_of_a_killed_process_is_taken_over(course_env, capsys, hold_lock):
    folder = _smoke_runs(course_env) / "stale"
    holder = hold_lock(folder)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    run = _fit("stale")
    assert f"taking over the lock left by a process that no longer runs (process {holder.pid}" \
        in capsys.readouterr().out
    assert runs.is_complete(run.directory)


def test_a_symlinked_lock_file_is_refused_and_its_target_left_alone(course_env):
    folder = _smoke_runs(course_env) / "linked-lock"
    folder.mkdir(parents=True)
    target = course_env / "precious.txt"
    target.write_text("not the run's")
    (folder / runs.LOCK).symlink_to(target)
    with pytest.raises(runs.CheckpointError, match=r"\.lock is not a regular file .*delete it"):
        _fit("linked-lock")
    with pytest.raises(runs.CheckpointError, match="not a regular file"):
        runs.in_use(folder)
    assert target.read_text() == "not the run's"
    assert not (folder / runs.DEFINITION).exists()


def test_a_fifo_as_lock_file_is_refused_at_once(course_env):
    folder = _smoke_runs(course_env) / "fifo-lock"
    folder.mkdir(parents=True)
    os.mkfifo(folder / runs.LOCK)

    def hung(*args):
        raise TimeoutError("opening the lock blocked on a FIFO")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(10)
    try:
        for attempt in (lambda: runs.in_use(folder), lambda: _fit("fifo-lock")):
            with pytest.raises(runs.CheckpointError, match="not a regular file"):
                attempt()
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


class _AfterEpoch(pl.Callback):
    """Does ``action(folder)`` at the end of the first training epoch, before its checkpoints."""

    def __init__(self, action, folder):
        self.action, self.folder = action, folder

    def on_train_epoch_end(self, trainer, module):
        if trainer.current_epoch == 0:
            self.action(self.folder)


def _replace_lock(folder):
    (folder / runs.LOCK).unlink()
    (folder / runs.LOCK).write_text("process 1 on another machine")


@pytest.mark.parametrize("action, what", [
    (lambda folder: (folder / runs.LOCK).unlink(), "lost its lock file"),
    (_replace_lock, "had its lock file replaced"),
    (shutil.rmtree, "was deleted"),
])
def test_a_holder_whose_lock_was_taken_away_stops_before_writing_anything(course_env, action,
                                                                          what):
    """Deleting ``.lock`` lets a second process lock a new file and train into the folder; the
    first one notices before its next write and stops, so the folder never mixes two runs."""
    folder = _smoke_runs(course_env) / "taken"
    with pytest.raises(runs.LockLost, match=f"{what} while this process trained"):
        _fit("taken", callbacks=[_AfterEpoch(action, folder)])
    assert not (folder / runs.LAST).exists() and not runs.is_complete(folder)
    if what == "was deleted":
        assert not folder.exists()  # nothing recreated it


@pytest.mark.parametrize("linked", [runs.LOGS, runs.LAST, runs.HISTORY])
def test_no_run_file_is_read_or_written_through_a_symlink(course_env, linked):
    folder = _smoke_runs(course_env) / "linked"
    folder.mkdir(parents=True)
    outside = course_env / "outside"
    if linked == runs.LOGS:
        outside.mkdir()
    else:
        outside.write_text("someone else's")
    (folder / linked).symlink_to(outside)
    with pytest.raises(runs.CheckpointError, match=f"{linked} is a symbolic link"):
        _fit("linked")
    assert (list(outside.iterdir()) == [] if linked == runs.LOGS
            else outside.read_text() == "someone else's")


def test_a_symlink_planted_in_the_logs_is_refused(course_env):
    run = _fit("planted", epochs=1)
    log = next((run.directory / runs.LOGS).rglob("metrics.csv"))
    log.unlink()
    log.symlink_to(course_env / "elsewhere.csv")
    with pytest.raises(runs.CheckpointError, match="metrics.csv is a symbolic link"):
        _fit("planted", epochs=1)
    assert not (course_env / "elsewhere.csv").exists()


def test_a_finished_run_on_read_only_storage_is_loaded(course_env, monkeypatch):
    """As root, permissions cannot make a folder read-only, so the storage's refusal to open
    ``.lock`` for writing (EROFS) is what the test makes."""
    finished = _fit("on-a-dvd", epochs=1)
    opened = runs._open_regular

    def read_only(path, writable=True, **options):
        if writable:
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return opened(path, writable, **options)

    monkeypatch.setattr(runs, "_open_regular", read_only)
    loaded = _fit("on-a-dvd", epochs=1)
    assert (loaded.info["date"], loaded.info["test_acc"]) == (finished.info["date"],
                                                                finished.info["test_acc"])
    with pytest.raises(OSError, match="Read-only"):  # nothing can be trained there
        _fit("not-there", epochs=1)


# --- 4. arguments are checked where they enter -----------------------------------------------

@pytest.mark.parametrize("epochs, error", [(-1, ValueError), (0, ValueError), (2.5, TypeError),
                                           ("3", TypeError)])
def test_epochs_must_be_a_positive_whole_number(course_env, epochs, error):
    with pytest.raises(error, match="epochs must be a whole number of at least 1"):
        training.fit(_model(), _data(), RECIPE, name="epochs", epochs=epochs)


def test_the_training_script_checks_epochs(course_env):
    done = subprocess.run([sys.executable, str(TRAIN_SCRIPT), "cnn-toy", "CIFAR10", "sgd-cosine",
                           "--name", "x", "--epochs", "-1"], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 2 and "--epochs: must be a whole number of at least 1" in done.stderr


def test_a_batch_larger_than_the_training_split_is_an_error(course_env):
    with pytest.raises(ValueError, match="batch size 128 of recipe 'sgd-cosine' is larger than "
                                         "the training split \\(100 images\\)"):
        training.fit(_model(), _data(subset=(100, 64, 64)), "sgd-cosine", name="big", epochs=1)


@pytest.mark.parametrize("val_size", [60_000, 1.0, 0, -5, "5000"])
def test_a_validation_size_that_leaves_no_training_data_is_an_error(val_size):
    with pytest.raises((ValueError, TypeError), match="val_size"):
        module = data.ImageDataModule("CIFAR10", smoke=True, val_size=val_size)
        module.setup()


@pytest.mark.parametrize("field, value, valid", [
    ("optimizer", "adam", "valid: sgd, adamw"),
    ("schedule", "linear", "valid: step, cosine, sgdr, constant"),
    ("lr", -0.1, "a positive number"),
    ("batch_size", 0, "a whole number of at least 1"),
    ("epochs", 2.5, "a whole number of at least 1"),
    ("momentum", 1.5, "in \\[0, 1\\)"),
    ("milestones", (50, 75), "fractions of the run"),
])
def test_a_bad_recipe_fails_when_it_is_made(field, value, valid):
    with pytest.raises(ValueError, match=f"recipe 'sgd-step': {field}=.* is not valid; .*{valid}"):
        recipes.get_recipe("sgd-step", **{field: value})


@pytest.mark.parametrize("classes", [1, 0, -3])
def test_fewer_than_two_classes_is_an_error(classes):
    with pytest.raises(ValueError, match=f"num_classes={classes}.*at least 2"):
        models.create("allcnn", num_classes=classes)


def test_sweep_spec_and_depth_are_checked():
    with pytest.raises(ValueError, match="augment='jitter' is not an augmentation; valid: crop-fl"):
        sweep.SweepSettings("MNIST", "mundt-sgdr", augment="jitter")
    with pytest.raises(ValueError,
                       match="SweepSettings epochs must be a whole number of at least 1"):
        sweep.SweepSettings("MNIST", "mundt-sgdr", epochs=0)
    for depth in ("16", 16.0):
        with pytest.raises(TypeError, match=f"depth must be a whole number.*got {depth!r}"):
            sweep.skew_normal_variants(depth)


# --- 5. a diverging run stops ----------------------------------------------------------------

class _PoisonInSecondEpoch(training.pl.Callback):
    """Makes the weights NaN at the third step of the second epoch, as a too-high learning
    rate eventually does."""

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.current_epoch == 1 and batch_idx == 2:
            with torch.no_grad():
                next(module.parameters()).fill_(float("nan"))


def test_a_diverging_run_stops_records_nothing_and_keeps_the_last_good_checkpoint(course_env):
    with pytest.raises(training.TrainingDiverged,
                       match="diverged in epoch 2: the training loss became NaN or infinite at "
                             "step 3 of 4.*learning rate") as info:
        _fit("diverges", epochs=3, callbacks=[_PoisonInSecondEpoch()])
    assert "checkpoint of epoch 1" in str(info.value)
    folder = _smoke_runs(course_env) / "diverges"
    assert not (folder / "run.json").exists() and not runs.is_complete(folder)
    last = torch.load(folder / "last.ckpt", weights_only=True)
    assert last["epoch"] == 0  # the first epoch, counted from 0
    assert all(torch.isfinite(value).all() for value in last["state_dict"].values()
               if value.is_floating_point())


class _PoisonAfterTheLastStep(training.pl.Callback):
    """NaN weights after the first epoch's last update, whose loss was still finite."""

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if trainer.current_epoch == 0 and batch_idx + 1 == trainer.num_training_batches:
            with torch.no_grad():
                next(module.parameters()).fill_(float("inf"))


def test_weights_that_blew_up_in_the_last_step_are_never_checkpointed(course_env):
    with pytest.raises(training.TrainingDiverged, match="diverged in epoch 1: the validation "
                                                        "loss became NaN or infinite"):
        _fit("blown", callbacks=[_PoisonAfterTheLastStep()])
    folder = _smoke_runs(course_env) / "blown"
    assert not (folder / "last.ckpt").exists() and not (folder / "best.ckpt").exists()


def test_a_huge_learning_rate_stops_the_run(course_env):
    """The issue's case: lr=1e6 used to train every epoch on NaN and be saved as a result."""
    recipe = recipes.get_recipe("sgd-cosine", batch_size=32, lr=1e6, warmup_epochs=0)
    with pytest.raises(training.TrainingDiverged, match="diverged in epoch .*lr=100000"):
        _fit("huge", recipe=recipe, epochs=3)
    assert not (_smoke_runs(course_env) / "huge" / "run.json").exists()


# --- 6. signals --------------------------------------------------------------------------------

@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_ends_training_with_a_failure_status_and_how_to_resume(course_env,
                                                                          signal_number):
    folder = _smoke_runs(course_env) / "signalled"
    command = [sys.executable, str(TRAIN_SCRIPT), "cnn-toy", "CIFAR10", "sgd-cosine",
               "--name", "signalled", "--epochs", "200"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.time() + 120
    while not (folder / "last.ckpt").exists() and time.time() < deadline:
        time.sleep(0.2)
    process.send_signal(signal_number)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signal_number, err[-2000:]
    name = signal.Signals(signal_number).name
    assert f"{name}: training of signalled stopped in epoch" in out
    assert "starts afresh in smoke mode" in out  # what starting it again would do here
    assert not (folder / "run.json").exists() and (folder / "last.ckpt").exists()


def test_an_interrupted_run_resumes_when_started_again(course_env):
    """The same in one process: the run stopped by SIGINT resumes with overwrite=False."""
    class _Interrupt(training.pl.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if trainer.current_epoch == 1 and batch_idx == 1:
                os.kill(os.getpid(), signal.SIGINT)

    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(training.RunInterrupted, match="SIGINT: .*stopped in epoch 2 of 3"):
        _fit("resumable", epochs=3, callbacks=[_Interrupt()])
    assert signal.getsignal(signal.SIGINT) is before  # Ctrl+C works as before, not ignored
    folder = config.saved_models_dir() / "smoke" / "resumable"
    assert runs.epochs_done(folder) == 1  # what make reference's estimate leaves out
    assert runs.epochs_done(config.saved_models_dir() / "never-trained") == 0
    run = _fit("resumable", epochs=3)
    assert run.history["epoch"].tolist() == [1, 2, 3]


class _SignalWhileTesting(training.pl.Callback):
    def __init__(self, signal_number):
        self.signal_number = signal_number

    def on_test_batch_start(self, trainer, module, batch, batch_idx, dataloader_idx=0):
        os.kill(os.getpid(), self.signal_number)


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_the_final_test_stops_it_and_the_run_is_tested_when_started_again(
        course_env, signal_number, capsys):
    name = signal.Signals(signal_number).name
    with pytest.raises(training.RunInterrupted, match=f"{name}: tested .* final test was stop"):
        _fit("tested", epochs=2, callbacks=[_SignalWhileTesting(signal_number)])
    assert capsys.readouterr().out.count("final test was stopped") == 1  # one line
    folder = _smoke_runs(course_env) / "tested"
    assert runs.epochs_done(folder) == 2 and not runs.is_complete(folder)
    run = _fit("tested", epochs=2)
    assert run.info["resumed_after_epoch"] == 2  # tested, nothing trained again
    assert run.history["epoch"].tolist() == [1, 2]


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_an_evaluation_stops_it_with_one_line(course_env, signal_number,
                                                              monkeypatch):
    original = training.Classifier.evaluation_logits

    def signalled(self, images):
        os.kill(os.getpid(), signal_number)
        return original(self, images)

    monkeypatch.setattr(training.Classifier, "evaluation_logits", signalled)
    with pytest.raises(training.RunInterrupted, match="evaluation was stopped; nothing"):
        training.evaluate(_model(), _data())


# --- damage is named before any training, a full disk says so -------------------------------

class _CountSteps(pl.Callback):
    def __init__(self):
        self.steps = 0

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.steps += 1


def _garble_the_middle(path: Path) -> None:
    """Overwrite 64 bytes in the middle of a file: inside a tensor's bytes, which torch loads
    without noticing."""
    content = bytearray(path.read_bytes())
    middle = len(content) // 2
    content[middle:middle + 64] = b"\xff" * 64
    path.write_bytes(bytes(content))


def test_a_script_stopped_by_a_signal_exits_deaf_to_a_second_one(monkeypatch):
    """RunInterrupted.exit, as scripts/train.py ends: status 128 + the signal, and a second
    Ctrl+C while Python shuts down is ignored (it printed a traceback from a destructor)."""
    handlers = {}
    monkeypatch.setattr(signal, "signal", lambda number, handler: handlers.update({
        number: handler}))
    with pytest.raises(SystemExit) as exited:
        training.RunInterrupted("SIGINT: stopped", signal.SIGINT).exit()
    assert exited.value.code == 130
    assert handlers == {signal.SIGINT: signal.SIG_IGN, signal.SIGTERM: signal.SIG_IGN}


@pytest.mark.parametrize("name, damage", [("last.ckpt", "truncate"), ("best.ckpt", "delete"),
                                          ("best.ckpt", "garble"), ("last.ckpt", "garble-middle"),
                                          ("last.ckpt", "another run's")])
def test_a_damaged_checkpoint_of_an_interrupted_run_is_named_before_any_training(
        course_env, interrupt_at_epoch, name, damage):
    with pytest.raises(training.RunInterrupted):
        _fit("damaged", epochs=3, callbacks=[interrupt_at_epoch(1)])
    path = _smoke_runs(course_env) / "damaged" / name
    if damage == "delete":
        path.unlink()
    elif damage == "garble-middle":
        _garble_the_middle(path)
    elif damage == "another run's":  # the same model and recipe, another seed
        with pytest.raises(training.RunInterrupted):
            _fit("other", epochs=3, seed=1, callbacks=[interrupt_at_epoch(1)])
        shutil.copy(path.parent.parent / "other" / name, path)
    else:
        content = path.read_bytes()
        path.write_bytes(content[:len(content) // 2] if damage == "truncate"
                         else content[:100] + bytes(100) + content[200:])
    steps = _CountSteps()
    with pytest.raises(runs.CheckpointError, match=f"{name} (is damaged|is missing|was written "
                                                   f"by another run).*nothing has been trained "
                                                   f"yet"):
        _fit("damaged", epochs=3, callbacks=[steps])
    assert steps.steps == 0


def _mount_tmpfs(folder: Path, size: str) -> bool:
    folder.mkdir(parents=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True).returncode == 0


class _FillTheDisk(pl.Callback):
    """Before epoch ``epoch`` ends (and its checkpoint is written), fill the run's disk."""

    def __init__(self, folder, epoch):
        self.folder, self.epoch = folder, epoch

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        last_batch = batch_idx + 1 == trainer.num_training_batches
        if trainer.current_epoch + 1 == self.epoch and last_batch:
            with open(self.folder / "filler", "wb") as handle, contextlib.suppress(OSError):
                while True:
                    handle.write(bytes(1 << 16))
                    handle.flush()


def test_a_full_disk_says_so_names_the_folder_and_leaves_the_run_resumable(course_env,
                                                                           monkeypatch):
    disk = course_env / "small-disk"
    if not _mount_tmpfs(disk, "8M"):
        pytest.skip("needs permission to mount a tmpfs (root), to have a disk that fills up")
    try:
        monkeypatch.setenv("SAVED_MODELS_DIR", str(disk))
        with pytest.raises(OSError, match="no space left on device for .* in "
                                          f"{disk / 'smoke' / 'full-disk'}"):
            _fit("full-disk", epochs=3, callbacks=[_FillTheDisk(disk, 2)])
        folder = disk / "smoke" / "full-disk"
        assert not list(folder.glob(".*.part"))  # nothing half-written is left
        assert runs.epochs_done(folder) == 1  # epoch 1's checkpoint is whole
        (disk / "filler").unlink()
        run = _fit("full-disk", epochs=3)
        assert run.info["resumed_after_epoch"] == 1 and run.history["epoch"].tolist() == [1, 2, 3]
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_disk_full_from_the_start_says_so_before_anything_is_trained(course_env, monkeypatch):
    disk = course_env / "full-disk"
    if not _mount_tmpfs(disk, "1M"):
        pytest.skip("needs permission to mount a tmpfs (root), to have a disk that fills up")
    try:
        (disk / "smoke" / "full").mkdir(parents=True)
        with open(disk / "filler", "wb") as handle, contextlib.suppress(OSError):
            while True:
                handle.write(bytes(1 << 16))
                handle.flush()
        monkeypatch.setenv("SAVED_MODELS_DIR", str(disk))
        steps = _CountSteps()
        with pytest.raises(OSError, match="no space left on device for .lock in "
                                          f"{disk / 'smoke' / 'full'}.*Nothing was trained"):
            _fit("full", callbacks=[steps])
        assert steps.steps == 0
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


# --- 9. complete means complete ----------------------------------------------------------------

def test_a_kill_between_the_last_files_leaves_no_complete_run(course_env, monkeypatch):
    write = files.write_text

    def killed_at_the_record(target, text):
        if Path(target).name == "run.json":
            raise KeyboardInterrupt  # the process dies before the record is written
        write(target, text)

    monkeypatch.setattr(files, "write_text", killed_at_the_record)
    with pytest.raises(KeyboardInterrupt):
        _fit("almost")
    folder = _smoke_runs(course_env) / "almost"
    assert (folder / "history.csv").exists() and not runs.is_complete(folder)
    monkeypatch.setattr(files, "write_text", write)
    run = _fit("almost")  # finishes it: nothing left to train, the record is written
    assert runs.is_complete(folder) and run.history["epoch"].tolist() == [1, 2]


RESTORE = "Restore it .* overwrite=True"
OTHER_RECIPE = recipes.get_recipe("sgd-cosine", batch_size=32, epochs=3, lr=0.02)


@pytest.mark.parametrize("damage, message, remedy", [
    (lambda folder: (folder / "run.json").write_text("{not json"), "run.json is unreadable",
     RESTORE),
    (lambda folder: (folder / "history.csv").unlink(), "history.csv is missing or unreadable",
     RESTORE),
    (lambda folder: (folder / "history.csv").write_text(
        (folder / "history.csv").read_text().splitlines()[0] + "\n"),
     "history.csv is (truncated or damaged: 0 epoch row|not the file this run recorded)",
     RESTORE),
    (lambda folder: _garble_the_middle(folder / runs.WEIGHTS),
     "weights.pt is not the file this run recorded", RESTORE),
    (lambda folder: shutil.copy(folder.parent / "other" / runs.WEIGHTS, folder / runs.WEIGHTS),
     "weights.pt is not the file this run recorded", RESTORE),
    (lambda folder: shutil.copy(folder.parent / "other" / runs.HISTORY, folder / runs.HISTORY),
     "history.csv is not the file this run recorded", RESTORE),
    (lambda folder: (folder / runs.WEIGHTS).unlink(), "weights.pt is missing", RESTORE),
    (lambda folder: _unbind_files(folder), r"history.csv is not the file this run recorded "
     r"\(run.json binds no such file\)", RESTORE),
    (lambda folder: _link_out(folder, runs.RECORD), "run.json is a symbolic link",
     "Replace the link"),
    (lambda folder: _link_out(folder, runs.WEIGHTS), "weights.pt is a symbolic link",
     "Replace the link"),
])
def test_a_damaged_run_is_named_with_the_remedy(course_env, damage, message, remedy):
    """Damaged, linked out of the folder, or replaced by another run's file (the same model,
    trained with another learning rate)."""
    folders = [training.fit(_model(), _data(), recipe, name=name, epochs=2,
                            precision="32-true", directory=config.saved_models_dir(),
                            enable_progress_bar=False).directory
               for name, recipe in (("damaged", RECIPE), ("other", OTHER_RECIPE))]
    damage(folders[0])
    with pytest.raises(runs.CheckpointError, match=message) as info:
        checkpoints.load_or_train(_model(), _data(), RECIPE, name="damaged")
    assert re.search(remedy, str(info.value))


def _unbind_files(folder: Path) -> None:
    """A run record that binds none of the run's files by checksum."""
    record = json.loads((folder / runs.RECORD).read_text())
    del record["files"]
    (folder / runs.RECORD).write_text(json.dumps(record))


def test_a_run_without_its_definition_is_neither_loaded_nor_resumed(course_env):
    """Every run the course ships has its definition.json (the eight recorded before it existed
    were given theirs); a folder holding a run without one is refused, naming the remedies."""
    folder = _fit("undefined", epochs=1, directory=config.saved_models_dir()).directory
    (folder / runs.DEFINITION).unlink()
    for attempt in (lambda: checkpoints.load_or_train(_model(), _data(), RECIPE,
                                                      name="undefined"),
                    lambda: _fit("undefined", epochs=1, directory=config.saved_models_dir())):
        with pytest.raises(runs.DefinitionMismatch, match="holds a run but no record of the "
                           "settings it was trained with.*overwrite=True"):
            attempt()
    assert (folder / runs.WEIGHTS).exists()  # refused, not deleted


def _link_out(folder: Path, name: str) -> None:
    """Replace a run's file by a symbolic link to a copy of it outside the folder."""
    outside = folder.parent / f"outside-{name}"
    (folder / name).rename(outside)
    (folder / name).symlink_to(outside)


@pytest.mark.parametrize("damage", ["garble", "link"])
def test_damaged_test_probabilities_are_named(course_env, damage):
    run = _fit("probabilities", epochs=1)
    if damage == "garble":
        _garble_the_middle(run.directory / runs.PROBABILITIES)
    else:
        _link_out(run.directory, runs.PROBABILITIES)
    word = "sha256 differs" if damage == "garble" else "symbolic link"
    with pytest.raises(runs.CheckpointError, match=f"{runs.PROBABILITIES}.*{word}"):
        run.test_probabilities()


def test_a_garbled_lock_file_is_taken_over(course_env, capsys):
    folder = _smoke_runs(course_env) / "garbled-lock"
    folder.mkdir(parents=True)
    (folder / runs.LOCK).write_bytes(b"\xff\xfe garbage \x00")
    run = _fit("garbled-lock", epochs=1)
    assert runs.is_complete(run.directory) and "taking over the lock" in capsys.readouterr().out


def test_stray_part_files_are_removed_at_the_next_start(course_env):
    folder = _smoke_runs(course_env) / "stray"
    folder.mkdir(parents=True)
    stray = [folder / ".best.ckpt.4242.part", folder / "logs" / ".x.4242.part"]
    stray[1].parent.mkdir()
    for path in stray:
        path.write_text("half")
    _fit("stray", overwrite=True)
    assert not any(path.exists() for path in stray)
    sweep_folder = course_env / "sweeps" / "s"
    sweep_folder.mkdir(parents=True)
    (sweep_folder / ".results.csv.4242.part").write_text("half")
    sweep.run_sweep([], sweep.SweepSettings("CIFAR10", "sgd-cosine", epochs=1), sweep_folder)
    assert not list(sweep_folder.glob("*.part"))


def test_checkpoints_are_written_without_temporary_files_elsewhere(course_env, monkeypatch):
    """Lightning's own writer goes through a temporary file in $TMPDIR, which a killed process
    leaves there; the course's writes beside the target only."""
    def no_temporary_files(*args, **kwargs):
        raise AssertionError("a temporary file outside the run folder")

    monkeypatch.setattr(tempfile, "mkstemp", no_temporary_files)
    run = _fit("no-tmp")
    assert (run.directory / "best.ckpt").exists()


def test_a_finished_run_ships_plain_weights_and_its_test_probabilities(course_env):
    run = _fit("shipped")
    state = torch.load(run.directory / "weights.pt", weights_only=True)
    assert not any(key.startswith(("optimizer", "model.")) for key in state)
    fresh = _model()
    fresh.load_state_dict(state, strict=True)
    module = _data()
    probabilities, labels = training.predict(fresh.eval(), module, precision="32-true")
    recorded, recorded_labels = run.test_probabilities()
    assert torch.equal(recorded_labels, labels) and recorded.shape == (64, 10)
    assert (recorded - probabilities).abs().max() < 1e-3  # float16 of the same numbers
    accuracy = (recorded.argmax(1) == labels).float().mean().item()
    assert accuracy == pytest.approx(run.info["test_acc"], abs=1e-6)
    assert run.info["commit"] and run.info["wall_seconds"] > 0


def test_smoke_mode_starts_a_smoke_run_afresh_each_time(course_env, capsys):
    """A notebook in smoke mode exercises training every time: an identical smoke run from
    before is replaced, not loaded."""
    options = dict(epochs=1, precision="32-true", enable_progress_bar=False, name="again")
    first = checkpoints.load_or_train(_model(), _data(), RECIPE, **options)
    again = checkpoints.load_or_train(_model(), _data(), RECIPE, **options)
    assert "is finished in" not in capsys.readouterr().out
    assert again.directory == first.directory == _smoke_runs(course_env) / "again"
    assert again.info["date"] >= first.info["date"] and runs.is_complete(again.directory)


def test_a_record_answers_what_kind_of_run_it_is():
    published = runs.Record({"checkpoint": "GoogleNet.ckpt", "url": "https://example.org/x"})
    assert published.is_published and not published.is_result and published.test_acc is None
    result = runs.Record({"test_acc": 0.9, "smoke_run": False, "data": "FashionMNIST",
                          "epochs": 10})
    assert result.is_result and not result.is_published and not result.is_smoke_run
    assert (result.data, result.epochs, result.test_acc) == ("FashionMNIST", 10, 0.9)
    smoke = runs.Record({"test_acc": 0.1, "smoke_run": True})
    assert smoke.is_smoke_run and not smoke.is_result



def test_a_planted_record_in_an_interrupted_run_is_not_a_finished_run(course_env,
                                                                     interrupt_at_epoch):
    with pytest.raises(training.RunInterrupted):
        _fit("planted-record", epochs=3, callbacks=[interrupt_at_epoch(1)])
    folder = _smoke_runs(course_env) / "planted-record"
    (folder / runs.RECORD).write_text("{}")
    with pytest.raises(runs.CheckpointError, match="run.json does not hold a finished run's"):
        _fit("planted-record", epochs=3)


def test_a_fifo_in_place_of_a_definition_is_refused_at_once(course_env):
    """Reading it would wait for a writer forever (before: load_or_train hung)."""
    run = _fit("fifo", epochs=1)
    (run.directory / runs.DEFINITION).unlink()
    os.mkfifo(run.directory / runs.DEFINITION)

    def hung(signal_number, frame):
        raise AssertionError("blocked on the FIFO")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(30)
    try:
        with pytest.raises(runs.CheckpointError, match="definition.json is not a regular file"):
            checkpoints.load_or_train(_model(), _data(), RECIPE, name="fifo", epochs=1,
                                      precision="32-true")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_before_training_begins_stops_the_run_in_one_line(course_env, monkeypatch,
                                                                   capsys, number):
    """Before: SIGTERM then ended the process silently with status -15."""
    write = runs.write_definition

    def signalled_while_preparing(folder, wanted):
        write(folder, wanted)
        os.kill(os.getpid(), number)

    monkeypatch.setattr(runs, "write_definition", signalled_while_preparing)
    with pytest.raises(training.RunInterrupted, match="stopped before its training began"):
        _fit("early", epochs=1)
    assert capsys.readouterr().out.count(signal.Signals(number).name + ":") == 1
    monkeypatch.setattr(runs, "write_definition", write)
    assert _fit("early", epochs=1).history["epoch"].tolist() == [1]
