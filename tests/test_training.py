import math
from pathlib import Path

import pandas as pd
import pytest
import torch
from doubles import CrashAt, Crashed

from helpers._machinery import config, fitting, runs
from helpers import data, measure, memory_safe, models, plots, recipes, training


def _data(**options):
    options.setdefault("subset", (512, 128, 250))
    return data.ImageDataModule("CIFAR10", smoke=True, val_size=1000, eval_batch_size=64, **options)


def _four_steps():
    """256 images, four steps of 64 per epoch: enough for CrashAt to stop an epoch midway."""
    return _data(subset=(256, 64, 64))


def _model(seed=0):
    training.seed(seed)
    return models.create("allcnn", c=8, num_classes=10, dropout=0.0)


FAST = recipes.get_recipe("sgd-cosine", batch_size=64, epochs=4, lr=0.2)


# --- recipes --------------------------------------------------------------------------------

def test_unknown_recipe_lists_the_valid_ones():
    with pytest.raises(ValueError, match="'sgd'.*allcnn-seed, sgd-step, sgd-cosine, adamw"):
        recipes.get_recipe("sgd")
    with pytest.raises(ValueError, match="'learning_rate'.*lr"):
        recipes.get_recipe("sgd-step", learning_rate=0.1)


def test_recipes_table_lists_every_recipe():
    assert list(recipes.recipes_table().index) == list(recipes.RECIPES)


def test_seed_schedule_halves_every_20_of_100_epochs():
    seed = recipes.get_recipe("allcnn-seed")
    factors = {epoch: recipes.lr_factor(seed, epoch + 0.5, 100) for epoch in range(100)}
    assert factors[0] == factors[19] == 1.0
    assert factors[20] == factors[39] == 0.5
    assert factors[40] == 0.25 and factors[60] == 0.125 and factors[80] == factors[99] == 0.0625


def test_densenet_paper_schedule_divides_by_ten_at_150_and_225_of_300():
    paper = recipes.get_recipe("densenet-paper")
    assert (paper.batch_size, paper.weight_decay, paper.nesterov) == (64, 1e-4, True)
    lr = {epoch: paper.lr * recipes.lr_factor(paper, epoch + 0.5, 300) for epoch in range(300)}
    assert lr[149] == 0.1 and lr[150] == pytest.approx(0.01)
    assert lr[224] == pytest.approx(0.01) and lr[225] == pytest.approx(0.001)


def test_cosine_schedule_warms_up_then_decays_to_zero():
    recipe = recipes.get_recipe("sgd-cosine")
    assert recipes.lr_factor(recipe, 0.5, 30) == pytest.approx(0.5)
    values = [recipes.lr_factor(recipe, e, 30) for e in (1, 10, 20, 29.99)]
    assert values[0] == pytest.approx(1.0) and values == sorted(values, reverse=True)
    assert values[-1] < 1e-4


def test_unknown_schedule_is_an_error():
    with pytest.raises(ValueError, match="'linear'.*step, cosine, sgdr, constant"):
        recipes.lr_factor(recipes.get_recipe("sgd-step", schedule="linear"), 1, 10)


# --- training -------------------------------------------------------------------------------

def test_training_lowers_the_loss_and_learns(course_env):
    run = training.fit(_model(), _data(), FAST, name="learns", epochs=4, precision="32-true")
    history = run.history
    assert list(history["epoch"]) == [1, 2, 3, 4]
    assert history["train_loss"].iloc[-1] < 0.8 * history["train_loss"].iloc[0]
    assert history["val_acc"].max() > 0.5  # 10 classes: chance is 0.1
    assert run.info["test_acc"] > 0.5 and not run.model.training
    # the time of the training steps is part of the epoch's, which also evaluates
    steps, epochs = history["step_seconds"], history["seconds"]
    assert (steps > 0).all() and (steps < epochs).all()


