"""The course's C++ kernels for DenseNets in the training path (issue 27, item 5): ``fit`` trains a
DenseNet through them in fp32 on one CPU process where they build, records it, resumes a run as
it began, and hands the model back as written. That they compute what the model does (float64)
is tested in test_benchmarks.py."""

import functools
import shutil

import pandas as pd
import pytest
import torch
from doubles import CrashAt, Crashed

from helpers import data, models, recipes, training
from helpers._machinery import dense_kernels, files, fitting, runs
from helpers.models.densenet import DenseLayer, densenet

needs_kernels = pytest.mark.skipif(
    not dense_kernels.find_ninja() or shutil.which("c++") is None,
    reason="building the C++ kernels needs ninja and a C++ compiler")
FAST = recipes.get_recipe("sgd-cosine", batch_size=64, epochs=3, lr=0.2)


def _data():
    return data.ImageDataModule("CIFAR10", smoke=True, val_size=1000, eval_batch_size=64,
                                subset=(256, 64, 64))


def _densenet(seed=0):
    training.seed(seed)
    return densenet(22, 6, bc=True, num_classes=10, dropout=0.2)


def _fit(model, name, **options):
    return training.fit(model, _data(), FAST, name=name, epochs=3, precision="32-true",
                        enable_progress_bar=False, **options)


@needs_kernels
def test_a_densenet_trains_through_the_kernels_and_resumes_exactly(course_env):
    """Recorded in the run and its checkpoints; killed mid-epoch and resumed, the run ends with
    the weights and history of an uninterrupted one; the model comes back as written."""
    model = _densenet()
    whole = _fit(model, "whole")
    assert whole.info["dense_kernels"] is True
    assert not dense_kernels.in_use(model)  # as written again: evaluation, a later fit
    killed = _densenet()
    with pytest.raises(Crashed):
        _fit(killed, "killed", callbacks=[CrashAt(epoch=1, batch=2)])
    assert not dense_kernels.in_use(killed)  # as written again after a crash too
    folder = course_env / "saved_models" / "smoke" / "killed"
    assert runs.recorded_dense_kernels(folder) is True
    resumed = _fit(_densenet(seed=99), "killed", overwrite=False)
    assert resumed.info["resumed_after_epoch"] == 1 and resumed.info["dense_kernels"] is True
    columns = ["train_loss", "train_acc", "val_loss", "val_acc", "lr"]
    pd.testing.assert_frame_equal(whole.history[columns], resumed.history[columns])
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    assert whole.history["train_loss"].iloc[-1] < whole.history["train_loss"].iloc[0]


@needs_kernels
def test_a_densenet_trains_through_the_kernels_in_bf16_too(course_env):
    """Full mode trains in bf16 on a CPU with AVX512-BF16: through the kernels too, channels-last
    (their buffers' layout, in which they were timed), the loss falling."""
    run = training.fit(_densenet(), _data(), FAST, name="bf16", epochs=3, precision="bf16-mixed",
                       enable_progress_bar=False)
    assert run.info["precision"] == "bf16-mixed"
    assert run.info["dense_kernels"] is True and run.info["channels_last"] is True
    assert run.history["train_loss"].iloc[-1] < run.history["train_loss"].iloc[0]


@needs_kernels
def test_a_run_goes_on_as_it_began_with_or_without_the_kernels(course_env, monkeypatch,
                                                              interrupt_at_epoch):
    """Begun where the kernels did not build, it resumes without them where they do; begun with
    them, it refuses to resume without them and says what to install, or to start afresh."""
    with monkeypatch.context() as without:
        without.setattr(dense_kernels, "fused", lambda: None)
        with pytest.raises(training.RunInterrupted):
            _fit(_densenet(), "without", callbacks=[interrupt_at_epoch(1)])
    assert _fit(_densenet(), "without", overwrite=False).info["dense_kernels"] is False

    with pytest.raises(training.RunInterrupted):
        _fit(_densenet(), "with", callbacks=[interrupt_at_epoch(1)])
    monkeypatch.setattr(dense_kernels, "fused", lambda: None)
    with pytest.raises(RuntimeError, match="pip install ninja.*overwrite=True"):
        _fit(_densenet(), "with", overwrite=False)
    assert runs.epochs_done(course_env / "saved_models" / "smoke" / "with") == 1  # kept
    assert _fit(_densenet(), "with", overwrite=True).info["dense_kernels"] is False


@needs_kernels
def test_the_kernels_train_only_densenets_in_fp32_or_bf16_on_one_cpu_process(tmp_path):
    folder = tmp_path / "new-run"  # no checkpoint: a fresh choice
    choose = fitting.choose_dense_kernels
    assert choose(folder, _densenet(), "32-true", {}) is True
    assert choose(folder, models.create("allcnn", c=8), "32-true", {}) is False
    assert choose(folder, _densenet(), "bf16-mixed", {}) is True  # measured in both (AVX512-BF16)
    assert choose(folder, _densenet(), "16-mixed", {}) is False  # never measured
    assert choose(folder, _densenet(), "32-true", {"devices": 2, "strategy": "ddp"}) is False
    tanh = densenet(13, 6, act_fn="tanh")  # the kernels fuse BatchNorm with ReLU
    assert choose(folder, tanh, "32-true", {}) is False


class _SwappedLayer(DenseLayer):
    """A learner's layer that concatenates the oldest maps first: code the kernels never run."""

    def forward(self, features):
        return self.net(torch.cat(features, dim=1))


