"""The training benchmarks: they measure what they say, on whatever data is at hand."""

import json
import shutil
from collections import Counter

import pandas as pd
import pytest
import torch

from helpers._machinery import config, datasets, dense_kernels
from helpers import data, measure, models, sweep
from helpers.models.densenet import densenet
from loading import ROOT, load_script

FOLDER = ROOT / "benchmarks"


def _load(name):
    return load_script(FOLDER / f"{name}.py")


throughput = _load("train_throughput")
time_to_accuracy = _load("time_to_accuracy")
results = _load("_results")


def test_a_benchmark_result_is_saved_per_benchmark_device_and_variant(monkeypatch, tmp_path,
                                                                      capsys):
    monkeypatch.setattr(results, "FOLDER", tmp_path)
    path = results.save("time_to_accuracy", {"ratio": 2.5}, "-10-epochs")
    assert path == tmp_path / f"time_to_accuracy-{results.device()}-10-epochs.json"
    assert json.loads(path.read_text()) == {"ratio": 2.5}
    assert f"Saved {path}" in capsys.readouterr().out
    # the course's two CPU types keep a record each, so that one never replaces the other's
    monkeypatch.setattr(config, "device_type", lambda: "cpu")
    names = set()
    for capability in ("AVX512", "AVX2"):
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
        names.add(results.save("allocator", {"on": capability}).name)
    assert names == {"allocator-cpu-avx512.json", "allocator-cpu-avx2.json"}
    monkeypatch.setattr(config, "device_type", lambda: "cuda")
    assert results.save("allocator", {}).name == "allocator-cuda.json"


def test_both_pipelines_see_the_same_images_in_the_same_layout():
    pixels, labels, source = throughput.cifar10_images(64)
    assert pixels.shape == (64, 32, 32, 3) and pixels.dtype == "uint8" and "random" in source
    stats = datasets.mean_std(torch.from_numpy(pixels).permute(0, 3, 1, 2))
    usual = throughput.tutorial_dataset(pixels, labels, stats)
    course = throughput.course_data(pixels, labels, source, stats)
    assert len(usual) == len(course.train) == 64
    image, label = usual[5]
    assert image.shape == (3, 32, 32) and label == labels[5] == course.train.labels[5]
    assert torch.equal(course.train.images[5].permute(1, 2, 0), torch.from_numpy(pixels[5]))
    # the PIL crop keeps a 24 x 24 window of the centre whatever the shift: it is the same image
    mean = torch.tensor(stats[0]).view(3, 1, 1)
    std = torch.tensor(stats[1]).view(3, 1, 1)
    restored = (image * std + mean) * 255
    original = torch.from_numpy(pixels[5]).permute(2, 0, 1).float()
    found = any(torch.allclose(restored[:, 4:28, 4:28],
                               candidate[:, 4 + dy:28 + dy, 4 + dx:28 + dx], atol=0.01)
                for candidate in (original, original.flip(2))
                for dy in range(-4, 5) for dx in range(-4, 5))
    assert found


def test_the_throughput_benchmark_times_both_pipelines(capsys):
    result = throughput.main(["--images", "384", "--epochs", "1", "--workers", "0", "--no-save"])
    for key in ("usual", "course"):
        assert result[key]["images"] == 384
        assert result[key]["images_per_s"] == pytest.approx(384 / result[key]["step_seconds"])
    assert result["usual"]["precision"] == "32-true"
    assert result["ratio"] == pytest.approx(
        result["course"]["images_per_s"] / result["usual"]["images_per_s"])
    bound = result["bound"]  # on a CPU: the convolutions of one batch of 128, alone
    assert bound["images_per_s"] == pytest.approx(128 / bound["convolutions_ms"] * 1e3)
    assert bound["ratio"] == pytest.approx(bound["images_per_s"]
                                           / result["usual"]["images_per_s"])
    printed = capsys.readouterr().out
    assert "B/A:" in printed and f"more than {bound['ratio']:.2f}x (A)" in printed