def test_the_schedule_reaches_the_optimizer(course_env):
    recipe = recipes.get_recipe("sgd-step", batch_size=64, epochs=4, milestones=(0.5,), lr=0.04)
    run = training.fit(_model(), _data(subset=(64, 64, 64)), recipe, name="schedule", epochs=4,
                       precision="32-true")
    assert run.history["lr"].tolist() == pytest.approx([0.04, 0.04, 0.004, 0.004])


def test_test_accuracy_covers_every_test_image():
    """250 test images in batches of 64: the last batch holds 58; all of them count."""
    module = _data()
    module.setup()
    model = _model().eval()
    result = training.evaluate(model, module, "test", precision="32-true")
    with torch.no_grad():
        loader = module.loader("test")
        logits = torch.cat([model(x) for x, _ in loader])
    labels = module.test.labels
    assert result["images"] == 250 == len(logits)
    assert result["acc"] == pytest.approx((logits.argmax(1) == labels).float().mean().item())
    assert result["loss"] == pytest.approx(
        torch.nn.functional.cross_entropy(logits, labels).item(), rel=1e-5)
    probabilities, predicted_labels = training.predict(model, module, precision="32-true")
    assert probabilities.shape == (250, 10) and torch.equal(predicted_labels, labels)
    assert torch.allclose(probabilities.sum(1), torch.ones(250), atol=1e-5)


def test_flip_test_time_augmentation_averages_an_image_and_its_mirror():
    module = _data()
    module.setup()
    model = _model().eval()
    with torch.no_grad():
        model.classifier.weight *= 100  # confident predictions, so that mirroring matters
        x, labels = torch.cat([x for x, _ in module.loader("test")]), module.test.labels
        expected = (model(x).softmax(1) + model(x.flip(3)).softmax(1)) / 2
    probabilities, _ = training.predict(model, module, precision="32-true", tta=True)
    assert torch.allclose(probabilities, expected, atol=1e-6)
    result = training.evaluate(model, module, precision="32-true", tta=True)
    assert result["acc"] == pytest.approx((expected.argmax(1) == labels).float().mean().item())
    assert result["loss"] == pytest.approx(
        torch.nn.functional.nll_loss(expected.log(), labels).item(), rel=1e-5)
    plain, _ = training.predict(model, module, precision="32-true")
    assert (plain - probabilities).abs().max() > 100 * 1e-6  # the check above can tell them apart


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """One smoke-mode run, trained once for the tests below that each check one thing of it."""
    folder = tmp_path_factory.mktemp("smoke-run")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COURSE_MODE", "smoke")
        patch.setenv("COURSE_OFFLINE", "1")
        patch.setenv("DATA_DIR", str(folder / "data"))
        patch.setenv("SAVED_MODELS_DIR", str(folder / "saved_models"))
        yield training.fit(_model(), _data(), FAST, name="artefacts", epochs=2,
                           precision="32-true")


def test_a_run_folder_holds_its_checkpoints_logs_history_and_record(smoke_run):
    folder = smoke_run.directory
    assert folder.parent.name == "smoke" and folder.name == "artefacts"  # smoke-mode runs apart
    for name in ("best.ckpt", "last.ckpt", "history.csv", "run.json", "logs/csv/metrics.csv"):
        assert (folder / name).exists(), name
    assert list((folder / "logs" / "tensorboard").glob("events.out.tfevents.*"))
    assert not list(folder.rglob("*.part"))


def test_the_saved_history_is_the_one_returned(smoke_run):
    pd.testing.assert_frame_equal(pd.read_csv(smoke_run.directory / "history.csv"),
                                  smoke_run.history)


def test_a_smoke_run_is_recorded_and_labelled_as_one(smoke_run):
    info = smoke_run.info
    assert info["smoke_run"] is True and info["mode"] == "smoke"
    assert info.is_smoke_run and not info.is_result and not info.is_published
    assert smoke_run.provenance.startswith(
        "SMOKE RUN (smoke mode, synthetic stand-in for CIFAR10)")
    assert info.smoke_label == " — " + smoke_run.provenance  # for figure titles


