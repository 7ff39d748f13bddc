"""The course's measured ranges for the exercises, from the run records it committed.

``saved_models/exercise-records/`` holds one record per exercise run name and seed, written by
``scripts/measure_exercises.py``; :func:`expected` turns them into the range that
``exercises.check`` judges a learner's run by."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from . import config
from ..modes import CPU_DATA as DATA, CPU_EPOCHS as EPOCHS, CPU_PRECISION as PRECISION

CLASSES = 10
MARGIN = 0.03                        # the range reaches this far past the measured seeds
ABOVE_CHANCE = 0.05                  # a result must beat chance (1 / CLASSES) by this much
CHANCE_FLOOR = 1 / CLASSES + ABOVE_CHANCE
RECORDS = config.project_root() / "saved_models" / "exercise-records"


def is_full(info: dict) -> bool:
    """Was the run of record ``info`` trained like the exercises (the real data, :data:`EPOCHS`
    epochs, fp32), so that a range the course measured can apply to it? (The number of images
    is its notebook's: :func:`check` compares it with the measured runs'.)"""
    return (info.get("epochs") == EPOCHS and info.get("data") == DATA
            and "stand-in" not in str(info.get("data_source"))
            and info.get("precision") == PRECISION)


def train_images(info: dict):
    return info.get("images", {}).get("train")


@dataclass(frozen=True)
class Expected:
    """What the course measured for one exercise: the test accuracy of each of its runs (a
    seed, on some number of threads: fp32 sums come out in another order on another number of
    threads, and a run then follows another path), where, and the range a correct run lands in
    (the results, :data:`MARGIN` either way, and never within :data:`ABOVE_CHANCE` of chance)."""
    exercise: str
    results: dict          # (seed, threads) -> test accuracy
    train_images: int      # of every measured run
    hardware: str
    low: float
    high: float
    definition: dict       # of the measured runs: model, data, recipe, epochs (seed apart)

    @property
    def judgeable(self) -> bool:
        """Whether every measured run beat chance by :data:`ABOVE_CHANCE`."""
        return min(self.results.values()) >= CHANCE_FLOOR

    @property
    def seeds(self) -> list[int]:
        return sorted({seed for seed, _ in self.results})

    def reached(self) -> str:
        """'72.43%, 72.65%, 71.92% with seeds 0, 1, 2 on 1 thread; ... on 2 threads'."""
        parts = []
        for threads in sorted({threads for _, threads in self.results}):
            measured = sorted((seed, value) for (seed, count), value in self.results.items()
                              if count == threads)
            parts.append(f"{', '.join(f'{value:.2%}' for _, value in measured)} with seeds "
                         f"{', '.join(str(seed) for seed, _ in measured)} on {threads} "
                         f"thread{'s' * (threads > 1)}")
        return "; ".join(parts)

    def describe(self) -> str:
        return (f"{self.low:.1%}–{self.high:.1%}: the course's runs reached {self.reached()} "
                f"({self.hardware}, fp32; records in "
                f"saved_models/exercise-records/{self.exercise}-s*.json)")


def expected(exercise: str, records: Path | None = None) -> Expected:
    """The range of exercise ``exercise`` from its committed run records (a missing record is a
    FileNotFoundError). Where a measured run came within :data:`ABOVE_CHANCE` of chance, the
    range could not tell a correct run from a broken one: the result is not ``judgeable``."""
    folder = Path(records or RECORDS)
    paths = sorted(folder.glob(f"{exercise}-s*.json"))
    if not paths:
        raise FileNotFoundError(f"no measured runs of exercise {exercise!r} in {folder}: run "
                                f"`python scripts/measure_exercises.py {exercise}`")
    infos = [json.loads(path.read_text()) for path in paths]
    definition = infos[0].get("definition", {})
    if bad := [path.name for path, info in zip(paths, infos) if not is_full(info)]:
        raise ValueError(f"{', '.join(bad)} in {folder} were not trained with the exercises' "
                         f"settings (real {DATA}, {EPOCHS} epochs, {PRECISION})")
    if len(sizes := {train_images(info) for info in infos}) > 1:
        raise ValueError(f"the records of {exercise!r} in {folder} mix runs on "
                         f"{' and '.join(f'{n:,}' for n in sorted(sizes))} training images: "
                         f"measure every seed again (`python scripts/measure_exercises.py "
                         f"{exercise}`)")
    results = {(info["seed"], _threads(info["hardware"])): info["test_acc"] for info in infos}
    hardware = " / ".join(sorted({info["hardware"].split(",")[0] for info in infos}))
    return Expected(exercise, results, sizes.pop(), hardware,
                    max(min(results.values()) - MARGIN, CHANCE_FLOOR),
                    max(results.values()) + MARGIN, definition)


def _threads(hardware: str) -> int:
    """The threads a record's hardware line names ('CPU AMD EPYC, 2 threads' -> 2)."""
    found = re.search(r"(\d+) threads?", hardware)
    return int(found[1]) if found else 1