def test_time_to_accuracy_counts_up_to_the_first_epoch_that_reaches_the_target():
    history = pd.DataFrame({"epoch": [1, 2, 3, 4], "test_acc": [0.80, 0.92, 0.931, 0.925],
                            "step_seconds": [10.0, 11.0, 12.0, 13.0],
                            "seconds": [12.0, 13.0, 14.0, 15.0]})
    assert time_to_accuracy.time_to_target(history, 0.93) == {
        "epoch": 3, "step_seconds": 33.0, "seconds": 39.0}
    assert time_to_accuracy.time_to_target(history, 0.95)["epoch"] is None


def test_training_throughput_trains_and_inference_throughput_does_not():
    model = models.create("resnet", num_blocks=(1, 1, 1))
    before = [p.detach().clone() for p in model.parameters()]
    assert measure.inference_throughput(model, batch_size=8, batches=2) > 0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert measure.training_throughput(model, batch_size=8, batches=2) > 0
    assert not all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


@pytest.mark.parametrize("precision, dtype", [("bf16-mixed", torch.bfloat16),
                                              ("32-true", torch.float32)])
def test_training_throughput_times_the_precision_it_is_given(precision, dtype):
    """A run resumed in the precision it began in is timed in that one, not this machine's."""
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(),
                                torch.nn.Linear(4 * 6 * 6, 10))
    seen = []
    model[0].register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    assert measure.training_throughput(model, (3, 8, 8), batch_size=4, batches=1,
                                       precision=precision) > 0
    assert set(seen) == {dtype}


def test_a_rate_is_timed_several_times_and_shows_its_range(monkeypatch):
    timings = iter([900.0, 1000.0, 1200.0])
    monkeypatch.setattr(measure, "inference_throughput", lambda *args, **kwargs: next(timings))
    rate = measure.inference_rate(None, repeats=3)
    assert (rate.median, rate.low, rate.high) == (1000.0, 900.0, 1200.0)
    assert str(rate) == "1,000 (900–1,200)"


def test_the_variant_cost_benchmark_compares_every_representative_with_vgg_d(capsys):
    """At an eighth of the width (as the reference sweep trains them; full width takes half a
    minute here): every representative, its MACs ratio to VGG-D and the projected hours."""
    cost = _load("sweep_variant_cost")
    result = cost.main(["--batches", "1", "--batch-size", "2", "--epochs", "2", "--images", "100",
                        "--width-scale", "0.125", "--no-save"])
    rows = result["variants"]
    assert [row["variant"] for row in rows][:2] == ["vgg-d", "variant-017"] and len(rows) == 15
    assert rows[0]["time_vs_vgg_d"] == rows[0]["macs_vs_vgg_d"] == 1
    eighth = [sweep.scaled(v, 0.125) for v in (sweep.vgg_d(), sweep.skew_normal_variants()[17])]
    assert rows[0]["macs"] == eighth[0].macs and rows[1]["macs"] == eighth[1].macs < 0.2e9
    assert rows[1]["macs_vs_vgg_d"] == pytest.approx(eighth[1].macs / eighth[0].macs)
    full = sweep.skew_normal_variants()[17].macs / sweep.vgg_d().macs  # at width scale 1
    assert full == pytest.approx(10.315e9 / 0.3137e9, rel=1e-3)
    hours = sum(2 * 100 / row["images_per_s"] for row in rows) / 3600
    assert result["sweep_hours"] == pytest.approx(hours)
    out = capsys.readouterr().out
    assert "hours of training steps" in out and "every width x 0.125" in out


def test_the_variant_cost_benchmark_refuses_a_scale_that_grows_the_widths(capsys):
    with pytest.raises(SystemExit):
        _load("sweep_variant_cost").main(["--width-scale", "2", "--no-save"])
    assert "--width-scale 2 is not in (0, 1]" in capsys.readouterr().err


