"""The notebooks' exercises: their data, precision, and a check that judges fairly."""

import json

import pytest
import torch

from helpers._machinery import config, datasets, exercise_records
from helpers import data, exercises, models, modes, training

CPU = "CPU AMD EPYC, 2 threads"


def _info(accuracy, seed=0, train=5_000, epochs=exercises.EPOCHS,
          source="/usr/share/datasets/fashion-mnist", precision=exercises.PRECISION):
    return {"test_acc": accuracy, "images": {"train": train}, "epochs": epochs, "seed": seed,
            "data": exercises.DATA, "data_source": source, "precision": precision,
            "hardware": CPU}


def _run(accuracy=0.8, name="width", **info):
    return training.Run(name, None, None, _info(accuracy, **info), None)


@pytest.fixture
def records(tmp_path):
    """Three measured seeds of exercise 'width': 61, 62 and 63 %."""
    folder = tmp_path / "records"
    folder.mkdir()
    for seed, accuracy in enumerate((0.61, 0.62, 0.63)):
        (folder / f"width-s{seed}.json").write_text(json.dumps(_info(accuracy, seed=seed)))
    return folder


def test_the_range_is_the_measured_seeds_and_the_margin(records):
    wanted = exercises.expected("width", records)
    assert wanted.results == {(0, 2): 0.61, (1, 2): 0.62, (2, 2): 0.63}  # seed, threads
    assert wanted.low == pytest.approx(0.58) and wanted.high == pytest.approx(0.66)
    assert "seeds 0, 1, 2 on 2 threads" in wanted.describe() and "AMD EPYC" in wanted.describe()


def test_a_correct_run_passes_and_the_result_is_revealed_after_it(records, capsys):
    assert exercises.check(_run(0.625), records=records) is True
    out = capsys.readouterr().out
    assert out.startswith("PASS width: 62.50%, inside the expected 58.0%–66.0%")
    assert "61.00%, 62.00%, 63.00%" in out


@pytest.mark.parametrize("accuracy, cause", [
    (0.10, "chance level"), (0.12, "chance level"), (0.40, "Check the learning rate"),
    (0.90, "better than every measured seed")])
def test_a_miss_says_what_was_expected_what_came_and_why_and_does_not_stop(records, capsys,
                                                                          accuracy, cause):
    assert exercises.check(_run(accuracy), hint="Check the learning rate",
                           records=records) is False  # no exception: the notebook goes on
    out = capsys.readouterr().out
    assert out.startswith(f"MISS width: {100 * accuracy:.2f}%, outside the expected 58.0%–66.0%")
    assert f"Likely cause: {cause}" in out


def test_chance_never_passes_even_where_the_measured_runs_came_close(tmp_path, capsys):
    folder = tmp_path / "low"
    folder.mkdir()
    for seed, accuracy in enumerate((0.16, 0.18)):
        (folder / f"weak-s{seed}.json").write_text(json.dumps(_info(accuracy, seed=seed)))
    assert exercises.expected("weak", folder).low == pytest.approx(1 / 10 + 0.05)
    assert exercises.check(_run(0.10, name="weak"), records=folder) is False
    (folder / "weak-s2.json").write_text(json.dumps(_info(0.10, seed=2)))
    assert not exercises.expected("weak", folder).judgeable  # a measured run at chance
    capsys.readouterr()
    assert exercises.check(_run(0.17, name="weak"), records=folder) is False
    assert "not judged: the course's runs of it reached 16.00%, 18.00%, 10.00%" in \
        capsys.readouterr().out


def test_records_of_other_settings_or_none_at_all_are_errors(records):
    (records / "width-s3.json").write_text(json.dumps(_info(0.6, seed=3, precision="bf16-mixed")))
    with pytest.raises(ValueError, match="width-s3.json.*not trained with the exercises"):
        exercises.expected("width", records)
    with pytest.raises(FileNotFoundError, match="no measured runs of exercise 'depth'"):
        exercises.expected("depth", records)


def test_a_run_under_a_name_the_course_never_measured_is_said_not_checked(records, capsys):
    assert exercises.check(_run(0.62, name="renamed"), records=records) is False
    assert "not checked: the course has measured no run named 'renamed'" in \
        capsys.readouterr().out


@pytest.mark.parametrize("info", [dict(epochs=1), dict(precision="bf16-mixed"),
                                  dict(source="synthetic stand-in for FashionMNIST")])
def test_a_run_at_another_scale_is_not_judged(records, capsys, info):
    assert exercises.check(_run(0.1, **info), records=records) is False
    assert "not checked: not a CPU-mode run" in capsys.readouterr().out


def test_a_run_on_other_images_than_the_measured_ones_is_not_judged(records, capsys):
    """Another notebook's exercise data, say: the measured range does not apply to it."""
    assert exercises.check(_run(0.62, train=8_000), records=records) is False
    assert ("width: 62.0%, not checked: it trained on 8,000 images, the course's runs of it on "
            "5,000") in capsys.readouterr().out


def test_records_on_different_numbers_of_images_are_an_error(records):
    (records / "width-s3.json").write_text(json.dumps(_info(0.6, seed=3, train=8_000)))
    with pytest.raises(ValueError, match="'width' .* mix runs on 5,000 and 8,000 training "
                                         "images: measure every seed again"):
        exercises.expected("width", records)


