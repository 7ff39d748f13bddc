"""The list of reference runs, the runs the course ships, and `make reference`'s reporting."""

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from helpers._machinery import config, datasets, reference_runs, runs
from helpers import exercises, measure, models, modes, training

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "saved_models"
SINGLE_RUNS = [entry for entry in reference_runs.RUNS
               if isinstance(entry, reference_runs.Reference)]
# The eight runs recorded before definition.json existed, whose records were migrated once
# (2026-12-04); toy models, small enough to evaluate on the whole test set in seconds.
MIGRATED = [reference_runs.get(f"{model}-fashionmnist-{recipe}")
            for model in ("cnn-toy", "ccnn-toy")
            for recipe in ("s0", "sgd-cosine-s0", "sgd-cosine-s1", "sgd-cosine-s2")]
# Runs small enough to evaluate on the whole test set in seconds on a 2-core CPU.
FAST = [*MIGRATED, reference_runs.get("tutorial5-resnet-fashionmnist")]


@pytest.fixture
def shipped(monkeypatch):
    """The repository's saved_models/ and the real Fashion-MNIST, read only."""
    monkeypatch.setenv("SAVED_MODELS_DIR", str(SHIPPED))
    monkeypatch.setenv("COURSE_MODE", "full")
    if not datasets.DEBIAN_FASHION_MNIST.is_dir():
        pytest.skip("needs the Debian package dataset-fashion-mnist")


def test_the_list_is_one_run_per_name_with_valid_settings():
    names = [entry.name for entry in reference_runs.RUNS]
    assert len(names) == len(set(names))
    for entry in SINGLE_RUNS:
        runs.check_name(entry.name)
        assert entry.notebook in ("01", "02", "03", "04") and entry.departure
        entry.training_recipe()  # a valid recipe with valid changes
        assert entry.data().subset is None or entry.data().subset[0] == entry.train_images


def test_each_comparison_uses_one_recipe_length_and_data():
    """Within a notebook's comparison the runs differ only in the model (03: and in the
    tutorial's optimizer per family, as Tutorial 5 did)."""
    for notebook in ("01", "02", "03"):
        group = [e for e in SINGLE_RUNS if e.notebook == notebook]
        assert len({(e.epochs, e.train_images, e.augment, e.seed) for e in group}) == 1
        if notebook != "03":
            assert len({e.recipe for e in group}) == 1
    course = [e for e in SINGLE_RUNS if e.recipe == "sgd-cosine" and e.notebook == "04"]
    assert {(e.model, e.seed) for e in course} == {
        (m, s) for m in ("cnn-toy", "ccnn-toy", "cnn-toy-checkered") for s in (0, 1, 2)}


def test_the_converted_cnn_has_exactly_the_plain_cnn_s_parameters():
    converted = models.create("cnn-toy-checkered")
    assert measure.count_parameters(converted) == measure.count_parameters(
        models.create("cnn-toy")) == 67_913
    assert measure.count_parameters(models.create("ccnn-toy")) == 93_833


def test_the_sweep_entries_scale_vgg_d_to_an_eighth():
    sweeps = [e for e in reference_runs.RUNS if isinstance(e, reference_runs.ReferenceSweep)]
    assert [len(e.chosen()) for e in sweeps] == [15, 3, 3]
    assert {e.settings.seed for e in sweeps} == {0, 1, 2}
    from helpers import sweep
    assert sum(sweep.scaled(sweep.vgg_d(), sweeps[0].settings.width_scale).widths) == 656


@pytest.mark.parametrize("entry", SINGLE_RUNS, ids=lambda e: e.name)
def test_a_shipped_run_is_complete_and_its_weights_load_strictly(shipped, entry):
    if not (entry.folder / "run.json").exists():
        pytest.skip(f"{entry.name} is not trained yet (make reference)")
    assert entry.status() == reference_runs.Status("finished")
    state = torch.load(entry.folder / "weights.pt", weights_only=True)
    model = entry.build()
    model.load_state_dict(state, strict=True)
    saved = torch.load(entry.folder / "test_probabilities.pt", weights_only=True)
    assert saved["probabilities"].shape == (10_000, 10)
    assert saved["probabilities"].dtype == torch.float16
    info, history = runs.read_record(entry.folder)
    accuracy = (saved["probabilities"].argmax(1) == saved["labels"]).float().mean().item()
    assert accuracy == pytest.approx(info["test_acc"], abs=0.001)  # the probabilities are its
    assert info["data"] == "FashionMNIST" and not info["smoke_run"]
    assert info["images"] == {"train": entry.train_images or 55_000, "val": 5000, "test": 10_000}
    assert len(history) == info["epochs"] == entry.epochs


