"""Measure what a correct CPU-mode run reaches: train each run a notebook makes in CPU mode (its
own runs and its exercises) at seeds 0, 1 and 2, and commit each run's record as
``saved_models/exercise-records/<name>-s<seed>.json``. ``helpers.exercises.expected`` turns
them into the range a learner's run is checked against.

Every run here must be built exactly as its notebook builds it (a check that finds other
settings in a learner's run names them). Runs in CPU mode: the exercises' data, 3 epochs, fp32.

    python scripts/measure_exercises.py                 # every run, every seed
    python scripts/measure_exercises.py allcnn-c32-dropout0 --seeds 1 2
    python scripts/measure_exercises.py --notebook 02 --threads 2
    python scripts/measure_exercises.py --table         # the records, for docs/measurements.md
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ["COURSE_MODE"] = "cpu"

from helpers.models import checkered
from helpers import exercises, models, sweep, training
from helpers._machinery import files  # noqa: E402
from helpers.models.densenet import TransitionLayer, densenet  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402


def _vgg(variant):
    return lambda: models.create("vgg", widths=variant.widths, num_classes=10, in_channels=1)


def _equal_macs() -> dict:
    """Notebook 05, exercise 1: VGG-D at an eighth of its width, and the most early- and
    late-heavy representatives scaled to its MACs."""
    vgg_d_eighth = sweep.scaled(sweep.vgg_d(), 1 / 8)
    by_location = sorted(sweep.representatives(sweep.skew_normal_variants(16)),
                         key=lambda v: v.xi)
    chosen = [vgg_d_eighth, *(sweep.scaled_to_macs(v, vgg_d_eighth.macs)
                              for v in (by_location[0], by_location[-1]))]
    return {f"equal-macs-{v.name}": ("05", _vgg(v), "mundt-sgdr", {"size": 32}) for v in chosen}


def _create(name, **hparams):
    return lambda: models.create(name, num_classes=10, in_channels=1, **hparams)


def _lean_allcnn():
    """Notebook 01, exercise 2 (a solution): every unit's convolution without its bias."""
    net = models.create("allcnn", c=32, num_classes=10, in_channels=1)
    for unit in net.units:
        conv = unit[0]
        unit[0] = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size,
                            stride=conv.stride, padding=conv.padding, bias=False)
    return net


def _plain_resnet():
    """Notebook 03, exercise 3 (a solution): every block without its shortcut."""
    net = models.create("resnet", num_classes=10, in_channels=1)
    for index, block in enumerate(net.blocks):
        conv = block.net[0]
        net.blocks[index] = nn.Sequential(
            nn.Conv2d(conv.in_channels, conv.out_channels, 3, padding=1, stride=conv.stride,
                      bias=False), nn.BatchNorm2d(conv.out_channels), nn.ReLU(inplace=True),
            nn.Conv2d(conv.out_channels, conv.out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(conv.out_channels), nn.ReLU(inplace=True))
    return net


def _small_cnn_checkered():
    """Notebook 04, exercise 2 (a solution): a small CNN, converted."""
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))
    return checkered.convert_to_checkered(net, input_shape=(1, 28, 28))


def _ramp_vgg():
    """Notebook 05, exercise 3 (a solution): VGG-D / 8's 656 features as a straight ramp."""
    step = (656 - 15 * 8) / (15 * 14 / 2)
    widths = [round(8 + step * k) for k in range(15)]
    return models.create("vgg", widths=widths, num_classes=10, in_channels=1)


def _max_transition_densenet():
    """Notebook 02, exercise 2 (a solution): both transitions with 2x2 max pooling."""
    net = densenet(22, 12, bc=True, num_classes=10, in_channels=1)
    for block in net.blocks:
        if isinstance(block, TransitionLayer):  # a new convolution, as a learner's layer has
            conv = block.transition[2]
            block.transition[2] = nn.Conv2d(conv.in_channels, conv.out_channels, 1, bias=False)
            block.transition[3] = nn.MaxPool2d(2, stride=2)
    return net


