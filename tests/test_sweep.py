import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from helpers._machinery import config, runs, sweep_runs
from helpers import measure, models, recipes, sweep
from helpers.models import vgg

# Worked examples of the original generator (feature_amounts.md, 2.8): index, (xi, omega,
# alpha), widths, GMAC.
EXAMPLES = [
    (0, (0, 4, 8), (823, 961, 852, 708, 552, 405, 279, 181, 110, 63, 34, 17, 9, 4, 2), 11.0),
    (8, (0, 4, 40), (985, 965, 852, 708, 552, 405, 279, 181, 110, 63, 34, 17, 9, 4, 2), 12.5),
    (75, (2, 3.5, 8), (2, 200, 964, 1077, 918, 720, 521, 348, 214, 122, 64, 31, 14, 6, 3), 4.05),
    (93, (7, 2, 0), (6, 26, 86, 228, 476, 778, 995, 996, 781, 479, 230, 87, 26, 6, 2), 1.09),
    (160, (15, 4, -40), (2, 4, 8, 17, 34, 63, 110, 180, 278, 403, 551, 706, 851, 964, 989), 0.08),
    (185, (15, 5.5, -40), (24, 38, 58, 85, 123, 170, 229, 298, 375, 457, 539, 615, 679, 726, 712),
     0.15),
]


@pytest.fixture(scope="module")
def vgg_d_family():
    return sweep.skew_normal_variants(16)


# --- the generator ---------------------------------------------------------------------------

@pytest.mark.parametrize("depth, count, budget", [(10, 153, 2688), (13, 194, 3968),
                                                  (16, 193, 5248), (19, 139, 6528)])
def test_variant_counts_per_depth(depth, count, budget):
    assert sum(sweep.reference_widths(depth)) == budget
    variants = sweep.skew_normal_variants(depth)
    assert len(variants) == count and [v.index for v in variants] == list(range(count))
    assert all(len(v.widths) == depth - 1 and min(v.widths) >= 2 for v in variants)


@pytest.mark.parametrize("index, triple, widths, gmac", EXAMPLES)
def test_worked_examples(vgg_d_family, index, triple, widths, gmac):
    variant = vgg_d_family[index]
    assert (variant.xi, variant.omega, variant.alpha) == triple
    assert variant.widths == widths
    decimals = len(str(gmac).split(".")[1])  # as precise as the reference states it
    assert round(variant.macs / 1e9, decimals) == gmac


def test_order_and_families(vgg_d_family):
    triples = [(v.xi, v.omega, v.alpha) for v in vgg_d_family]
    assert triples == sorted(triples)  # xi outer, then omega, then alpha
    per_xi = {xi: sum(v.xi == xi for v in vgg_d_family) for xi in range(16)}
    assert per_xi[0] == 34 and per_xi[15] == 33 and per_xi[5] == per_xi[10] == 0
    assert 4995 <= min(sum(v.widths) for v in vgg_d_family)
    assert max(sum(v.widths) for v in vgg_d_family) == 5204


def test_budget_fractions_of_model_001():
    fractions = sweep.layer_fractions(15, 0, 4, 8) * 100
    expected = [15.67, 18.29, 16.23, 13.47, 10.51, 7.70, 5.31, 3.43, 2.09, 1.19, 0.64, 0.32,
                0.15, 0.07, 0.03]
    assert np.round(fractions, 2).tolist() == expected


def test_cost_confound(vgg_d_family):
    parameters = [v.parameters for v in vgg_d_family]
    macs = [v.macs for v in vgg_d_family]
    baseline = sweep.vgg_d()
    assert baseline.parameters == 15_250_378 and round(baseline.macs / 1e9, 2) == 0.31
    assert 13.7e6 < min(parameters) < 13.9e6 and 31.9e6 < max(parameters) < 32.0e6
    assert sum(p < baseline.parameters for p in parameters) == 33
    assert round(min(macs) / 1e9, 2) == 0.08 and round(max(macs) / 1e9, 1) == 12.5