def test_the_layout_benchmark_times_both_layouts_and_says_what_fit_picks(capsys):
    layout = _load("memory_layout")
    result = layout.main(["--only", "cnn-toy", "--repeats", "2", "--no-save"])
    (model,) = result["models"]
    assert model["model"] == "cnn-toy" and model["input_shape"] == [1, 28, 28]
    assert [row["precision"] for row in model["rows"]] == layout.precisions()
    for row in model["rows"]:
        assert len(row["usual_all"]) == len(row["channels_last_all"]) == 2
        assert row["faster"] == ("channels_last" if row["channels_last"] > row["usual"]
                                 else "usual")
        assert row["picked"] in ("channels_last", "usual")
    assert "fit picks the faster layout in" in capsys.readouterr().out


def test_the_layout_benchmark_times_each_distinct_model_cpu_mode_trains(measuring_script):
    runs = _load("memory_layout").cpu_mode_runs()
    names = [name for name, *_ in runs]
    assert set(names) <= set(measuring_script.RUNS) and len(set(names)) == len(names)
    # a run whose model, input and batch an earlier run has is timed once: the AdamW ResNet
    assert "resnet-fashionmnist-cpu" in names and "resnet-tutorial5-adamw" not in names
    notebooks = {measuring_script.RUNS[name][0] for name in names}
    assert notebooks == {"01", "02", "03", "04", "05"}
    shapes = {name: shape for name, _, _, shape in runs}
    assert shapes["cnn-toy-fashionmnist-cpu"] == (1, 28, 28)
    assert shapes["vgg-ramp-8"] == (1, 32, 32)  # notebook 05 trains on 32x32 images


@pytest.mark.parametrize("usual, last, verdict", [
    ([100, 110], [150, 160], "faster"), ([150, 160], [100, 110], "slower"),
    ([100, 160], [120, 150], "within the spread")])
def test_the_layout_benchmark_judges_cpu_modes_layout_by_the_timings_spread(
        monkeypatch, capsys, usual, last, verdict):
    layout = _load("memory_layout")
    rates = {False: iter(usual), True: iter(last)}
    monkeypatch.setattr(layout.measure, "training_throughput",
                        lambda *args, channels_last, **options: next(rates[channels_last]))
    monkeypatch.setattr(layout.fitting, "fresh_layout",
                        lambda *args, **options: True)  # channels-last
    row = layout.measure_cpu_mode_run("toy", lambda: torch.nn.Linear(1, 1), 8, (1, 28, 28),
                                      repeats=2)
    assert row["verdict"] == verdict and row["picked"] == "channels_last"
    assert (row["usual_all"], row["channels_last_all"]) == (usual, last)
    assert row["usual"] == sum(usual) / 2 and verdict in capsys.readouterr().out


@pytest.mark.skipif(not datasets.DEBIAN_FASHION_MNIST.is_dir(),
                    reason="needs the real Fashion-MNIST (apt-get install dataset-fashion-mnist)")
def test_time_to_accuracy_trains_and_reports_on_the_real_fashion_mnist(monkeypatch, capsys):
    """The benchmark end to end, on a few real images for one epoch (the full schedule is
    `make bench`'s): the record names the model and its parameter count."""
    real = time_to_accuracy.data.ImageDataModule
    monkeypatch.setattr(time_to_accuracy.data, "ImageDataModule", lambda name, **options: real(
        name, **{**options, "subset": (256, 128, 256), "val_size": 128}))
    result = time_to_accuracy.main(["--epochs", "1", "--target", "0", "--no-save"])
    assert result["model"] == "resnet (Tutorial 5, one-channel stem, 272,090 parameters)"
    assert result["reached"]["epoch"] == 1 and len(result["history"]["test_acc"]) == 1
    assert result["augment"] == "flip" and "flip" in data.AUGMENTATIONS
    printed = capsys.readouterr().out
    assert "reached after epoch 1" in printed and "augmentation flip" in printed


