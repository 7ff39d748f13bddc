"""Arguments are checked where they enter, by the annotations of what takes them (issue 26,
item 6): "no" is not yes, and a negative width or None never reaches torch."""

import pytest

from helpers import checkpoints, data, models, recipes, runs, training


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
        data.ImageDataModule("CIFAR10", test_every_epoch="no")


@pytest.mark.parametrize("option", ["overwrite", "memory_safe", "channels_last"])
def test_overwrite_no_is_an_error_and_the_finished_run_is_kept(course_env, option):
    module = data.ImageDataModule("CIFAR10", val_size=1000, subset=(64, 32, 32))
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
    module = data.ImageDataModule("CIFAR10", val_size=1000, subset=(64, 32, 32))
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
    module = data.ImageDataModule("CIFAR10", val_size=1000, subset=(64, 32, 32))
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
    monkeypatch.setattr(training, "_IS_INTERACTIVE", True)  # what Lightning finds in Jupyter
    module = data.ImageDataModule("CIFAR10", val_size=1000, subset=(64, 32, 32))
    with pytest.raises(ValueError, match="a notebook or an interactive session cannot: train "
                                         r"the run from a script \(python scripts/train.py"):
        training.fit(models.create("allcnn", c=8, num_classes=10), module, "sgd-cosine",
                     name="in-a-notebook", epochs=1, devices=2, strategy="ddp")