def test_representatives_span_the_family(vgg_d_family):
    chosen = sweep.representatives(vgg_d_family)
    assert [v.xi for v in chosen] == sorted({v.xi for v in vgg_d_family})  # 14 locations
    assert len(chosen) == 14 and all(v in vgg_d_family for v in chosen)


@pytest.mark.parametrize("triple, reason", [
    ((7, 2, 0), None),
    ((5, 3, 0), "only 0.942 of its area inside the layers"),
    ((7, 1, 0), "a layer narrower than 2"), ((0, 2, 40), "a layer narrower than 2")])
def test_a_curve_says_why_it_is_not_a_variant(triple, reason):
    found = sweep.curve(16, *triple)
    assert (found.rejected is None) if reason is None else found.rejected.startswith(reason)
    assert len(found.widths) == 15


def test_the_variants_are_exactly_the_curves_that_pass(vgg_d_family):
    for variant in vgg_d_family[::20]:
        assert sweep.curve(16, variant.xi, variant.omega, variant.alpha).widths == variant.widths


def test_an_invalid_depth_lists_the_valid_ones():
    with pytest.raises(ValueError, match="depth 11 .*valid depths: 10, 13, 16, 19"):
        sweep.skew_normal_variants(11)
    with pytest.raises(TypeError, match="depth must be a whole number"):
        sweep.skew_normal_variants([16])  # not hashable: still the course's error


def test_each_caller_gets_its_own_list_of_the_cached_family(vgg_d_family):
    mine = sweep.skew_normal_variants(16)
    assert mine == vgg_d_family and mine is not vgg_d_family
    mine.clear()
    assert len(sweep.skew_normal_variants(16)) == 193


# --- the VGG builder -------------------------------------------------------------------------

@pytest.mark.parametrize("index", [0, 93, 160])
def test_analytic_counts_match_the_built_network(vgg_d_family, index):
    widths = vgg_d_family[index].widths
    model = models.create("vgg", widths=widths)
    assert measure.count_parameters(model) == vgg.parameter_count(widths)
    assert measure.count_flops(model, (3, 32, 32)) == 2 * vgg.macs(widths)


def test_vgg_layers():
    model = models.create("vgg-d")
    assert measure.count_parameters(model) == 15_250_378
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(convs) == 13 and all(c.bias is None for c in convs)
    assert all(n.eps == 1e-4 for n in norms)
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in model.modules()) == 5
    assert model.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    for letter, convs_expected in (("a", 8), ("b", 10), ("e", 16)):
        standard = models.create(f"vgg-{letter}")
        assert sum(isinstance(m, torch.nn.Conv2d) for m in standard.modules()) == convs_expected


def test_a_width_list_of_the_wrong_length_is_an_error():
    with pytest.raises(ValueError, match="11 widths give 9 convolutions; valid: 9, 10, 12, 15, 18"):
        models.create("vgg", widths=[8] * 11)


# --- the sweep runner ------------------------------------------------------------------------

def _tiny(index, width=4):
    return sweep.Variant(index, float(index), 4.0, 0.0, tuple([width] * 13 + [8, 8]))


SETTINGS = sweep.SweepSettings("CIFAR10", "mundt-sgdr", epochs=2, subset=(128, 64, 64))


def test_bad_names_fail_before_training():
    with pytest.raises(ValueError, match="unknown data set 'CIFAR11'"):
        sweep.SweepSettings("CIFAR11", "mundt-sgdr")
    with pytest.raises(ValueError, match="unknown recipe 'sgdr'"):
        sweep.SweepSettings("CIFAR10", "sgdr")


