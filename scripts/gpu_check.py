"""Exercise every CUDA path of the course in a few minutes: ``make gpu-check``.

Prints one PASS / FAIL / SKIP line per check and writes what it measured to
``benchmarks/results/gpu_check-<device>.json``; exits 1 if a check fails. On a machine without
CUDA the CUDA-only checks are reported as skipped and the rest run on the CPU, so the script
itself is tested everywhere. It trains on the synthetic stand-in (smoke mode, offline), since
what it checks is the code path, not accuracy.

    python scripts/gpu_check.py [--skip-bench]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("COURSE_MODE", "smoke")
os.environ.setdefault("COURSE_OFFLINE", "1")

import torch  # noqa: E402

from helpers import classifier, data, measure, models, recipes, training  # noqa: E402
from helpers._machinery import config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "benchmarks")]
import _results  # noqa: E402 (where the benchmarks keep their records)
from doubles import OutOfMemoryAbove  # noqa: E402 (a test double: tests/doubles.py)
# One small model per family, each with the input it expects; (name, hyper-parameters, data set).
FAMILIES = [("allcnn", {"c": 16}, "CIFAR10"), ("densenet-40-k12", {}, "CIFAR10"),
            ("googlenet", {}, "CIFAR10"), ("resnet", {}, "CIFAR10"),
            ("preact-resnet", {}, "CIFAR10"), ("ccnn-toy", {}, "FashionMNIST"),
            ("vgg", {"widths": [16] * 13 + [32, 32]}, "CIFAR10")]
RECIPE = recipes.get_recipe("sgd-cosine", batch_size=64)


class Skipped(Exception):
    """The check does not apply on this machine."""


def needs_cuda() -> None:
    if config.device_type() != "cuda":
        raise Skipped("no CUDA device")


def check_device() -> dict:
    needs_cuda()
    return {"device": torch.cuda.get_device_name(0),
            "capability": ".".join(map(str, torch.cuda.get_device_capability())),
            "memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2 ** 30, 1)}


def check_precision() -> dict:
    """The precision the course picks, and a step in it that gives a finite loss."""
    chosen = config.precision()
    if config.device_type() == "cuda":
        native_bf16 = torch.cuda.get_device_capability() >= config.NATIVE_BF16_CAPABILITY
        assert (chosen == "bf16-mixed") == native_bf16, f"{chosen} on this GPU"
    model = models.create("resnet").to(config.device_type())
    dtype = config.autocast_dtype()
    with torch.autocast(config.device_type(), dtype=dtype or torch.float32,
                        enabled=dtype is not None):
        logits = model(torch.randn(8, 3, 32, 32, device=config.device_type()))
    assert torch.isfinite(logits).all()
    return {"precision": chosen, "autocast": str(dtype)}


def _short_fit(name: str, hparams: dict, data_name: str, folder: Path, **options):
    module = data.ImageDataModule(data_name, subset=(256, 128, 128), val_size=1000, smoke=True)
    model = models.create(name, num_classes=10, in_channels=1 if data_name == "FashionMNIST"
                          else 3, **hparams)
    start = time.perf_counter()
    run = training.fit(model, module, RECIPE, name=name, epochs=1, directory=folder,
                       overwrite=True, enable_progress_bar=False, **options)
    return run, module, time.perf_counter() - start


def check_fused_optimizer_and_cudnn(folder: Path) -> dict:
    """On CUDA a run uses the fused optimizer and lets cuDNN pick its fastest kernels."""
    needs_cuda()
    seen = {}

    class Spy(training.pl.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            seen["fused"] = trainer.optimizers[0].defaults.get("fused")
            seen["cudnn_benchmark"] = torch.backends.cudnn.benchmark
            seen["batch_device"] = batch[0].device.type
            seen["weights_device"] = next(module.parameters()).device.type

    _short_fit("resnet", {}, "CIFAR10", folder, callbacks=[Spy()])
    assert seen == {"fused": True, "cudnn_benchmark": True, "batch_device": "cuda",
                    "weights_device": "cuda"}, seen
    return seen


def check_augmentation_on_device() -> dict:
    """Crops and flips run on the training device, for a whole batch at once."""
    device = config.device_type()
    module = data.ImageDataModule("CIFAR10", subset=(256, 128, 128), val_size=1000, smoke=True)
    images, labels = next(iter(module.loader("train", device=device, batch_size=64)))
    assert images.device.type == device and images.shape == (64, 3, 32, 32)
    assert labels.device.type == device
    return {"device": device}


def check_families(folder: Path) -> dict:
    """One epoch of ``fit`` and one ``evaluate`` per model family."""
    seconds = {}
    for name, hparams, data_name in FAMILIES:
        run, module, elapsed = _short_fit(name, hparams, data_name, folder)
        result = training.evaluate(run.model, module)
        assert result["images"] == 128 and 0 <= result["acc"] <= 1, name
        assert abs(result["acc"] - run.info["test_acc"]) < 0.02, name
        seconds[name] = round(elapsed, 1)
    return {"fit_seconds": seconds}


def check_memory_efficient_densenet() -> dict:
    """The memory-efficient DenseNet-BC holds less at its peak than the plain one."""
    plain = measure.peak_step_memory("densenet-bc-100-k12", [64])["peak_mib"][64]
    efficient = measure.peak_step_memory("densenet-bc-100-k12", [64],
                                         memory_efficient=True)["peak_mib"][64]
    if plain is None:
        raise Skipped("peak memory is not measurable here")
    assert efficient < plain, (efficient, plain)
    return {"plain_mib": round(plain), "memory_efficient_mib": round(efficient)}


def check_out_of_memory_recovery(folder: Path) -> dict:
    """An injected out-of-memory error is recovered by micro-batches (memory_safe=True)."""
    module = data.ImageDataModule("CIFAR10", subset=(256, 128, 128), val_size=1000, smoke=True)
    model = OutOfMemoryAbove(models.create("resnet"), limit=16)
    run = training.fit(model, module, RECIPE, name="out-of-memory", epochs=1, directory=folder,
                       overwrite=True, enable_progress_bar=False, memory_safe=True)
    assert run.info["micro_batch"] == 16, run.info["micro_batch"]
    return {"micro_batch": run.info["micro_batch"]}


def check_plain_step_is_automatic() -> dict:
    """The course's classifier trains with Lightning's automatic optimisation."""
    module = classifier.Classifier(models.create("resnet"), RECIPE)
    assert module.automatic_optimization
    return {"automatic_optimization": True}


def check_throughput_benchmark() -> dict:
    """``make bench``'s throughput benchmark (usual pipeline vs the course's), one epoch each."""
    needs_cuda()
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "train_throughput.py")],
                          capture_output=True, text=True, env={**os.environ,
                                                               "COURSE_MODE": "full"})
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    return {"output": done.stdout.strip().splitlines()[-3:]}


def main(arguments: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-bench", action="store_true",
                        help="leave out the throughput benchmark (the longest check)")
    args = parser.parse_args(arguments)
    print(f"gpu-check on {config.hardware()}, precision {config.precision()}, "
          f"torch {torch.__version__}")
    results, failed = {}, 0
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        checks = [("device", check_device), ("precision", check_precision),
                  ("plain training step", check_plain_step_is_automatic),
                  ("fused optimizer and cuDNN autotuning",
                   lambda: check_fused_optimizer_and_cudnn(folder)),
                  ("augmentation on the device", check_augmentation_on_device),
                  ("fit and evaluate per family", lambda: check_families(folder)),
                  ("memory-efficient DenseNet", check_memory_efficient_densenet),
                  ("out-of-memory recovery", lambda: check_out_of_memory_recovery(folder))]
        if not args.skip_bench:
            checks.append(("throughput benchmark", check_throughput_benchmark))
        for label, check in checks:
            start = time.perf_counter()
            try:
                measured = check()
            except Skipped as reason:
                status, measured = "SKIP", {"reason": str(reason)}
            except Exception as error:  # noqa: BLE001 (every failure is reported, then the next)
                status, measured = "FAIL", {"error": f"{type(error).__name__}: {error}"}
                failed += 1
                traceback.print_exc()
            else:
                status = "PASS"
            seconds = time.perf_counter() - start
            results[label] = {"status": status, "seconds": round(seconds, 1), **measured}
            detail = measured.get("reason") or measured.get("error") or ""
            print(f"{status}  {label} ({seconds:.1f} s){': ' + detail if detail else ''}",
                  flush=True)
    record = {"hardware": config.hardware(), "precision": config.precision(),
              "torch": torch.__version__, "date": datetime.now(timezone.utc).isoformat(
                  timespec="seconds"), "checks": results}
    _results.save("gpu_check", record)
    print(f"{'FAILED' if failed else 'passed'}: {failed} failure(s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