@pytest.mark.parametrize("entry", FAST, ids=lambda e: e.name)
def test_the_recorded_test_accuracy_is_reproduced(shipped, entry):
    """The committed weights, evaluated afresh on the real test set, give the recorded accuracy
    and probabilities: to 0.1 point in the precision the run was evaluated in. A machine
    without native bf16 evaluates bf16 runs in fp32 instead (emulated bf16 takes minutes
    here), which moved accuracies by up to 0.11 point in our measurements: 0.3 then."""
    if not (entry.folder / "run.json").exists():
        pytest.skip(f"{entry.name} is not trained yet (make reference)")
    run = entry.load()
    same = config.precision() == run.info["precision"]
    probabilities, labels = training.predict(run.model, entry.data(),
                                             precision=config.precision())
    accuracy = (probabilities.argmax(1) == labels).float().mean().item()
    assert accuracy == pytest.approx(run.info["test_acc"], abs=0.001 if same else 0.003)
    recorded, recorded_labels = run.test_probabilities()
    assert torch.equal(recorded_labels, labels)
    agreement = (recorded.argmax(1) == probabilities.argmax(1)).float().mean().item()
    assert agreement > (0.998 if same else 0.99)
    if same:  # float16 storage; bf16 also rounds the logits (by up to 0.043 in a probability
        # for cnn-toy-fashionmnist-s0, whose lr-1.6 recipe left large logits; all argmaxes agree)
        bound = 0.05 if run.info["precision"].startswith("bf16") else 0.02
        assert (recorded - probabilities).abs().max() < bound


def test_a_run_that_disagrees_with_the_list_is_reported(course_env, monkeypatch):
    """A saved run trained with another seed than its entry: the entry and make reference say
    so, and the run is not trained over."""
    if not datasets.DEBIAN_FASHION_MNIST.is_dir():
        pytest.skip("needs the Debian package dataset-fashion-mnist")
    monkeypatch.setenv("COURSE_MODE", "full")
    entry = reference_runs.get("cnn-toy-fashionmnist-sgd-cosine-s1")
    shutil.copytree(SHIPPED / entry.name, config.saved_models_dir() / entry.name)
    definition = runs.saved_definition(entry.folder)
    definition["seed"] = 7
    (entry.folder / "definition.json").write_text(json.dumps(definition))
    record = (entry.folder / "run.json").read_text()
    assert entry.status() == reference_runs.Status("disagrees", "seed: 7 in the folder vs 1 now")
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "reference.py"), "--only",
                           entry.name], capture_output=True, text=True, check=False,
                          env={**os.environ})
    assert done.returncode == 1, done.stderr[-2000:]
    assert "disagree with the list and were not trained: cnn-toy-fashionmnist-sgd-cosine-s1" \
        in done.stderr
    assert (entry.folder / "run.json").read_text() == record


@pytest.mark.slow
def test_a_run_another_process_is_training_is_left_to_it(course_env, monkeypatch, hold_lock,
                                                          capsys):
    """A second `make reference` while the first trains a run: the run is reported in use (by
    whom) and not touched, a notebook says it is being trained; once its process ends, it is an
    ordinary missing run again."""
    monkeypatch.setenv("COURSE_MODE", "full")
    entry = reference_runs.get("cnn-toy-fashionmnist-sgd-cosine-s1")
    holder = hold_lock(entry.folder)
    assert entry.status().state == "in use"
    assert entry.status().detail.startswith(f"process {holder.pid} on ")
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "reference.py"), "--only",
                           entry.name, "--dry-run"], capture_output=True, text=True,
                          check=False, env={**os.environ})
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"Left to the process that is training them: {entry.name}." in done.stdout
    assert "Nothing to train." in done.stdout
    reference_runs.finished("04")  # a notebook meanwhile: the run is not shown, and says why
    assert (f"Reference run {entry.name} is being trained now (process {holder.pid} on "
            in capsys.readouterr().out)
    holder.kill()
    holder.wait()
    assert entry.status() == reference_runs.Status("missing")