def test_the_convolution_bound_times_every_convolution_of_the_model_once_per_shape():
    bound = _load("_convolutions")
    model = models.create("densenet-bc-100-k12")
    shapes = bound.conv_shapes(model, batch=2)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert sum(shapes.values()) == len(convs) == 99  # stem, 48 dense layers x 2, 2 transitions
    # the 16 3x3 convolutions of each block share a shape; each 1x1 has its own input width
    assert shapes[((2, 48, 32, 32), 12, (3, 3), (1, 1), (1, 1), True)] == 16
    assert [needs for (*_, needs), count in shapes.items() for _ in range(count)].count(False) == 1
    first = next(iter(shapes))
    assert first == ((2, 3, 32, 32), 24, (3, 3), (1, 1), (1, 1), False)  # the stem, on images
    seconds = bound.conv_seconds(((2, 8, 8, 8), 4, (1, 1), (1, 1), (0, 0), True), bf16=False,
                                 repeats=2)
    assert 0 < seconds < 1
    two = Counter({((2, 8, 8, 8), 4, (1, 1), (1, 1), (0, 0), True): 2})
    assert 0 < bound.convolutions_seconds(two, bf16=False, repeats=2) < 2
    # two operations a multiply-add; forward, the weight's gradient and the input's where needed
    assert bound.conv_flops(((2, 8, 8, 8), 4, (1, 1), (1, 1), (0, 0), True)) == 2 * 2 * 64 * 32 * 3
    assert bound.conv_flops(((1, 1, 8, 8), 1, (3, 3), (2, 2), (1, 1), False)) == 2 * 16 * 9 * 2
    kinds = _load("densenet_bound").by_kind(shapes, dict.fromkeys(shapes, 0.5))
    assert kinds["3x3 to 12 channels, 32x32"] == (16, 8.0, 16 * 2 * 2 * 1024 * 48 * 12 * 9 * 3)
    assert sum(count for count, _, _ in kinds.values()) == 99


@pytest.mark.skipif(shutil.which("c++") is None,
                    reason="torch.compile on a CPU needs a C++ compiler")
def test_the_densenet_bound_times_torch_compile_training_the_model():
    bound = _load("densenet_bound")
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4),
                              torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                              torch.nn.Linear(4, 10))
    before = net[0].weight.detach().clone()
    timings = bound.compiled_step(net, batch=4, precision="32-true", repeats=2,
                                  input_shape=(3, 8, 8))
    assert set(timings) == {"compile_s", "step_s", "other_batch_s"}
    assert all(seconds > 0 for seconds in timings.values())
    assert not torch.equal(net[0].weight, before)  # the compiled steps trained the model itself


shared_statistics = _load("densenet_shared_statistics")
needs_kernels = pytest.mark.skipif(
    not shared_statistics.find_ninja() or shutil.which("c++") is None,
    reason="building the C++ kernels needs ninja and a C++ compiler")
SMALL_DENSENETS = [  # (model, input shape), one per way "C++ fused" computes a dense layer:
    (lambda: densenet(22, 12, bc=True, in_channels=1, dropout=0.2), (1, 28, 28)),  # 1x1 fused
    (lambda: densenet(13, 12, bc=False, in_channels=1), (1, 28, 28)),  # affine-ReLU alone
    (lambda: densenet(22, 12, bc=True, in_channels=1), (1, 28, 28))]  # the whole bottleneck
SMALL_IDS = ["bottleneck-dropout", "plain", "bottleneck"]


@pytest.mark.parametrize("make, shape", SMALL_DENSENETS, ids=SMALL_IDS)
def test_the_shared_statistics_densenet_computes_what_the_model_does(make, shape):
    found = shared_statistics.differences(make(), shared_statistics.EAGER, input_shape=shape)
    assert set(found) == {"outputs", "gradients", "buffers", "evaluation"}
    assert max(found.values()) < 1e-12, found