def test_a_sweep_writes_one_table_with_histories(course_env, capsys):
    table = sweep.run_sweep([_tiny(0), _tiny(1, 6)], SETTINGS, course_env / "sweep")
    assert table["variant"].tolist() == [0, 1] and (table["status"] == "done").all()
    # one progress bar counted in epochs, ending with the last variant's result
    bar = capsys.readouterr().err.split("\r")[-1]
    accuracy = f"{table['test_acc'][1]:.1%}"
    assert bar.startswith("sweep sweep: 100%") and "4/4 [" in bar and "epoch" in bar
    assert bar.rstrip().endswith(f"variant-001: {accuracy}]")
    for column in ("widths", "parameters", "macs", "xi", "omega", "alpha", "train_acc",
                   "val_acc", "test_acc_per_epoch", "best_val_acc", "best_test_acc",
                   "last_test_acc", "micro_batch", "train_seconds", "hardware", "seed"):
        assert column in table, column
    assert len(json.loads(table["test_acc_per_epoch"][0])) == 2
    assert json.loads(table["widths"][1])[0] == 6
    saved = (course_env / "sweep" / "results.csv").read_text()
    assert saved.count("\n") == 3  # header and two rows
    again = sweep.run_sweep([_tiny(0), _tiny(1, 6)], SETTINGS, course_env / "sweep")  # no work
    assert again.equals(table)
    assert capsys.readouterr().err == ""  # and no progress bar for it


def test_a_sweep_without_epochs_trains_the_quick_mode_epochs_it_plans(course_env):
    settings = sweep.SweepSettings("CIFAR10", "mundt-sgdr", subset=(128, 64, 64))  # 150 planned
    table = sweep.run_sweep([_tiny(0)], settings, course_env / "quick-sweep")
    assert table["epochs_planned"][0] == table["epochs"][0] == config.SMOKE_EPOCHS


def test_a_sweep_survives_out_of_memory(course_env, monkeypatch, out_of_memory_above):
    """One variant fits only in micro-batches of 16, one never fits: it is recorded as
    skipped and the sweep goes on."""
    create = models.create

    def limited(name, **hparams):
        model = create(name, **hparams)
        limit = 16 if hparams["widths"][0] == 4 else 1
        return out_of_memory_above(model, limit)

    monkeypatch.setattr(models, "create", limited)
    table = sweep.run_sweep([_tiny(0), _tiny(1, 6), _tiny(2)], SETTINGS, course_env / "sweep")
    assert table["status"].tolist() == ["done", "does not fit", "done"]
    assert table["micro_batch"][0] == 16 and "does not fit" in table["note"][1]



class _Interrupted(Exception):
    """Stands in for a kill: raised at a chosen moment, it leaves the folder as a kill would."""


class _StopInFinalTest(pl.Callback):
    def on_test_start(self, trainer, module):
        raise _Interrupted


def _without_timings(row):
    return {key: value for key, value in row.items()
            if key not in ("train_seconds", "wall_seconds", "date", "hardware")}


@pytest.mark.parametrize("moment", ["in its final test", "between its record and its row"])
def test_an_abandoned_variant_stays_abandoned_after_an_interruption(course_env, monkeypatch,
                                                                   moment):
    """Abandoned after epoch 1 of 3 (a threshold no variant reaches), then interrupted: run
    again, it is still abandoned after 1 epoch (before: trained all 3 and reported 'done')."""
    monkeypatch.setattr(sweep_runs.AbandonUnlessLearning, "TIMES_CHANCE", 11)
    settings = sweep.SweepSettings("CIFAR10", "mundt-sgdr", epochs=3, abandon_after=1,
                                   subset=(128, 64, 64))
    twin = sweep_runs.train_variant(_tiny(0), settings, course_env / "twin")
    assert twin["status"] == "abandoned" and twin["epochs"] == 1
    directory = course_env / "sweep"
    if moment == "in its final test":
        with pytest.raises(_Interrupted):
            sweep_runs.train_variant(_tiny(0), settings, directory, callbacks=(_StopInFinalTest(),))
    else:
        write_text = sweep_runs.files.write_text

        def fail_on_rows(path, text):
            if Path(path).parent.name == "rows":
                raise _Interrupted
            write_text(path, text)

        monkeypatch.setattr(sweep_runs.files, "write_text", fail_on_rows)
        with pytest.raises(_Interrupted):
            sweep_runs.train_variant(_tiny(0), settings, directory)
        monkeypatch.setattr(sweep_runs.files, "write_text", write_text)
        assert runs.is_complete(directory / "variant-000")
    table = sweep.run_sweep([_tiny(0)], settings, directory)
    row = table.to_dict("records")[0]
    assert row["status"] == "abandoned" and row["epochs"] == 1
    assert _without_timings(row) == _without_timings(twin)