@pytest.mark.parametrize("damage", ["garbled definition", "garbled record", "weights gone"])
def test_one_damaged_reference_folder_is_reported_and_hides_nothing_else(course_env, monkeypatch,
                                                                         capsys, damage):
    if not datasets.DEBIAN_FASHION_MNIST.is_dir():
        pytest.skip("needs the Debian package dataset-fashion-mnist")
    monkeypatch.setenv("COURSE_MODE", "full")
    there, damaged = (reference_runs.get(f"cnn-toy-fashionmnist-sgd-cosine-s{seed}")
                      for seed in (0, 1))
    for entry in (there, damaged):
        shutil.copytree(SHIPPED / entry.name, config.saved_models_dir() / entry.name)
    if damage == "weights gone":
        (damaged.folder / runs.WEIGHTS).unlink()
        (damaged.folder / runs.BEST).unlink(missing_ok=True)
    else:
        name = runs.DEFINITION if damage == "garbled definition" else runs.RECORD
        (damaged.folder / name).write_text('{"seed": 1, "mod')
    found = reference_runs.finished("04")
    assert list(found) == [there.name]  # still shown
    out = capsys.readouterr().out
    assert f"Reference run {damaged.name} is damaged" in out and str(damaged.folder) in out
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "reference.py"), "--only",
                           there.name, damaged.name, "--dry-run"], capture_output=True,
                          text=True, check=False, env={**os.environ})
    assert done.returncode == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert re.search(rf"{there.name} +finished", done.stdout)
    assert re.search(rf"{damaged.name} +damaged \(said below\)", done.stdout)
    assert f"{damaged.name} was not trained: damaged: " in done.stderr


def test_the_shipped_reference_files_stay_under_50_mb():
    kept = (runs.WEIGHTS, runs.PROBABILITIES, runs.HISTORY, runs.RECORD, runs.DEFINITION)
    sizes = [(SHIPPED / entry.name / name).stat().st_size for entry in SINGLE_RUNS
             for name in kept if (SHIPPED / entry.name / name).exists()]
    sizes += [path.stat().st_size for path in (SHIPPED / "sweeps").rglob("*")
              if path.is_file() and "variant-" not in str(path) and "vgg-d" not in str(path)]
    assert sum(sizes) < 50e6


def test_a_notebook_gets_its_finished_runs_and_a_line_for_each_other(course_env, monkeypatch,
                                                                     capsys):
    """Of notebook 04's runs, one is there, one disagrees with the list (another seed), the
    others are missing: only the first is returned, and each of the others gets one line."""
    monkeypatch.setenv("COURSE_MODE", "full")
    if not datasets.DEBIAN_FASHION_MNIST.is_dir():
        pytest.skip("needs the Debian package dataset-fashion-mnist")
    there, other = (reference_runs.get(f"cnn-toy-fashionmnist-sgd-cosine-s{seed}")
                    for seed in (0, 1))
    for entry in (there, other):
        shutil.copytree(SHIPPED / entry.name, config.saved_models_dir() / entry.name)
    definition = runs.saved_definition(other.folder)
    definition["seed"] = 7
    (other.folder / "definition.json").write_text(json.dumps(definition))
    found = reference_runs.finished("04")
    assert list(found) == [there.name] and found[there.name].info["seed"] == 0
    lines = capsys.readouterr().out.splitlines()
    notebook_04 = [e for e in SINGLE_RUNS if e.notebook == "04"]
    assert len(lines) == len(notebook_04) - 1
    assert (f"Reference run {other.name} disagrees with the list (seed: 7 in the folder vs 1 "
            f"now): not shown. Train it with `make reference ONLY={other.name}`.") in lines
    assert reference_runs.finished_sweeps("05") == {}


