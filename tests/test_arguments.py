"""Arguments are checked where they enter, by the annotations of what takes them (issue 26,
item 6): "no" is not yes, and a negative width or None never reaches torch."""

import pytest

from helpers.models import checkered
from helpers import checkpoints, data, exercises, models, recipes, training
from helpers._machinery import fitting, runs


@pytest.mark.parametrize("hparams, error, says", [
    ({"residual": "no"}, TypeError, "residual='no' is not valid; it must be True/False"),
    ({"c": -8}, ValueError, "c=-8 is not valid; it must be a whole number of at least 1"),
    ({"c": "32"}, TypeError, "c='32' is not valid; it must be int"),
    ({"c": None}, TypeError, "c=None is not valid"),
    ({"dropout": 1.5}, ValueError, "dropout=1.5 is not valid; it must be a rate in"),
    ({"in_channels": 0}, ValueError, "in_channels=0 is not valid"),
])
def test_a_model_hyper_parameter_of_the_wrong_type_or_range_is_named(hparams, error, says):
    with pytest.raises(error, match=f"model 'allcnn': {says}"):
        models.create("allcnn", **hparams)


def test_valid_hyper_parameters_still_build():
    models.create("allcnn", c=8, num_classes=10, residual=True, dropout=0.0)
    models.create("densenet", growth_rate=4, block_config=(1, 1), num_classes=10,
                  compression=1.0, memory_efficient=True)


def test_a_recipe_flag_must_be_a_bool():
    with pytest.raises(TypeError, match="recipe 'sgd-cosine': nesterov='no' is not valid"):
        recipes.get_recipe("sgd-cosine", nesterov="no")


def test_a_data_module_flag_must_be_a_bool():
    with pytest.raises(TypeError, match="ImageDataModule: test_every_epoch='no' is not valid"):
        data.ImageDataModule("CIFAR10", smoke=True, test_every_epoch="no")


@pytest.mark.parametrize("option", ["overwrite", "memory_safe", "channels_last"])
def test_overwrite_no_is_an_error_and_the_finished_run_is_kept(course_env, option):
    module = data.ImageDataModule("CIFAR10", smoke=True, val_size=1000, subset=(64, 32, 32))
    recipe = recipes.get_recipe("sgd-cosine", batch_size=32, epochs=1)
    run = training.fit(models.create("allcnn", c=8, num_classes=10), module, recipe,
                       name="kept", overwrite=False, enable_progress_bar=False)
    record = (run.directory / runs.RECORD).read_text()
    with pytest.raises(TypeError, match=f"fit: {option}='no' is not valid"):
        training.fit(models.create("allcnn", c=8, num_classes=10), module, recipe, name="kept",
                     enable_progress_bar=False, **{"overwrite": False, option: "no"})
    with pytest.raises(TypeError, match="load_or_train: overwrite='no' is not valid"):
        checkpoints.load_or_train(models.create("allcnn", c=8, num_classes=10), module, recipe,
                                  name="kept", overwrite="no")
    assert (run.directory / runs.RECORD).read_text() == record  # not deleted, not retrained


@pytest.mark.parametrize("name", ["quick", "sweeps", "exercises", "exercise-records", "cpu",
                                  "Smoke", ".hidden.part"])
def test_a_name_the_course_uses_for_itself_is_not_a_run_name(course_env, name):
    module = data.ImageDataModule("CIFAR10", smoke=True, val_size=1000, subset=(64, 32, 32))
    with pytest.raises(ValueError, match=f"run name '{name}' is"):
        training.fit(models.create("allcnn", c=8, num_classes=10), module, "sgd-cosine",
                     name=name, epochs=1)
    assert not (course_env / "saved_models" / "smoke" / name).exists()