def test_the_record_names_the_model_and_data_it_was_trained_with(smoke_run):
    info = smoke_run.info
    assert info["model"] == {"name": "allcnn",
                             "hparams": {"c": 8, "num_classes": 10, "dropout": 0.0}}
    assert info["parameters"] == measure.count_parameters(smoke_run.model)
    assert info["data"] == "CIFAR10" and info["data_source"].startswith("synthetic")
    assert info["images"] == {"train": 512, "val": 128, "test": 250}


def test_the_record_keeps_the_environment_and_the_best_epoch(smoke_run):
    info = smoke_run.info
    assert {"hardware", "date", "torch", "precision", "recipe", "test_acc"} <= set(info)
    assert info["best_val_acc"] == smoke_run.history["val_acc"].max()


def test_the_results_table_shows_a_run_as_recorded(smoke_run):
    table = plots.results_table({"tiny": smoke_run})
    assert table.loc["tiny", "test accuracy"] == smoke_run.info["test_acc"]
    assert table.loc["tiny", "test images"] == 250
    assert table.loc["tiny", "provenance"] == smoke_run.provenance
    shown = plots.show_results({"tiny": smoke_run}, caption="tiny run").to_html()
    assert f"{smoke_run.info['test_acc']:.2%}" in shown  # in percent
    assert f">{smoke_run.wall_minutes:.1f}<" in shown  # minutes to a tenth, not 0.016667
    assert "tiny run (SMOKE RUN rows are not results" in shown


def test_provenance_of_a_real_run_names_data_recipe_hardware_and_date():
    info = {"smoke_run": False, "data": "CIFAR100", "recipe": {"name": "allcnn-seed"},
            "epochs": 100, "hardware": "NVIDIA H100", "date": "2026-11-22T10:00:00+00:00",
            "test_acc": 0.5}
    run = training.Run("r", None, None, info, None)
    assert run.provenance == "CIFAR100, recipe allcnn-seed, 100 epochs, NVIDIA H100, 2026-11-22"
    run.info["images"] = {"train": 20_000, "val": 5000, "test": 10_000}
    assert run.provenance == ("CIFAR100 (20,000 training images), recipe allcnn-seed, 100 "
                              "epochs, NVIDIA H100, 2026-11-22")


def test_resume_loses_nothing(course_env):
    """A run killed during epoch 2 and resumed ends with exactly the weights and history of a
    run that was never interrupted."""
    whole = training.fit(_model(), _four_steps(), FAST, name="whole", epochs=3, precision="32-true")
    with pytest.raises(Crashed):
        training.fit(_model(), _four_steps(), FAST, name="killed", epochs=3, precision="32-true",
                     callbacks=[CrashAt(epoch=1)])
    assert (course_env / "saved_models" / "smoke" / "killed" / "last.ckpt").exists()
    resumed = training.fit(_model(seed=99), _four_steps(), FAST, name="killed", epochs=3,
                           precision="32-true", overwrite=False)
    assert resumed.history["epoch"].tolist() == [1, 2, 3]
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    columns = ["train_loss", "train_acc", "val_loss", "val_acc", "lr"]
    pd.testing.assert_frame_equal(whole.history[columns], resumed.history[columns])
    assert resumed.info["test_acc"] == whole.info["test_acc"]
    # its wall time counts the first process's finished epoch, not only the second process
    assert resumed.info["resumed_after_epoch"] == 1 and whole.info["resumed_after_epoch"] == 0
    assert resumed.info["wall_seconds"] >= round(resumed.history["seconds"].sum(), 1)
    logs = course_env / "saved_models" / "smoke" / "killed" / "logs"
    assert (logs / "csv" / "metrics.csv").exists() and (logs / "csv-2" / "metrics.csv").exists()


def _linear():
    training.seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))


# a learning rate that leaves a linear model's validation accuracy where epoch 1 put it: no
# later epoch is a new best
_STILL = recipes.get_recipe("sgd-cosine", batch_size=64, epochs=3, lr=1e-12)