def test_a_resumed_variant_keeps_its_micro_batch(course_env, monkeypatch, out_of_memory_above):
    """A variant that fits only in micro-batches of 16, interrupted in its final test, records
    16 when it is finished (before: null, as the resumed process never trained a batch)."""
    create = models.create
    monkeypatch.setattr(models, "create",
                        lambda name, **hparams: out_of_memory_above(create(name, **hparams), 16))
    with pytest.raises(_Interrupted):
        sweep_runs.train_variant(_tiny(0), SETTINGS, course_env / "sweep",
                            callbacks=(_StopInFinalTest(),))
    row = sweep_runs.train_variant(_tiny(0), SETTINGS, course_env / "sweep")
    assert row["status"] == "done" and row["micro_batch"] == 16


def test_a_results_row_is_bound_to_its_variants_widths(course_env):
    directory = course_env / "sweep"
    sweep.run_sweep([_tiny(0)], SETTINGS, directory)
    with pytest.raises(runs.DefinitionMismatch) as error:
        sweep.run_sweep([_tiny(0, 6)], SETTINGS, directory)  # index 0, other widths
    assert "[4, 4, 4" in str(error.value) and "[6, 6, 6" in str(error.value)
    assert "another folder" in str(error.value)
    assert json.loads(sweep.results(directory)["widths"][0])[0] == 4  # nothing changed


@pytest.mark.parametrize("call, error, words", [
    (lambda d: sweep.run_sweep(_tiny(0), SETTINGS, d), TypeError, "list of Variant"),
    (lambda d: sweep.run_sweep([_tiny(0), _tiny(0, 6)], SETTINGS, d), ValueError,
     "index 0 more than once"),
    (lambda d: sweep.run_sweep([_tiny(0)], "CIFAR10", d), TypeError, "SweepSettings"),
    (lambda d: sweep.run_sweep([_tiny(0)], SETTINGS, None), TypeError, "directory"),
    (lambda d: sweep.run_sweep([_tiny(0)], SETTINGS, d, workers=0), ValueError, "workers=0"),
    (lambda d: sweep.run_sweep([_tiny(0)], SETTINGS, d, workers="2"), ValueError, "workers='2'"),
    (lambda d: sweep.run_sweep([_tiny(0)], SETTINGS, d, workers=True), ValueError,
     "workers=True"),
])
def test_bad_sweep_arguments_are_named_before_anything_is_written(course_env, call, error,
                                                                  words):
    with pytest.raises(error, match=words):
        call(course_env / "sweep")
    assert not (course_env / "sweep").exists()


@pytest.mark.parametrize("field, value, error, words", [
    ("epochs", "3", TypeError, "epochs='3'"),
    ("epochs", 0, ValueError, "epochs must be a whole number of at least 1, not 0"),
    ("seed", 1.5, TypeError, "seed=1.5"),
    ("val_size", -1, ValueError, "val_size=-1"),
    ("abandon_after", 0, ValueError, "abandon_after=0"),
    ("width_scale", True, TypeError, "width_scale=True"),
    ("width_scale", 2.0, ValueError, "width_scale=2.0"),
    ("width_scale", float("nan"), ValueError, "width_scale=nan"),
    ("augment", "jitter", ValueError, "augment='jitter'"),
    ("subset", (128, -1, 64), ValueError, "subset"),
    ("data", None, TypeError, "data=None"),
])
def test_bad_sweep_settings_are_named(field, value, error, words):
    with pytest.raises(error, match=re.escape(words)):
        sweep.SweepSettings(**{"data": "CIFAR10", "recipe": "mundt-sgdr", field: value})


