"""What each mode trains in each notebook (``COURSE_MODE``, see :mod:`helpers._machinery.config`).

- **full**: the paper's data set and recipe, every image, every epoch.
- **cpu**: the real Fashion-MNIST at a small scale for everything a learner trains on a CPU
  (:func:`cpu_sizes`: each notebook's own number of training images, :data:`CPU_EPOCHS` epochs,
  fp32): a minute or two per run on two cores. The course measured each of these runs at three
  seeds (``saved_models/exercise-records``), so a learner's run is checked against what a correct
  run reaches (:func:`exercises.check`).
- **smoke**: the CPU mode's data cut to a few hundred images and one epoch: the tests' proof
  that the code runs, never a result.

A notebook asks :func:`scale` once and trains its own runs at that scale; the course's reference
runs (:mod:`helpers.reference`) are the same kind of models trained longer on more data.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._machinery import config
from .data import ImageDataModule

CPU_DATA = "FashionMNIST"
# Training images of each notebook's CPU-mode runs and exercises: as many as its runs see in about
# the time they took before training got faster, and within a notebook's 8 minutes on the slower
# of the course's two CPUs (docs/measurements.md, "The notebooks' times").
CPU_TRAIN = {"01": 8_000, "02": 10_000, "03": 10_000, "04": 8_000, "05": 5_000}
CPU_VAL, CPU_TEST = 1_000, 10_000
CPU_EPOCHS = 3
CPU_PRECISION = "32-true"  # on every machine, so that the measured ranges hold on any CPU


def cpu_sizes(notebook: str) -> tuple[int, int, int]:
    """The (training, validation, test) images of notebook ``notebook``'s CPU-mode runs."""
    if notebook not in CPU_TRAIN:
        raise ValueError(f"no CPU-mode sizes for notebook {notebook!r}; valid: "
                         f"{', '.join(CPU_TRAIN)}")
    return CPU_TRAIN[notebook], CPU_VAL, CPU_TEST


@dataclass(frozen=True)
class Scale:
    """The data and length of a notebook's own runs in one mode."""
    data: str                    # data set name (helpers._machinery.datasets)
    subset: tuple | None         # (train, validation, test) images; None: all of them
    val_size: int                # validation images cut from the training split
    epochs: int | None           # None: the recipe's own
    augment: str | None = "crop-flip"
    smoke: bool = False          # a smoke run's data (see ImageDataModule)

    def module(self, **options) -> ImageDataModule:
        """The data at this scale (``options`` go to :class:`ImageDataModule`)."""
        options = {"augment": self.augment, **options}
        return ImageDataModule(self.data, val_size=self.val_size, seed=0, subset=self.subset,
                               smoke=self.smoke, **options)

    def name(self, stem: str) -> str:
        """A run name that says the data and, outside full mode, the mode, so that a CPU-mode
        run never shares its name (or folder) with a full run or a reference run."""
        suffix = "" if config.mode() == "full" else f"-{config.mode()}"
        return f"{stem}-{self.data.lower()}{suffix}"

    def describe(self) -> str:
        images = (f"all {self.data} training images" if self.subset is None
                  else f"{self.subset[0]:,} {self.data} training images")
        epochs = "the recipe's epochs" if self.epochs is None else f"{self.epochs} epochs"
        return f"{config.mode()} mode: {images}, {epochs}"


FULL = {
    "01": Scale("CIFAR100", None, 5000, None),
    "02": Scale("CIFAR10", None, 5000, None),
    "03": Scale("CIFAR10", None, 5000, None, augment="resized-crop-flip"),
    "04": Scale(CPU_DATA, None, 5000, None, augment="rotate-crop"),
}
AUGMENT = {notebook: scale.augment for notebook, scale in FULL.items()}


def scale(notebook: str) -> Scale:
    """The scale of notebook ``notebook``'s own runs ('01' ... '04') in the current mode."""
    if notebook not in FULL:
        raise ValueError(f"no scale for notebook {notebook!r}; valid: {', '.join(FULL)}")
    current = config.mode()
    if current == "full":
        return FULL[notebook]
    sizes, epochs = ((config.SMOKE_SUBSET, config.SMOKE_EPOCHS) if current == "smoke"
                     else (cpu_sizes(notebook), CPU_EPOCHS))
    return Scale(CPU_DATA, sizes, sizes[1], epochs, AUGMENT[notebook], smoke=current == "smoke")