def test_every_completed_epoch_is_kept_even_when_it_did_not_improve(course_env):
    """A learning rate of 1e-12 leaves a linear model's validation accuracy where the first epoch
    put it, so no later epoch is a new best; killed in epoch 3, the run still resumes after
    epoch 2 (it retrains nothing) and ends exactly as an uninterrupted one."""
    whole = training.fit(_linear(), _four_steps(), _STILL, name="whole", epochs=3,
                         precision="32-true")
    assert whole.history["val_acc"].nunique() == 1 and whole.info["best_epoch"] == 1
    with pytest.raises(Crashed):
        training.fit(_linear(), _four_steps(), _STILL, name="killed", epochs=3, precision="32-true",
                     callbacks=[CrashAt(epoch=2, batch=1)])
    assert runs.epochs_done(course_env / "saved_models" / "smoke" / "killed") == 2
    resumed = training.fit(_linear(), _four_steps(), _STILL, name="killed", epochs=3,
                           precision="32-true", overwrite=False)
    assert resumed.info["resumed_after_epoch"] == 2
    columns = ["train_loss", "train_acc", "val_loss", "val_acc", "lr"]
    pd.testing.assert_frame_equal(whole.history[columns], resumed.history[columns])
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    assert resumed.info["test_acc"] == whole.info["test_acc"]
    # a finished run's resume checkpoint holds all its epochs, not only those up to the best
    assert runs.epochs_done(course_env / "saved_models" / "smoke" / "whole") == 3


def test_a_moved_and_renamed_run_folder_resumes_as_if_it_had_never_moved(course_env,
                                                                         monkeypatch):
    """Killed in epoch 3, then saved_models/ moved and the run folder renamed: the resumed run
    keeps its best epoch (epoch 1, not the first epoch after the move), ends exactly as an
    uninterrupted run, and reads nothing at the old path (a decoy best.ckpt lies there)."""
    whole = training.fit(_linear(), _four_steps(), _STILL, name="whole", epochs=3,
                         precision="32-true")
    with pytest.raises(Crashed):
        training.fit(_linear(), _four_steps(), _STILL, name="killed", epochs=3,
                     precision="32-true", callbacks=[CrashAt(epoch=2, batch=1)])
    old = course_env / "saved_models" / "smoke" / "killed"
    (course_env / "saved_models").rename(course_env / "moved")
    (course_env / "moved" / "smoke" / "killed").rename(course_env / "moved" / "smoke" / "renamed")
    old.mkdir(parents=True)
    (old / "best.ckpt").write_bytes(b"a decoy: another run's file at the old path")
    monkeypatch.setenv("SAVED_MODELS_DIR", str(course_env / "moved"))
    resumed = training.fit(_linear(), _four_steps(), _STILL, name="renamed", epochs=3,
                           precision="32-true", overwrite=False)
    assert resumed.info["resumed_after_epoch"] == 2
    columns = ["train_loss", "train_acc", "val_loss", "val_acc", "lr"]
    pd.testing.assert_frame_equal(whole.history[columns], resumed.history[columns])
    assert resumed.info["best_epoch"] == whole.info["best_epoch"] == 1
    best = torch.load(course_env / "moved" / "smoke" / "renamed" / "best.ckpt", weights_only=True)
    assert best["epoch"] == 0  # Lightning counts from 0: the weights are epoch 1's
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    assert resumed.info["test_acc"] == whole.info["test_acc"]


class _RunsCode:
    """Unpickling this creates a marker file: proof that a load ran code."""
    marker = None

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_a_crafted_checkpoint_is_never_unpickled(course_env, monkeypatch):
    """Even with TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1, resuming from a last.ckpt whose unpickling
    would run code refuses it instead (and the marker file is never made)."""
    with pytest.raises(Crashed):
        training.fit(_model(), _four_steps(), FAST, name="crafted", epochs=3,
                     precision="32-true", callbacks=[CrashAt(epoch=1)])
    last = course_env / "saved_models" / "smoke" / "crafted" / "last.ckpt"
    state = torch.load(last, weights_only=True)
    _RunsCode.marker = course_env / "ran-code"
    state["hostile"] = _RunsCode()
    torch.save(state, last)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(Exception, match="(?i)weights.only|unsupported global|_RunsCode"):
        training.fit(_model(), _four_steps(), FAST, name="crafted", epochs=3,
                     precision="32-true", overwrite=False)
    assert not _RunsCode.marker.exists()