def test_recorded_test_predictions_come_with_the_images_they_were_made_on(shipped):
    entry = FAST[0]
    if not (entry.folder / "run.json").exists():
        pytest.skip(f"{entry.name} is not trained yet (make reference)")
    images, labels, probabilities, classes = entry.test_predictions()
    assert images.shape == (10_000, 1, 28, 28) and images.dtype == torch.uint8
    assert torch.equal(labels, datasets.load("FashionMNIST", "test").labels)
    assert probabilities.shape == (10_000, 10) and classes[0] == "T-shirt/top"


def test_showing_a_notebook_s_shipped_runs_builds_each_model_once(shipped, monkeypatch):
    """Their status needs no model, and their recorded predictions no weights: only loading a
    run builds its model."""
    built = []
    create = models.create
    monkeypatch.setattr(models, "create", lambda name, **hparams: built.append(name) or create(
        name, **hparams))
    found = reference_runs.finished("01")
    for name in found:
        reference_runs.get(name).test_predictions()
    assert len(found) == 2 and built == ["allcnn", "allcnn"]


def test_recorded_predictions_need_the_real_test_set(course_env, monkeypatch):
    """Without the real data (smoke mode's stand-in), the gallery says how to get it."""
    entry = FAST[0]
    shutil.copytree(SHIPPED / entry.name, config.saved_models_dir() / entry.name)
    monkeypatch.setattr(datasets, "DEBIAN_FASHION_MNIST", Path("/nonexistent"))
    with pytest.raises(datasets.DatasetNotFoundError,
                       match="apt-get install dataset-fashion-mnist"):
        entry.test_predictions()


def test_a_sweeps_estimate_counts_only_the_epochs_left(monkeypatch):
    """Finished variants cost nothing more, an interrupted one only its remaining epochs."""
    entry = reference_runs.get("fashionmnist-eighth-sgdr10")
    monkeypatch.setattr(reference_runs.fitting, "estimate_seconds",
                        lambda model, data, recipe, epochs, precision: float(epochs))  # 1 s/epoch
    monkeypatch.setattr(reference_runs.sweep, "results",
                        lambda folder: pd.DataFrame({"variant": [-1]}))
    monkeypatch.setattr(reference_runs.runs, "epochs_done",
                        lambda folder: 6 if folder.name == "variant-017" else 0)
    assert entry.estimate_seconds() == 14 * 10 - 6  # 14 profiles to train, VGG-D done


def test_the_results_table_writes_a_sweep_as_one_line(monkeypatch):
    """A finished sweep: VGG-D's accuracy, the best profile's, the summed time; every run
    that is not finished is named below the table."""
    sweep_table = pd.DataFrame({  # an abandoned profile counts, one that did not fit does not
        "xi": [math.nan, 0.0, 7.0, 15.0], "status": ["done", "abandoned", "done", "does not fit"],
        "test_acc": [0.85, 0.29, 0.87, math.nan],
        "parameters": [900_000, 1_500_000, 1_000_000, 800_000],
        "train_seconds": [600.0, 2400.0, 600.0, math.nan],
        "wall_seconds": [math.nan, math.nan, math.nan, 60.0],
        "hardware": ["CPU X"] * 4, "precision": ["32-true"] * 3 + [None],
        "date": ["2026-11-30T01:00:00+00:00", "2026-11-30T02:00:00+00:00",
                 "2026-11-30T02:10:00+00:00", None]})
    monkeypatch.setattr(reference_runs.Reference, "status",
                        lambda self: reference_runs.Status("missing"))
    monkeypatch.setattr(reference_runs.ReferenceSweep, "status",
                        lambda self: reference_runs.Status(
                            "finished" if self.name == "fashionmnist-eighth-sgdr10" else "missing"))
    monkeypatch.setattr(reference_runs.ReferenceSweep, "load", lambda self: sweep_table)
    lines = reference_runs.results_markdown().splitlines()
    assert lines[2] == (
        "| `fashionmnist-eighth-sgdr10` (sweep) | 05 | VGG-D and 2 profiles, widths x 0.125 | "
        "800,000 to 1,500,000 | 5,000 train / 2,000 val / 10,000 test, 32x32 | `mundt-sgdr`, 10 "
        "epochs | VGG-D 85.00%; best profile (xi = 7) 87.00% | 61 min | CPU X, 32-true | "
        "2026-11-30 |")
    sweep_table = sweep_table.drop(columns="wall_seconds").iloc[:3]  # no variant failed
    assert "| 60 min |" in reference_runs.results_markdown().splitlines()[2]
    assert lines[-1].startswith(f"Not trained yet ({len(reference_runs.RUNS) - 1} of "
                                f"{len(reference_runs.RUNS)}): `allcnn-c64-plain-fashionmnist`")