@pytest.mark.parametrize("options, says", [
    ({"limit_train_batches": 1}, "limit_train_batches cannot be passed to the Trainer"),
    ({"accumulate_grad_batches": 2}, "accumulate_grad_batches cannot be passed"),
    ({"max_steps": 3, "gradient_clip_val": 1.0}, "max_steps, gradient_clip_val cannot be"),
    ({"max_epochs": 3}, "max_epochs cannot be passed"),
    ({"strategy": "ddp_spawn", "devices": 2}, "strategy='ddp_spawn' is not supported"),
    ({"strategy": "ddp_notebook", "devices": 2}, "strategy='ddp_notebook' is not supported"),
    ({"sync_batchnorm": True, "accelerator": "cpu"}, "sync_batchnorm=True needs GPUs"),
])
def test_a_trainer_option_that_changes_what_a_run_computes_is_refused(course_env, options,
                                                                      says):
    module = data.ImageDataModule("CIFAR10", smoke=True, val_size=1000, subset=(64, 32, 32))
    with pytest.raises(ValueError, match=f"fit: {says}"):
        training.fit(models.create("allcnn", c=8, num_classes=10), module, "sgd-cosine",
                     name="limited", epochs=1, **options)
    assert not (course_env / "saved_models" / "smoke" / "limited").exists()  # nothing trained


@pytest.mark.parametrize("model, hparams, says", [
    ("densenet", {"block_config": ()}, r"block_config=\(\) is not valid; it must be a non-empty"),
    ("densenet", {"block_config": (6, 0)}, r"block_config=\(6, 0\) is not valid"),
    ("resnet", {"c_hidden": (16.5, 32, 64)}, r"c_hidden=\(16.5, 32, 64\) is not valid"),
    ("resnet", {"num_blocks": (3, 3)}, "must be as long as each other"),
    ("vgg", {"widths": "abc"}, "widths='abc' is not valid"),
    ("vgg", {"widths": [-1] * 13 + [4, 4]}, "widths=.* is not valid"),
])
def test_a_tuple_hyper_parameter_is_checked_too(model, hparams, says):
    with pytest.raises(ValueError, match=f"model '{model}': .*{says}"):
        models.create(model, **hparams)


def test_a_notebook_asking_for_several_processes_is_told_to_use_a_script(course_env,
                                                                        monkeypatch):
    monkeypatch.setattr(fitting, "_IS_INTERACTIVE", True)  # what Lightning finds in Jupyter
    module = data.ImageDataModule("CIFAR10", smoke=True, val_size=1000, subset=(64, 32, 32))
    with pytest.raises(ValueError, match="a notebook or an interactive session cannot: train "
                                         r"the run from a script \(python scripts/train.py"):
        training.fit(models.create("allcnn", c=8, num_classes=10), module, "sgd-cosine",
                     name="in-a-notebook", epochs=1, devices=2, strategy="ddp")


def _tiny_data():
    return data.ImageDataModule("CIFAR10", smoke=True, val_size=1000, subset=(128, 32, 32))


def _tiny_model():
    return models.create("allcnn", c=8, num_classes=10)


@pytest.mark.parametrize("changes, error, says", [
    ({"model": "allcnn"}, TypeError, "fit: model must be a network"),
    ({"data": "CIFAR10"}, TypeError, "fit: data must be an ImageDataModule"),
    ({"seed": -1}, ValueError, r"fit: seed=-1 is not valid; it must be in \[0, 2\*\*32\)"),
    ({"precision": "bogus"}, ValueError, "fit: precision='bogus' is not valid; valid: auto"),
    ({"precision": None}, ValueError, "fit: precision=None is not valid"),
    ({"directory": 5}, TypeError, "fit: directory must be a path"),
    ({"devices": 0}, ValueError, r"Trainer options \{'devices': 0\} do not work on this "
                                 r"machine"),
    ({"accelerator": "tpu"}, ValueError, r"Trainer options \{'accelerator': 'tpu'\} do not"),
    ({"callbacks": "x"}, TypeError, "fit: callbacks must be a list of Lightning callbacks"),
    ({"enable_progress_bar": "no"}, TypeError, "fit: enable_progress_bar='no' is not valid"),
    ({"deterministic": "no"}, TypeError, "fit: deterministic='no' is not valid"),
    ({"benchmark": "no"}, TypeError, "fit: benchmark='no' is not valid"),
])
def test_bad_fit_arguments_are_named_and_leave_no_folder(course_env, changes, error, says):
    arguments = {"model": _tiny_model(), "data": _tiny_data(), "recipe": "sgd-cosine",
                 "name": "bad", "epochs": 1, **changes}
    with pytest.raises(error, match=says):
        training.fit(**arguments)
    assert not (course_env / "saved_models" / "smoke" / "bad").exists()