def test_a_run_resumed_on_other_hardware_goes_on_as_it_began_and_names_both(course_env,
                                                                          monkeypatch):
    """Resumed where "auto" would pick another precision, a run keeps the one it began with
    (not an error, not a mix), and its record names both machines."""
    monkeypatch.setattr(config, "hardware", lambda: "machine A")
    monkeypatch.setattr(config, "precision", lambda: "32-true")
    with pytest.raises(Crashed):
        training.fit(_model(), _four_steps(), FAST, name="moved", epochs=3, overwrite=False,
                     callbacks=[CrashAt(epoch=1)])
    monkeypatch.setattr(config, "hardware", lambda: "machine B")
    monkeypatch.setattr(config, "precision", lambda: "bf16-mixed")
    folder = course_env / "saved_models" / "smoke"
    # make reference's time estimate times the precision each run will train in
    assert runs.run_precision(folder / "moved") == "32-true"
    assert runs.run_precision(folder / "new") == "bf16-mixed"
    assert runs.run_precision(folder / "moved", "16-mixed") == "16-mixed"
    resumed = training.fit(_model(), _four_steps(), FAST, name="moved", epochs=3,
                           overwrite=False)
    assert resumed.history["hardware"].tolist() == ["machine A", "machine B", "machine B"]
    assert resumed.info["hardware"] == "machine A / machine B"
    assert resumed.info["precision"] == resumed.info["definition"]["precision"] == "32-true"
    fresh = training.fit(_model(), _four_steps(), FAST, name="new", epochs=1, overwrite=False)
    assert fresh.info["definition"]["precision"] == "bf16-mixed"
    assert fresh.info["hardware"] == "machine B"


def test_a_run_killed_before_its_first_checkpoint_restarts_with_one_attempts_logs(course_env):
    with pytest.raises(Crashed):
        training.fit(_model(), _four_steps(), FAST, name="early", epochs=2, precision="32-true",
                     callbacks=[CrashAt(epoch=0)])
    folder = course_env / "saved_models" / "smoke" / "early"
    assert not (folder / "last.ckpt").exists()
    dead = set((folder / "logs" / "tensorboard").glob("events.*"))  # the dead attempt's
    assert dead
    run = training.fit(_model(), _four_steps(), FAST, name="early", epochs=2, precision="32-true",
                       overwrite=False)
    assert run.history["epoch"].tolist() == [1, 2]
    assert sorted(p.name for p in (folder / "logs").iterdir()) == ["csv", "tensorboard"]
    assert not dead & set((folder / "logs" / "tensorboard").glob("events.*"))


def test_the_time_estimate_counts_every_image_each_epoch_evaluates(monkeypatch):
    """Training images at the timed rate, evaluated images at a third of a step each: a sweep,
    which also tests every epoch, is estimated longer by exactly its test passes."""
    monkeypatch.setattr(fitting.measure, "training_throughput", lambda *a, **k: 100.0)
    plain, tested = _data(), _data(test_every_epoch=True)
    for module in (plain, tested):
        module.setup()
    # 512 training and 128 validation images per epoch, 250 test images at the end
    assert fitting.estimate_seconds(_model(), plain, FAST, 4) == pytest.approx(
        1.1 * (4 * 512 + (4 * 128 + 250) / 3) / 100)
    assert fitting.estimate_seconds(_model(), tested, FAST, 4) == pytest.approx(
        fitting.estimate_seconds(_model(), plain, FAST, 4) + 1.1 * 4 * 250 / 3 / 100)


def test_smoke_mode_caps_the_epochs(course_env):
    recipe = recipes.get_recipe("sgd-cosine", batch_size=64)
    assert recipe.epochs == 30
    run = training.fit(_model(), _data(subset=(128, 64, 64)), recipe, name="capped")
    assert len(run.history) == run.info["epochs"] == config.SMOKE_EPOCHS == 1
    assert math.isfinite(run.info["test_loss"])