def test_every_committed_range_comes_from_records_of_correct_runs():
    """The records the notebooks' checks use: three seeds each, fp32, well above chance, and
    each one passes its own check."""
    names = sorted({path.name.rsplit("-s", 1)[0] for path in exercises.RECORDS.glob("*.json")})
    assert names, f"no exercise records in {exercises.RECORDS}"
    for name in names:
        wanted = exercises.expected(name)
        assert wanted.seeds == [0, 1, 2], name
        if not wanted.judgeable:  # shown, never judged (notebook 05's early-heavy profile)
            continue
        for path in exercises.RECORDS.glob(f"{name}-s*.json"):
            info = json.loads(path.read_text())
            assert exercises.check(training.Run(name, None, None, info, None)), path.name


def test_the_exercise_data_are_each_notebooks_cpu_mode_data(monkeypatch):
    module = exercises.data("02", full=False, augment=None)
    assert module.subset == exercises.SMOKE_SIZES and module.augment is None
    assert exercises.data("02", full=True).subset == modes.cpu_sizes("02") == (10_000, 1_000,
                                                                              10_000)
    with monkeypatch.context() as cpu_mode:
        cpu_mode.setenv("COURSE_MODE", "cpu")
        for notebook in modes.FULL:  # a notebook's exercises see what its own runs see
            assert exercises.data(notebook, full=True).subset == modes.scale(notebook).subset
    with pytest.raises(ValueError, match="no CPU-mode sizes for notebook '2'; valid: 01, 02"):
        exercises.data("2", full=True)
    assert not exercises.full()
    monkeypatch.setenv("COURSE_EXERCISES", "full")
    assert exercises.full()
    monkeypatch.delenv("COURSE_EXERCISES")
    monkeypatch.setenv("COURSE_MODE", "cpu")
    assert exercises.full()


def test_an_exercise_trains_in_fp32_even_where_the_machine_would_pick_bf16(course_env,
                                                                           monkeypatch):
    monkeypatch.setattr(config, "precision", lambda: "bf16-mixed")
    monkeypatch.setattr(exercises, "EPOCHS", 1)
    images = data.ImageDataModule("CIFAR10", smoke=True, val_size=64,  # the stand-in
                                  subset=(128, 64, 64))
    training.seed(0)
    run = exercises.train(models.create("allcnn", c=8, dropout=0.0), images, "sgd-cosine",
                          name="fp32", full=True)
    assert run.info["precision"] == "32-true"


def test_an_exercise_run_is_kept_and_a_smoke_run_never_replaces_it(course_env, monkeypatch,
                                                                    capsys):
    """Smoke mode trains smoke runs afresh; a learner's full exercise run is kept beside them
    and loaded when its cell runs again."""
    monkeypatch.setattr(exercises, "EPOCHS", 1)
    images = data.ImageDataModule("CIFAR10", smoke=True, val_size=1000,  # the stand-in
                                  subset=(256, 64, 64))

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


class _Blind(torch.nn.Module):
    """A deliberately broken network: it never looks at its input."""

    def __init__(self):
        super().__init__()
        self.scores = torch.nn.Linear(1, 10)

    def forward(self, x):
        return self.scores(torch.zeros(len(x), 1, device=x.device))


def test_a_deliberately_broken_run_on_the_real_data_fails_its_check(course_env, monkeypatch,
                                                                     tmp_path, capsys):
    if not datasets.DEBIAN_FASHION_MNIST.is_dir():
        pytest.skip("needs the Debian package dataset-fashion-mnist")
    monkeypatch.setenv("COURSE_MODE", "cpu")
    monkeypatch.setitem(modes.CPU_TRAIN, "01", 512)
    monkeypatch.setattr(modes, "CPU_VAL", 128)
    monkeypatch.setattr(modes, "CPU_TEST", 512)
    monkeypatch.setattr(exercises, "EPOCHS", 1)
    monkeypatch.setattr(exercise_records, "EPOCHS", 1)  # the epochs a record is judged by
    records = tmp_path / "measured"
    records.mkdir()
    for seed in range(3):  # what correct runs of this small size reached, say
        (records / f"width-s{seed}.json").write_text(json.dumps(
            _info(0.6 + seed / 100, seed=seed, train=512, epochs=1)))
    images = exercises.data("01", full=True)
    broken = exercises.train(_Blind(), images, "sgd-cosine", name="width", full=True,
                             enable_progress_bar=False)
    assert exercises.is_full(broken.info) and broken.info["test_acc"] < 0.15
    capsys.readouterr()
    assert exercises.check(broken, records=records) is False
    assert "Likely cause: chance level" in capsys.readouterr().out


@pytest.mark.parametrize("arguments, says", [
    (("run",), "exercises.check takes the run that exercises.train .* not str 'run'"),
    ((None,), "not NoneType None"),
])
def test_check_names_what_it_takes_instead_of_failing_inside(arguments, says):
    with pytest.raises(TypeError, match=says):
        exercises.check(*arguments)


def test_every_measured_run_has_records_of_its_notebooks_current_data(measuring_script):
    """A notebook's CPU-mode data changed (helpers.modes.CPU_TRAIN) means measuring its runs
    again: records of the old data would judge a learner's run by the wrong range."""
    for name, (notebook, _, recipe, options) in measuring_script.RUNS.items():
        train, val, test = modes.cpu_sizes(notebook)
        for path in exercises.RECORDS.glob(f"{name}-s*.json"):
            measured = json.loads(path.read_text())["definition"]
            assert measured["data"]["images"] == {"train": train, "val": val, "test": test}, \
                path.name
            assert measured["data"]["augment"] == options.get("augment", "crop-flip"), path.name
            assert measured["recipe"]["name"] == recipe, path.name
        assert exercises.expected(name).seeds == [0, 1, 2], name