def test_an_attempt_that_failed_before_training_does_not_bind_its_folder(course_env,
                                                                          monkeypatch):
    """An error before the first epoch leaves only a definition: the corrected call trains
    (before: 'holds an interrupted run with other settings')."""
    create_trainer = training._lightning.trainer
    calls = []

    def fails_once(*args, **kwargs):  # the second call: the run's own Trainer, after the probe
        calls.append(1)
        if len(calls) == 2:
            raise ValueError("a made-up Trainer failure")
        return create_trainer(*args, **kwargs)

    monkeypatch.setattr(training._lightning, "trainer", fails_once)
    with pytest.raises(ValueError, match="made-up"):
        training.fit(_tiny_model(), _tiny_data(), "sgd-cosine", name="again", epochs=1,
                     overwrite=False, seed=1)
    assert (course_env / "saved_models" / "smoke" / "again" / runs.DEFINITION).exists()
    run = training.fit(_tiny_model(), _tiny_data(), "sgd-cosine", name="again", epochs=1,
                       overwrite=False, seed=2)
    assert run.info["seed"] == 2


@pytest.mark.parametrize("call, error, says", [
    (lambda: training.evaluate("allcnn", _tiny_data()), TypeError, "evaluate: model must be"),
    (lambda: training.evaluate(_tiny_model(), None), TypeError, "evaluate: data must be"),
    (lambda: training.evaluate(_tiny_model(), _tiny_data(), tta="no"), TypeError,
     "evaluate: tta='no' is not valid"),
    (lambda: training.predict(None, _tiny_data()), TypeError, "predict: model must be"),
    (lambda: training.predict(_tiny_model(), _tiny_data(), tta="no"), TypeError,
     "predict: tta='no' is not valid"),
    (lambda: training.predict(_tiny_model(), _tiny_data(), precision="fp8"), ValueError,
     "precision='fp8' is not valid"),
])
def test_bad_evaluate_and_predict_arguments_are_named(course_env, call, error, says):
    with pytest.raises(error, match=says):
        call()


@pytest.mark.parametrize("options, says", [
    ({"size": 0}, "size=0 is not valid; it must be a whole number of at least 1"),
    ({"size": -1}, "size=-1 is not valid"),
    ({"channels": 0}, "channels=0 is not valid"),
])
def test_data_module_sizes_must_be_at_least_one(options, says):
    with pytest.raises(ValueError, match=says):
        data.ImageDataModule("CIFAR10", smoke=True, **options)


@pytest.mark.parametrize("call, error, says", [
    (lambda: exercises.check_parameters("model", 10), TypeError, "model must be your network"),
    (lambda: exercises.check_parameters(_tiny_model(), "100"), TypeError,
     "expected_count='100' is not valid"),
    (lambda: checkered.sampled_pixels(0, 1, "naive"), ValueError, "at least 2\\*\\*steps"),
    (lambda: checkered.sampled_pixels(8, 1, "bogus"), ValueError, "unknown sampling 'bogus'"),
    (lambda: checkered.sampled_pixels("8", 1, "naive"), TypeError, "size='8' is not valid"),
])
def test_teaching_helpers_name_bad_arguments(call, error, says):
    with pytest.raises(error, match=says):
        call()


def test_a_typo_in_course_exercises_is_an_error(monkeypatch):
    monkeypatch.setenv("COURSE_EXERCISES", "yes")
    with pytest.raises(ValueError, match="COURSE_EXERCISES='yes' is not valid"):
        exercises.full()