# --- SGDR, memory-safe training, testing every epoch --------------------------------------------

def test_sgdr_restarts_at_epochs_10_30_70_and_ends_at_its_floor():
    recipe = recipes.get_recipe("mundt-sgdr")
    factor = {e: recipes.lr_factor(recipe, e, 150) for e in (0, 9.999, 10, 29.999, 30, 70, 150)}
    floor = 1e-5 / 0.01
    assert factor[0] == 1 and factor[10] == factor[30] == factor[70] == 1
    for end_of_cycle in (9.999, 29.999):
        assert factor[end_of_cycle] == pytest.approx(floor, abs=1e-6)
    assert factor[150] == pytest.approx(1.0)  # 150 = 10 + 20 + 40 + 80: a fifth cycle begins
    assert recipes.lr_factor(recipe, 149.9999, 150) == pytest.approx(floor, abs=1e-6)


def _no_batchnorm(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(),
                               torch.nn.Linear(24, 10))


def _one_step(model, name):
    module = data.ImageDataModule("CIFAR10", smoke=True, val_size=1000, subset=(16, 16, 16),
                                  augment=None)
    recipe = recipes.get_recipe("sgd-step", batch_size=16, lr=0.5, momentum=0.0, nesterov=False,
                                 weight_decay=0.0, milestones=())
    return training.fit(model, module, recipe, name=name, epochs=1, precision="32-true",
                        enable_progress_bar=False, memory_safe=True)


def test_out_of_memory_redoes_the_batch_in_micro_batches_with_the_same_gradients(
        capsys, out_of_memory_above):
    whole = _one_step(_no_batchnorm(), "whole")
    split = _one_step(out_of_memory_above(_no_batchnorm(), limit=4), "split")
    assert whole.info["micro_batch"] == 16 and split.info["micro_batch"] == 4
    assert "micro-batches of 8" in capsys.readouterr().out
    for a, b in zip(whole.model.state_dict().values(), split.model.model.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)  # one SGD step: the same gradient
    assert whole.history["train_loss"][0] == pytest.approx(split.history["train_loss"][0])


def test_a_batch_that_never_fits_stops_the_run(out_of_memory_above):
    with pytest.raises(memory_safe.DoesNotFit,
                       match="batch of 16 does not fit .* micro-batches of 2"):
        _one_step(out_of_memory_above(_no_batchnorm(), limit=1), "never")


def test_memory_safety_is_opt_in(out_of_memory_above):
    module = data.ImageDataModule("CIFAR10", smoke=True, val_size=1000, subset=(16, 16, 16),
                                  augment=None)
    recipe = recipes.get_recipe("sgd-step", batch_size=16, milestones=())
    with pytest.raises(torch.OutOfMemoryError, match="injected by the test"):
        training.fit(out_of_memory_above(_no_batchnorm(), limit=4), module, recipe, name="plain",
                     epochs=1, precision="32-true", enable_progress_bar=False)


def test_the_recipe_decides_the_batch_size_and_the_callers_module_is_unchanged():
    module = _data()
    run = training.fit(_model(), module, FAST, name="batches", epochs=1, precision="32-true",
                       enable_progress_bar=False)
    assert module.batch_size is None  # fit trained on a copy with the recipe's batch size
    assert run.info["micro_batch"] == FAST.batch_size
    with pytest.raises(ValueError, match="no training batch size.*batch_size=64"):
        module.loader("train")
    images, _ = next(iter(module.with_batch_size(32).loader("train")))
    assert len(images) == 32


def test_other_errors_are_not_mistaken_for_out_of_memory():
    assert memory_safe.is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert memory_safe.is_out_of_memory(RuntimeError("cuDNN error: CUDNN_STATUS_NOT_SUPPORTED."))
    assert not memory_safe.is_out_of_memory(RuntimeError("shape mismatch"))
    assert not memory_safe.is_out_of_memory(ValueError("out of memory"))


