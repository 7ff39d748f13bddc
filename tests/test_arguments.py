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
