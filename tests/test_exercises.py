"""The notebooks' exercises: their data, and the check of a learner's result."""

import pytest

from helpers import exercises, training


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