def test_testing_every_epoch_records_the_test_accuracy_per_epoch():
    module = _data(test_every_epoch=True, subset=(128, 64, 64))
    run = training.fit(_model(), module, FAST, name="tested", epochs=2, precision="32-true",
                       enable_progress_bar=False)
    assert run.history["test_acc"].notna().all() and len(run.history) == 2
    best = run.history["val_acc"].idxmax()
    assert run.history["test_acc"][best] == pytest.approx(run.info["test_acc"])


def test_a_long_run_says_beforehand_how_long_it_will_take(monkeypatch, capsys, tmp_path):
    model = _model()
    before = {key: value.clone() for key, value in model.state_dict().items()}
    module = _data().with_batch_size(64)  # 512 images: 8 steps per epoch
    monkeypatch.setattr(training.config, "is_smoke", lambda: False)
    monkeypatch.setattr(fitting, "LONG_RUN_SECONDS", 0)  # every run counts as long here
    fitting.say_how_long_if_long(model, module, FAST, tmp_path / "long", epochs=13)
    said = capsys.readouterr().out
    assert "long: about" in said and "allcnn" in said and "13 epoch(s) to train" in said
    assert "resumes from its last completed epoch" in said and "epochs=..." in said
    assert all(torch.equal(before[key], value) for key, value in model.state_dict().items())
    fitting.say_how_long_if_long(model, module, FAST, tmp_path / "short", epochs=12)
    assert capsys.readouterr().out == ""  # under 100 steps: not even timed


def test_the_progress_bar_shows_accuracies_in_percent(monkeypatch):
    from pytorch_lightning.callbacks import TQDMProgressBar

    from helpers._machinery import lightning as _lightning

    monkeypatch.setattr(TQDMProgressBar, "get_metrics", lambda self, trainer, module: {
        "v_num": 3, "train_loss": 1.25, "val_acc": 0.4375})
    shown = _lightning.ProgressBar().get_metrics(None, None)
    assert shown == {"train_loss": 1.25, "val_acc": "43.8%"}


def test_the_last_batch_table_shows_the_seeds_bug():
    """100 images in batches of 64: the seed counted the last 36 only."""
    labels = torch.zeros(100, dtype=torch.long)
    probabilities = torch.zeros(100, 2)
    probabilities[:64, 0] = 1  # the first 64 right, the last 36 wrong
    probabilities[64:, 1] = 1
    table = plots.last_batch_table(probabilities, labels).data
    assert table["images counted"].tolist() == [36, 100]
    assert table["test accuracy"].tolist() == pytest.approx([0.0, 0.64])  # float32 means


# --- the memory layout, by measurement (issue 27) ---------------------------------------------

def test_a_resumed_run_keeps_the_layout_it_began_in(course_env, interrupt_at_epoch):
    """Begun in the usual layout (asked for), resumed with the default: it goes on in it (the
    default on a CPU would be channels-last in smoke mode) and its record says so."""
    options = dict(name="layout", epochs=2, overwrite=False, precision="32-true",
                   enable_progress_bar=False)
    with pytest.raises(training.RunInterrupted):
        training.fit(_model(), _four_steps(), FAST, channels_last=False,
                     callbacks=[interrupt_at_epoch(1)], **options)
    run = training.fit(_model(), _four_steps(), FAST, **options)
    assert run.info["resumed_after_epoch"] == 1 and run.info["channels_last"] is False
    fresh = training.fit(_model(), _four_steps(), FAST, **dict(options, name="fresh"))
    assert fresh.info["channels_last"] is (config.device_type() in ("cuda", "cpu"))