def test_the_shared_statistics_check_finds_a_layer_that_computes_otherwise():
    forward, backward = shared_statistics.EAGER[:2]
    make, shape = SMALL_DENSENETS[1]

    def bias_shifted(buffer, start, weight, bias):
        return forward(buffer, start, weight, bias + 0.5)

    def bias_gradient_doubled(*args):
        weight_grad, bias_grad = backward(*args)
        return weight_grad, 2 * bias_grad

    shifted = shared_statistics.EAGER._replace(affine_relu=bias_shifted)
    doubled = shared_statistics.EAGER._replace(affine_relu_backward=bias_gradient_doubled)
    assert shared_statistics.differences(make(), shifted, shape)["outputs"] > 1e-3
    found = shared_statistics.differences(make(), doubled, shape)
    assert found["outputs"] < 1e-12 < 1e-3 < found["gradients"]
    for ops, wrong in ((shifted, "outputs"), (doubled, "gradients")):  # and in bf16
        errors = shared_statistics.bf16_errors(make(), ops, input_shape=shape)
        assert not shared_statistics.rounds_as_the_model(errors), errors
        copy, model = (torch.tensor(errors[net][wrong]) for net in ("shared statistics", "model"))
        assert (copy > 2 * model).any(), errors


@pytest.mark.parametrize("make, shape", SMALL_DENSENETS, ids=SMALL_IDS)
def test_the_shared_statistics_densenet_in_bf16_rounds_as_the_model_does(make, shape):
    """In bf16 autocast (as on a CPU with AVX512-BF16) the copy keeps bf16 maps, as the model's
    concatenations do: its step lands as close to the fp32 step as the model's own."""
    errors = shared_statistics.bf16_errors(make(), shared_statistics.EAGER, input_shape=shape)
    assert shared_statistics.rounds_as_the_model(errors), errors
    assert errors["model"]["outputs"] > 0  # bf16 did round


def test_the_shared_statistics_block_refuses_a_model_it_would_not_compute_alike():
    with pytest.raises(ValueError, match="another activation"):
        shared_statistics.shared_statistics(densenet(13, 12, act_fn="tanh"))
    with pytest.raises(ValueError, match="has no dense blocks"):  # not silently the same model
        shared_statistics.shared_statistics(models.create("resnet"))


@pytest.fixture
def own_3x3(monkeypatch):
    """The kernels with their own 3x3 weight gradient, which "C++ fused" uses only on a CPU
    without AVX512: checked on every CPU."""
    monkeypatch.setattr(dense_kernels, "own_3x3_weight_gradient", lambda: True)


@needs_kernels
def test_the_shared_statistics_kernels_compute_what_the_model_does(own_3x3):
    """Both ways the kernels run a block, the affine-ReLU passes alone or everything fused (the
    bottleneck models fuse their 1x1 convolutions, the one without dropout its whole bottleneck
    up to the second ReLU; the plain one has none; all take their 3x3 convolutions' weight
    gradients in float64, not in bf16, where the kernel would refuse the maps), in float64 and
    bf16."""
    kernels = shared_statistics.build_kernels()  # about a minute the first time
    assert kernels, "the kernels did not build or load: the reason is printed above"
    assert [ops.conv1x1 is not None for ops in kernels.values()] == [False, True]
    for ops in kernels.values():
        for make, shape in SMALL_DENSENETS:
            found = shared_statistics.differences(make(), ops, input_shape=shape)
            assert max(found.values()) < 1e-12, found
            errors = shared_statistics.bf16_errors(make(), ops, input_shape=shape)
            assert shared_statistics.rounds_as_the_model(errors), errors


@needs_kernels
def test_the_fused_kernels_compute_each_cpu_mode_densenet_as_it_is(own_3x3):
    """--cpu-mode times "C++ fused" on every DenseNet the notebooks train in CPU mode (notebook
    02's four: plain, bottleneck, narrow, max-pooling transitions), each computed alike."""
    runs = shared_statistics.cpu_mode_densenets()
    assert [run[0] for run in runs] == [
        "densenet-16-k12-fashionmnist-cpu", "densenet-bc-22-k12-fashionmnist-cpu",
        "densenet-bc-22-k6", "densenet-bc-22-k12-max-transition"]
    fused = shared_statistics.build_kernels()["C++ fused"]
    for name, build, batch, shape in runs:
        found = shared_statistics.differences(build(), fused, input_shape=shape)
        assert max(found.values()) < 1e-12, (name, found)


