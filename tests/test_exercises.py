"""The notebooks' exercises: their data, and the check of a learner's result."""

import pytest

from helpers import data, exercises, models, training


def _run(accuracy=0.8, train=exercises.SIZES[0], epochs=exercises.EPOCHS,
         source="/usr/share/datasets/fashion-mnist"):
    info = {"test_acc": accuracy, "images": {"train": train}, "epochs": epochs,
            "data": exercises.DATA, "data_source": source}
    return training.Run("allcnn-c16", None, None, info, None)


def test_a_full_exercise_run_inside_its_range_passes(capsys):
    exercises.check(_run(0.8), between=(0.78, 0.82), measured="one run")
    printed = capsys.readouterr().out
    assert "allcnn-c16: 80.00%, inside the expected 78.0%–82.0% (one run)" in printed


def test_a_miss_names_the_run_the_range_and_the_hint():
    with pytest.raises(AssertionError) as miss:
        exercises.check(_run(0.7), between=(0.78, 0.82), measured="2-core CPU, 1 min",
                        hint="Check the learning rate.")
    message = str(miss.value)
    assert "allcnn-c16: test accuracy 70.00% is outside the expected 78.0%–82.0%" in message
    assert "2-core CPU, 1 min" in message and "Check the learning rate." in message


@pytest.mark.parametrize("run", [_run(0.1, train=256), _run(0.1, epochs=1),
                                 _run(0.1, source="synthetic stand-in for FashionMNIST")])
def test_a_smoke_run_is_not_judged(run, capsys):
    assert not exercises.is_full(run)
    exercises.check(run, between=(0.78, 0.82), measured="one run")  # no AssertionError
    assert "not checked: a smoke run" in capsys.readouterr().out


def test_the_exercise_data_are_the_stated_subsets(monkeypatch):
    monkeypatch.setenv("COURSE_MODE", "quick")
    module = exercises.data(full=False, augment=None)
    assert module.subset == exercises.SMOKE_SIZES and module.augment is None
    assert exercises.data(full=True).subset == exercises.SIZES == (5_000, 1_000, 10_000)
    assert not exercises.full()
    monkeypatch.setenv("COURSE_EXERCISES", "full")
    assert exercises.full()


def test_an_exercise_run_is_kept_and_a_smoke_run_never_replaces_it(course_env, monkeypatch,
                                                                    capsys):
    """Quick mode trains smoke runs afresh; a learner's full exercise run (FULL = True) is kept
    beside them and loaded when its cell runs again."""
    monkeypatch.setattr(exercises, "EPOCHS", 1)
    images = data.ImageDataModule("CIFAR10", val_size=1000, subset=(256, 64, 64))  # stand-in

    def net():
        training.seed(0)
        return models.create("allcnn", c=8, num_classes=10, dropout=0.0)
    done = exercises.train(net(), images, "sgd-cosine", name="width", full=True)
    smoke = exercises.train(net(), images, "sgd-cosine", name="width", full=False)
    assert smoke.directory.name == "width-smoke" and done.directory.name == "width"
    capsys.readouterr()
    again = exercises.train(net(), images, "sgd-cosine", name="width", full=True)
    assert "loaded, not trained again" in capsys.readouterr().out
    assert again.info["date"] == done.info["date"]
    assert again.info["test_acc"] == done.info["test_acc"]