@pytest.mark.parametrize("cropped", [False, True])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("channels_last", [False, True])
def test_the_convolutions_compute_in_the_layout_the_run_records(channels, channels_last, cropped):
    """Every convolution of a run computes in the layout its record says, whatever strides a
    batch comes with. With one channel ``contiguous()`` keeps a tensor's strides: random_crop's
    batch (a gather per pixel) has channels-last ones, an uncropped batch and the first
    convolution's one-channel weight the usual ones."""
    images = torch.randint(0, 255, (4, channels, 12, 12), dtype=torch.uint8).float()
    batch = data.random_crop(images, torch.Generator().manual_seed(0)) if cropped else images
    assert (batch.stride()[1] == 1) is cropped  # channels-last strides only where cropped
    model = torch.nn.Sequential(torch.nn.Conv2d(channels, 8, 3), torch.nn.Conv2d(8, 8, 3))
    outputs = []
    for conv in model:
        conv.register_forward_hook(lambda module, args, out: outputs.append(out))
    expected = model(batch)
    module = training.Classifier(model, FAST, channels_last=channels_last)
    assert torch.allclose(module(batch), expected, atol=1e-4)  # the same, up to rounding
    layout = torch.channels_last if channels_last else torch.contiguous_format
    assert all(out.stride() == torch.empty(out.shape, memory_format=layout).stride()
               for out in outputs[2:])
    weights = [conv.weight for conv in model]
    assert all(w.stride() == torch.empty(w.shape, memory_format=layout).stride() for w in weights)


@pytest.mark.parametrize("channels_last", [False, True])
def test_a_timed_step_of_one_channel_images_computes_in_the_layout_it_times(channels_last):
    """Random one-channel images: the timing (fit's pick, the layout benchmark) must hand the
    first convolution the layout it times, as fit does."""
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(),
                                torch.nn.Linear(4 * 6 * 6, 10))
    strides = []
    model[0].register_forward_pre_hook(lambda module, args: strides.append(args[0].stride()))
    measure.training_throughput(model, (1, 8, 8), 4, batches=1, precision="32-true",
                                channels_last=channels_last, warm_up=0)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    assert strides == [torch.empty(4, 1, 8, 8, memory_format=layout).stride()]


def test_the_layout_is_measured_for_one_cpu_process_in_full_mode_only(course_env, monkeypatch):
    """Timed in full mode, but for a DenseNet through the course's kernels (channels-last); smoke
    runs and CPU mode take the rule, channels-last, so that a CPU-mode run computes the same
    numbers every time (the layouts round differently in fp32)."""
    asked = []
    monkeypatch.setattr(fitting, "prefers_channels_last",
                        lambda model, shape, batch, precision: asked.append(shape) or False)
    monkeypatch.setattr(config, "device_type", lambda: "cpu")
    module = _four_steps()
    module.setup()
    folder = course_env / "no-run-here"

    def choose(**options):
        return fitting.choose_layout(None, folder, _model(), module, FAST, "32-true", options)

    assert choose() is True and asked == []  # smoke mode: the device's default
    monkeypatch.setattr(config, "mode", lambda: "cpu")
    assert choose() is True and asked == []  # CPU mode: the same, never timed
    monkeypatch.setattr(config, "mode", lambda: "full")
    assert choose() is False and asked == [(3, 32, 32)]  # timed: the model's faster layout
    through_kernels = fitting.choose_layout(None, folder, _model(), module, FAST, "bf16-mixed",
                                            {}, dense_kernels_used=True)
    assert through_kernels is True and len(asked) == 1  # the kernels' layout, never timed
    assert choose(devices=2, strategy="ddp") is True and len(asked) == 1  # several: the rule


def test_timing_the_layouts_leaves_the_model_and_the_random_state_alone(monkeypatch):
    model = _model()
    before = {key: value.clone() for key, value in model.state_dict().items()}
    state = torch.random.get_rng_state()
    calls = []
    timed = measure.training_throughput

    def counted(*args, **kwargs):
        calls.append(kwargs["channels_last"])
        return timed(*args, **kwargs)

    monkeypatch.setattr(measure, "training_throughput", counted)
    monkeypatch.setattr(fitting, "LAYOUTS", {})
    first = fitting.prefers_channels_last(model, (3, 32, 32), 16, "32-true")
    assert isinstance(first, bool) and calls == [False, True]
    assert fitting.prefers_channels_last(model, (3, 32, 32), 16, "32-true") is first
    assert calls == [False, True]  # answered once per process
    assert all(torch.equal(before[key], value) for key, value in model.state_dict().items())
    assert torch.equal(torch.random.get_rng_state(), state)