def test_the_kernels_refuse_what_they_would_not_compute_alike():
    """Each reason named; a subclass of the course's layer, or a BatchNorm without running
    statistics, is refused rather than computed as the course's layer would be."""
    assert dense_kernels.refusal(_densenet()) is None
    assert dense_kernels.refusal(densenet(22, 6, bc=True, memory_efficient=True)) is None
    swapped = _densenet()
    layer = swapped.blocks[0].block[0]
    swapped.blocks[0].block[0] = _SwappedLayer(layer.net[0].num_features, 6, 24, 0.0, "relu")
    without = densenet(22, 6, bc=True)  # no dropout: its bottleneck BatchNorm is net[3]
    without.blocks[2].block[1].net[3] = torch.nn.BatchNorm2d(24, track_running_stats=False)
    for model, reason in ((swapped, "subclass"), (without, "running statistics"),
                          (densenet(13, 6, act_fn="tanh"), "another activation"),
                          (models.create("allcnn", c=8), "no dense blocks")):
        assert reason in dense_kernels.refusal(model)
        with pytest.raises(ValueError, match=reason):
            dense_kernels.shared_statistics(model)


def test_a_checkpoint_from_before_the_kernels_resumes_without_them(tmp_path):
    assert runs.recorded_dense_kernels(tmp_path) is None  # nothing to resume
    torch.save({"epoch": 1, "channels_last": True}, tmp_path / runs.LAST)
    assert runs.recorded_dense_kernels(tmp_path) is False


def test_the_patched_blocks_are_undone_and_never_doubled():
    model = _densenet()
    dense_kernels.shared_statistics(model)
    dense_kernels.shared_statistics(model)  # again: each patch still wraps the module's own code
    patched = dense_kernels._patches(model)
    assert len(patched) == 3  # the three dense blocks (EAGER computes no followers)
    assert not any(isinstance(module.forward.args[-1], functools.partial) for module in patched)
    assert dense_kernels.in_use(model, dense_kernels.EAGER)
    dense_kernels.as_written(model)
    assert not dense_kernels.in_use(model) and not dense_kernels._patches(model)


def test_a_damaged_build_is_built_again_and_each_cpu_type_builds_its_own(tmp_path, monkeypatch):
    """Loading a damaged library can kill the process (a truncated one did, with SIGBUS): one
    whose bytes differ from those recorded at its last load is removed, for ninja to build again.
    A build for one CPU (-march=native) may crash another, so each CPU type has its folder."""
    library = tmp_path / dense_kernels.LIBRARY
    library.write_bytes(b"the library as it loaded")
    record = tmp_path / (dense_kernels.LIBRARY + ".sha256")
    record.write_text(files.sha256(library))
    dense_kernels._unless_damaged(tmp_path)
    assert library.exists()  # intact: kept
    library.write_bytes(b"the libr")  # truncated
    dense_kernels._unless_damaged(tmp_path)
    assert not library.exists()
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    here = dense_kernels.build_directory()
    assert here.parent == tmp_path and torch.__version__ in here.name
    monkeypatch.setattr(dense_kernels, "_cpu", lambda: "flags : fpu sse2 avx2")
    assert dense_kernels.build_directory() != here


def test_the_3x3_weight_gradient_is_ours_only_where_it_was_faster(monkeypatch):
    """Ours was faster than oneDNN's on the AVX2-only CPU, slower on the AVX512 one: "C++ fused"
    takes it itself only on a CPU without AVX512 (both ways are tested in test_benchmarks.py)."""
    calls = []
    ops = dense_kernels.EAGER._replace(
        conv3x3_weight_gradient=lambda grad, x: calls.append(x.shape) or torch.zeros(6, 4, 3, 3))
    conv = torch.nn.Conv2d(4, 6, 3, padding=1, bias=False)
    for capability, ours in (("AVX512", False), ("AVX2", True), ("DEFAULT", True)):
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
        calls.clear()
        dense_kernels._rest_of_layer([conv], torch.randn(2, 4, 5, 5), ops).sum().backward()
        assert len(calls) == ours, capability


@needs_kernels
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_every_channel_of_a_row_is_computed_whatever_its_width(dtype):
    """On a CPU with AVX512 the kernels' rows run 16 channels at a time and the rest under a mask
    (the float64 tests run the plain loops): the affine-ReLU pass and its backward pass, in fp32
    and bf16, on every width from 1 to 40, land within the dtype's rounding of float64."""
    ops = dense_kernels.build_kernels()["C++ affine-ReLU"]
    rounding = {torch.float32: 2e-6, torch.bfloat16: 2 ** -8}[dtype]
    for width in range(1, 41):
        torch.manual_seed(width)
        buffer = torch.randn(3, width + 2, 5, 4).to(dtype, memory_format=torch.channels_last)
        weight, bias, grad = torch.randn(width), torch.randn(width), torch.randn(3, width, 5, 4)
        grad = grad.to(dtype, memory_format=torch.channels_last)
        grad_buffer = torch.randn_like(buffer)
        wide = [t.double() for t in (buffer, weight, bias, grad, grad_buffer)]
        out = ops.affine_relu(buffer, 2, weight, bias)
        wanted = dense_kernels.eager_affine_relu(wide[0], 2, wide[1], wide[2])
        torch.testing.assert_close(out.double(), wanted, rtol=rounding, atol=1e-6)
        sums = ops.affine_relu_backward(grad, out, buffer, 2, weight, bias, grad_buffer)
        wanted_sums = dense_kernels.eager_affine_relu_backward(wide[3], wanted, wide[0], 2,
                                                                *wide[1:3], wide[4])
        torch.testing.assert_close(grad_buffer.double(), wide[4], rtol=rounding, atol=1e-5)
        for found, expected in zip(sums, wanted_sums):
            torch.testing.assert_close(found.double(), expected, rtol=1e-5, atol=1e-5)