# name -> (notebook, model builder, recipe, data options); the names are the notebooks' run names
RUNS = {
    # 01: the notebook's own runs, and exercise 1
    "allcnn-c32-plain-fashionmnist-cpu": ("01", _create("allcnn", c=32), "allcnn-seed", {}),
    "allcnn-c32-residual-fashionmnist-cpu": ("01", _create("allcnn", c=32, residual=True),
                                             "allcnn-seed", {}),
    "allcnn-c32-dropout0": ("01", _create("allcnn", c=32, dropout=0.0), "allcnn-seed", {}),
    "allcnn-c32-lean": ("01", _lean_allcnn, "allcnn-seed", {}),
    # 02
    "densenet-16-k12-fashionmnist-cpu": (
        "02", lambda: densenet(16, 12, num_classes=10, in_channels=1), "densenet-fast", {}),
    "densenet-bc-22-k12-fashionmnist-cpu": (
        "02", lambda: densenet(22, 12, bc=True, num_classes=10, in_channels=1), "densenet-fast",
        {}),
    "densenet-bc-22-k6": (
        "02", lambda: densenet(22, 6, bc=True, num_classes=10, in_channels=1), "densenet-fast",
        {}),
    "densenet-bc-22-k12-max-transition": ("02", _max_transition_densenet, "densenet-fast", {}),
    # 03: the tutorial's augmentation
    "resnet-fashionmnist-cpu": ("03", _create("resnet"), "tutorial5-sgd",
                                {"augment": "resized-crop-flip"}),
    "preact-resnet-fashionmnist-cpu": ("03", _create("preact-resnet"), "tutorial5-sgd",
                                       {"augment": "resized-crop-flip"}),
    "resnet-tutorial5-adamw": ("03", _create("resnet"), "tutorial5-adamw",
                               {"augment": "resized-crop-flip"}),
    "resnet-tanh": ("03", _create("resnet", act_fn="tanh"), "tutorial5-sgd",
                    {"augment": "resized-crop-flip"}),
    "resnet-plain-blocks": ("03", _plain_resnet, "tutorial5-sgd",
                            {"augment": "resized-crop-flip"}),
    # 04: the checkered-CNN demo's augmentation, and none
    "cnn-toy-fashionmnist-cpu": ("04", _create("cnn-toy"), "sgd-cosine",
                                 {"augment": "rotate-crop"}),
    "cnn-toy-checkered-fashionmnist-cpu": ("04", _create("cnn-toy-checkered"), "sgd-cosine",
                                           {"augment": "rotate-crop"}),
    "cnn-toy-no-augment": ("04", _create("cnn-toy"), "sgd-cosine", {"augment": None}),
    "cnn-toy-checkered-no-augment": ("04", _create("cnn-toy-checkered"), "sgd-cosine",
                                     {"augment": None}),
    "small-cnn-checkered": ("04", _small_cnn_checkered, "sgd-cosine", {"augment": "rotate-crop"}),
    # 05
    **_equal_macs(),
    "vgg-ramp-8": ("05", _ramp_vgg, "mundt-sgdr", {"size": 32}),
}


def measure(name: str, seed: int, work: Path, threads: int = 1) -> float:
    notebook, build, recipe, options = RUNS[name]
    training.seed(seed)
    run = training.fit(build(), exercises.data(notebook, full=True, **options), recipe, name=name,
                       epochs=exercises.EPOCHS, seed=seed, precision=exercises.PRECISION,
                       directory=work, overwrite=True, enable_progress_bar=False)
    suffix = "" if threads == 1 else f"-t{threads}"
    target = exercises.RECORDS / f"{name}-s{seed}{suffix}.json"
    files.write_text(target, (work / name / "run.json").read_text())
    shutil.rmtree(work / name)
    return run.info["test_acc"]


def table() -> str:
    """The committed records as a Markdown table: each run's results, range, time, machine."""
    lines = ["| run | training images | test accuracy of the measured runs | "
             "range a run is checked against | wall seconds | hardware, precision, date |",
             "|---|---|---|---|---|---|"]
    for name in RUNS:
        wanted = exercises.expected(name)
        infos = sorted((json.loads(path.read_text())
                        for path in exercises.RECORDS.glob(f"{name}-s*.json")),
                       key=lambda info: (info["hardware"], info["seed"]))
        judged = (f"{wanted.low:.1%} to {wanted.high:.1%}" if wanted.judgeable
                  else "not judged: a run came within 5 points of chance")
        machines = sorted({f"{info['hardware']}, {info['precision']}" for info in infos})
        dates = sorted({info["date"][:10] for info in infos})
        lines.append(f"| `{name}` | {wanted.train_images:,} | {wanted.reached()} | "
                     f"{judged} | {' / '.join(str(round(i['wall_seconds'])) for i in infos)} | "
                     f"{'; '.join(machines)}, {' / '.join(dates)} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"runs to measure (default: all): "
                                                 f"{', '.join(RUNS)}")
    parser.add_argument("--notebook", choices=sorted({entry[0] for entry in RUNS.values()}),
                        help="only the runs of this notebook")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1); a record on more is named -s<seed>-t<n>")
    parser.add_argument("--table", action="store_true",
                        help="print the committed records as a Markdown table, and exit")
    args = parser.parse_args()
    if args.table:
        print(table())
        return 0
    unknown = [name for name in args.names if name not in RUNS]
    if unknown:
        parser.error(f"unknown run(s) {', '.join(unknown)}; valid: {', '.join(RUNS)}")
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as work:
        for name in args.names or [name for name, entry in RUNS.items()
                                   if args.notebook in (None, entry[0])]:
            for seed in args.seeds:
                accuracy = measure(name, seed, Path(work), args.threads)
                print(f"{name} seed {seed}: {accuracy:.2%}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