CHILD = """
import sys, time
from helpers import sweep
from helpers._machinery import sweep_runs
original = sweep_runs.AbandonUnlessLearning.on_train_epoch_end
def slow(self, trainer, module):  # give the test time to kill mid-variant
    time.sleep(0.7)
    original(self, trainer, module)
sweep_runs.AbandonUnlessLearning.on_train_epoch_end = slow
variants = [sweep.Variant(i, float(i), 4.0, 0.0, tuple([4] * 13 + [8, 8])) for i in range(3)]
settings = sweep.SweepSettings("CIFAR10", "mundt-sgdr", epochs=3, subset=(128, 64, 64))
sweep.run_sweep(variants, settings, sys.argv[1])
"""


@pytest.mark.slow
def test_a_killed_sweep_resumes_without_losing_or_repeating_anything(course_env, tmp_path):
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(CHILD))
    directory = course_env / "sweep"
    command = [sys.executable, str(script), str(directory)]
    child = subprocess.Popen(command, env=dict(os.environ), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not ((directory / "rows" / "variant-000.json").exists()
               and (directory / "variant-001" / "last.ckpt").exists()):
        assert child.poll() is None and time.time() < deadline, "the sweep ended too early"
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)  # in the middle of variant 1
    child.wait()
    assert not (directory / "rows" / "variant-001.json").exists()
    resumed = subprocess.run(command, env=dict(os.environ), check=True, capture_output=True,
                             text=True)
    table = sweep.results(directory)
    assert table["variant"].tolist() == [0, 1, 2]  # none lost, none twice
    # the progress bar starts with the epochs variant 1 kept, of the 6 left to the sweep
    states = [state for state in resumed.stderr.split("\r") if "/6 [" in state]
    assert not states[0].split("/6 [")[0].endswith(" 0") and "6/6 [" in states[-1]
    assert (table["epochs"] == 3).all()
    assert (directory / "variant-001" / "logs" / "csv-2").is_dir()  # continued, not restarted
    history = json.loads(table["val_acc"][1])
    assert len(history) == 3


def test_early_abandonment_after_the_first_cycle():
    callback = sweep_runs.AbandonUnlessLearning(num_classes=10, after_epochs=10)

    class Trainer:
        should_stop = False
        callback_metrics = {"train_acc": torch.tensor(0.15)}
        current_epoch = 9

    trainer = Trainer()
    callback.on_train_epoch_end(trainer, None)
    assert trainer.should_stop and callback.abandoned
    learning = Trainer()
    learning.callback_metrics = {"train_acc": torch.tensor(0.25)}
    fresh = sweep_runs.AbandonUnlessLearning(num_classes=10, after_epochs=10)
    fresh.on_train_epoch_end(learning, None)
    assert not learning.should_stop and not fresh.abandoned
    assert recipes.get_recipe("mundt-sgdr").cycle_epochs == 10


def test_scaled_to_macs_keeps_the_profile_at_an_equal_compute_budget():
    early, late = sweep.representatives(sweep.skew_normal_variants(16))[::13]
    budget = sweep.scaled(sweep.vgg_d(), 1 / 8).macs
    for variant in (early, late):
        equal = sweep.scaled_to_macs(variant, budget)
        assert abs(equal.macs - budget) / budget < 0.02  # whole widths allow about this much
        assert equal.xi == variant.xi and len(equal.widths) == len(variant.widths)
        order = sorted(range(15), key=lambda i: variant.widths[i])
        assert equal.widths[order[-1]] == max(equal.widths)  # the widest layer stays widest