def test_the_readme_results_table_is_written_from_the_records(shipped):
    """README's table is `python scripts/reference.py --table`: never typed by hand."""
    readme = (ROOT / "README.md").read_text()
    start, end = reference_runs.README_MARKERS
    block = readme.split(start)[1].split(end)[0]
    assert block.strip() == reference_runs.results_markdown()


def _what_to_expect(notebook: str) -> str:
    path = next((ROOT / "notebooks").glob(f"{notebook}_*.ipynb"))
    cells = json.loads(path.read_text())["cells"][:3]
    boxes = ["".join(cell["source"]) for cell in cells
             if "**What to expect**" in "".join(cell["source"])]
    assert len(boxes) == 1, f"{path.name} must open with one 'What to expect' box"
    return boxes[0]


@pytest.mark.parametrize("notebook", ["01", "02", "03", "04", "05"])
def test_each_notebook_opens_with_what_to_expect_in_four_lines(shipped, notebook):
    """The box: this mode's time, what your own runs reach, what the reference runs reached,
    what full mode does. It quotes only numbers the records give (a reference run's test
    accuracy, or the mean over its seeds), and no machines, threads or dates: those belong in
    the run records."""
    box = _what_to_expect(notebook)
    bullets = re.split(r"\n> \* ", box)[1:]
    assert [bullet.split("**")[1] for bullet in bullets] == [
        "Time:", "Your runs", "The reference runs", "Full mode"]
    assert "CPU mode" in bullets[0] and "minutes" in bullets[0]
    assert not re.search(r"AMD|EPYC|AVX|thread|20\d\d-\d\d", box), "machine or date in the box"
    finished = reference_runs.finished(notebook)
    recorded = {f"{run.info['test_acc']:.2%}" for run in finished.values()}
    by_model = {}
    for name, run in finished.items():
        entry = reference_runs.get(name)
        by_model.setdefault((entry.model, entry.recipe), []).append(run.info["test_acc"])
    recorded |= {f"{sum(values) / len(values):.2%}" for values in by_model.values()}
    for table in reference_runs.finished_sweeps(notebook).values():
        recorded |= {f"{value:.2%}" for value in table["test_acc"].dropna()}
    quoted = re.findall(r"\*\*(\d+\.\d\d) %\*\*", bullets[2])
    assert quoted, "the box quotes no reference result"
    assert {f"{q}%" for q in quoted} <= recorded, "a quoted result is not in the records"


@pytest.mark.parametrize("notebook", ["01", "02", "03", "04"])
def test_what_to_expect_gives_what_the_measured_runs_of_the_notebooks_own_runs_reached(
        measuring_script, notebook):
    """The box's "Your runs" quotes the range (whole percents) and the training images of the
    records of the notebook's own CPU-mode runs: new records, or new data, mean rewriting it."""
    bullet = re.split(r"\n> \* ", _what_to_expect(notebook))[2]
    low, high = map(int, re.search(r"reach (\d+) to (\d+) %", bullet).groups())
    own = [name for name, entry in measuring_script.RUNS.items()
           if entry[0] == notebook and name.endswith("-fashionmnist-cpu")]
    reached = [100 * json.loads(path.read_text())["test_acc"]
               for name in own for path in exercises.RECORDS.glob(f"{name}-s*.json")]
    assert len(own) == 2 and len(reached) == 12, (own, len(reached))
    assert (low, high) == (round(min(reached)), round(max(reached)))
    images = f"on {modes.cpu_sizes(notebook)[0]:,} images"
    assert images in " ".join(bullet.replace(">", " ").split()), images


def test_an_unknown_reference_run_lists_the_valid_ones():
    with pytest.raises(ValueError, match="no reference run 'x'; valid: allcnn-c64-plain"):
        reference_runs.get("x")