@needs_kernels
def test_the_fused_blocks_compute_what_follows_them():
    """In training, "C++ fused" blocks hand on a transition's BatchNorm-ReLU-conv output (3
    modules done) and the classifier's BatchNorm-ReLU (2); evaluation and the other variants hand
    on the concatenation."""
    kernels = shared_statistics.build_kernels()
    make, shape = SMALL_DENSENETS[0]
    for ops, training, expected in ((kernels["C++ fused"], True, [3, 3, 2]),
                                    (kernels["C++ fused"], False, [0, 0, 0]),
                                    (kernels["C++ affine-ReLU"], True, [0, 0, 0]),
                                    (shared_statistics.EAGER, True, [0, 0, 0])):
        model = shared_statistics.shared_statistics(make(), ops).train(training)
        done = []
        for block in model.blocks[::2]:
            block.register_forward_hook(
                lambda module, inputs, output: done.append(getattr(output, "computed_modules", 0)))
        assert model(torch.randn(2, *shape)).shape == (2, 10)
        assert done == expected


@needs_kernels
@pytest.mark.parametrize("kernel", ["conv1x1_backward", "bottleneck_backward",
                                    "conv3x3_weight_gradient"])
def test_the_fused_convolutions_weight_gradients_are_checked_too(kernel, own_3x3):
    """A wrong convolution weight gradient from one of the fused kernels (a transition's 1x1
    convolution, a dense layer's bottleneck, its 3x3 convolution) does not pass the checks."""
    fused = shared_statistics.build_kernels()["C++ fused"]

    def weight_gradient_halved(*args):
        found = getattr(fused, kernel)(*args)
        if isinstance(found, torch.Tensor):
            return found / 2
        grad_weight, *rest = found
        return (grad_weight / 2, *rest)

    make, shape = SMALL_DENSENETS[2]
    wrong = fused._replace(**{kernel: weight_gradient_halved})
    found = shared_statistics.differences(make(), wrong, input_shape=shape)
    assert found["outputs"] < 1e-12 < 1e-3 < found["gradients"], found
    if kernel != "conv3x3_weight_gradient":  # in bf16 the 3x3 convolutions stay oneDNN's
        assert not shared_statistics.rounds_as_the_model(
            shared_statistics.bf16_errors(make(), wrong, input_shape=shape))


def test_a_benchmark_that_times_a_cpu_says_it_is_skipped_elsewhere(monkeypatch, capsys):
    timing = _load("_timing")
    monkeypatch.setattr(config, "device_type", lambda: "cuda")
    assert not timing.on_a_cpu("densenet_bound.py")
    assert "densenet_bound.py times a CPU; skipped on this cuda machine" in capsys.readouterr().out
    monkeypatch.setattr(config, "device_type", lambda: "cpu")
    assert timing.on_a_cpu("densenet_bound.py") and not capsys.readouterr().out


@needs_kernels
def test_the_layout_benchmark_judges_fits_pick_for_a_densenet_on_the_kernels(monkeypatch):
    """fit trains a DenseNet's blocks through the kernels, channels-last without timing: the
    benchmark times that path in both layouts too, and judges the pick on it, not on the model
    as written."""
    layout = _load("memory_layout")
    rates = {(False, False): 100.0, (False, True): 90.0,  # as written: the usual layout faster
             (True, False): 150.0, (True, True): 160.0}  # through the kernels: channels-last
    monkeypatch.setattr(layout.measure, "training_throughput",
                        lambda model, *args, channels_last, **options:
                        rates[dense_kernels.in_use(model), channels_last])
    tiny = {"block_config": (2, 2), "growth_rate": 4, "bottleneck_width": 8, "stem_channels": 8}
    result = layout.measure_model("densenet", tiny, 4, (3, 8, 8), repeats=2)
    for row in result["rows"]:
        assert row["trained"] == "through the kernels"
        assert (row["usual"], row["channels_last"]) == (100.0, 90.0)
        assert (row["kernels_usual"], row["kernels_channels_last"]) == (150.0, 160.0)
        assert row["kernels_usual_all"] == [150.0, 150.0]
        assert row["faster"] == row["picked"] == "channels_last"
