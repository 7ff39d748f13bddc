"""Batches for training and evaluation, cut and augmented on the training device.

:class:`ImageDataModule` takes a data set from :mod:`helpers._machinery.datasets`, splits off a
seeded validation set, normalises with the training split's channel statistics, and serves
:class:`DeviceLoader` batches: the whole split lives on the training device and random crops and
flips are done there for a whole batch at once, with no PIL, no per-image Python and no worker
processes. The training batch size is the recipe's: ``training.fit`` gives it with
:meth:`ImageDataModule.with_batch_size`.
"""

from __future__ import annotations

import copy
import functools
import math

import pytorch_lightning as pl
import torch
from torch.nn import functional as F

from ._machinery import arguments as _arguments, config
from ._machinery.datasets import channel_stats, check_subset, info, load, mean_std

def split_indices(n: int, val_size: int | float,
                  seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded disjoint (train, validation) indices into ``range(n)``; ``val_size`` is a count or
    a fraction. One random permutation, sliced: O(n), reproducible, no overlap."""
    count = round(val_size * n) if isinstance(val_size, float) else int(val_size)
    if not 0 < count < n:
        raise ValueError(f"val_size={val_size!r} must leave both parts non-empty: the split has "
                         f"{n:,} images, so give a count from 1 to {n - 1:,} or a fraction "
                         f"between 0 and 1 (e.g. 5000 or 0.1)")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[count:], order[:count]


def random_crop(images: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Zero-pad a batch by ``padding`` and cut a random window of the original size per image,
    as one gather for the whole batch."""
    n, _, height, width = images.shape
    padded = F.pad(images, (padding,) * 4)
    dy = torch.randint(0, 2 * padding + 1, (n, 1), device=images.device, generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (n, 1), device=images.device, generator=generator)
    rows = (dy + torch.arange(height, device=images.device))[:, :, None]
    cols = (dx + torch.arange(width, device=images.device))[:, None, :]
    batch = torch.arange(n, device=images.device)[:, None, None]
    return padded[batch, :, rows, cols].permute(0, 3, 1, 2)  # (n, h, w, c) -> (n, c, h, w)


def random_flip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror a random half of the batch horizontally."""
    flip = torch.rand(len(images), device=images.device, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(3), images)


def random_resized_crop(images: torch.Tensor, generator: torch.Generator, scale=(0.8, 1.0),
                        ratio=(0.9, 1.1)) -> torch.Tensor:
    """torchvision's RandomResizedCrop for a whole batch at once: per image a window of a random
    fraction ``scale`` of the area and aspect ratio ``ratio`` (log-uniform) at a random place,
    resized bilinearly to the full size by one ``grid_sample``. Windows that would stick out are
    clipped to the image. Returns float images in the input's value range."""
    n, _, height, width = images.shape

    def uniform(low, high):
        return low + (high - low) * torch.rand(n, device=images.device, generator=generator)

    area = uniform(*scale)
    aspect = torch.exp(uniform(math.log(ratio[0]), math.log(ratio[1])))
    crop_w = (area * aspect).sqrt().clamp(max=1.0)  # fractions of the width and height
    crop_h = (area / aspect).sqrt().clamp(max=1.0)
    centre_x = uniform(-1.0, 1.0) * (1 - crop_w)  # in grid_sample's [-1, 1] coordinates
    centre_y = uniform(-1.0, 1.0) * (1 - crop_h)
    zero = torch.zeros_like(area)
    theta = torch.stack([torch.stack([crop_w, zero, centre_x], 1),
                         torch.stack([zero, crop_h, centre_y], 1)], 1)
    grid = F.affine_grid(theta, [n, 1, height, width], align_corners=False)
    return F.grid_sample(images.float(), grid, mode="bilinear", align_corners=False)


def random_rotation(images: torch.Tensor, generator: torch.Generator,
                    degrees: float = 15) -> torch.Tensor:
    """torchvision's RandomRotation for a whole batch: each image turned about its centre by an
    angle drawn uniformly from [-degrees, degrees], nearest-neighbour, zeros outside."""
    n = len(images)
    uniform = torch.rand(n, device=images.device, generator=generator) * 2 - 1
    angle = uniform * math.radians(degrees)
    cos, sin, zero = angle.cos(), angle.sin(), torch.zeros_like(angle)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta, [n, 1, *images.shape[2:]], align_corners=False)
    return F.grid_sample(images.float(), grid, mode="nearest", align_corners=False)


# Named batch augmentations: functions of (images, generator), applied in order.
AUGMENTATIONS = {
    "crop-flip": (random_crop, random_flip),                  # the standard CIFAR augmentation
    "resized-crop-flip": (random_resized_crop, random_flip),  # UvA Tutorial 5's
    "rotate-crop": (random_rotation, functools.partial(random_crop, padding=2)),  # the CCNN demo's
    "flip": (random_flip,),  # for short schedules, where crops slow learning more than they help
}


class DeviceLoader:
    """Batches (normalised float images, labels) cut from uint8 tensors held on ``device``.

    Shuffling, cropping and flipping happen on the device for a whole batch at once, from a
    generator seeded by (seed, epoch): the same epoch always gives the same batches, also after
    a resume (the training module sets the epoch at each epoch start). With ``world_size > 1``
    (several processes training one run) each rank takes every ``world_size``-th image of the
    batch one process would take, augmented as that process would: together they train on
    exactly its batches, each ``batch_size`` images per rank.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int,
                 mean, std, shuffle: bool = False, augment=(), drop_last: bool = False,
                 seed: int = 0, device: str | torch.device = "cpu", rank: int = 0,
                 world_size: int = 1):
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.labels = labels.to(self.device)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.augment = tuple(augment)
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.mean = torch.tensor(mean, device=self.device).view(1, -1, 1, 1) * 255
        self.std = torch.tensor(std, device=self.device).view(1, -1, 1, 1) * 255
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass epoch ``epoch`` (each complete pass advances it by one)."""
        self.epoch = epoch

    def _local_count(self) -> int:
        return len(range(self.rank, len(self.labels), self.world_size))

    def __len__(self) -> int:
        if self.drop_last:  # whole batches of all ranks together: every rank takes as many
            return len(self.labels) // (self.batch_size * self.world_size)
        return math.ceil(self._local_count() / self.batch_size)

    def __iter__(self):
        # The epoch is read when the first batch is drawn, not when iter() is called: Lightning
        # calls iter() before its epoch-start hooks, which set the epoch.
        generator = torch.Generator(device=self.device)
        generator.manual_seed(self.seed * 1_000_003 + self.epoch)
        n = len(self.labels)
        order = (torch.randperm(n, device=self.device, generator=generator) if self.shuffle
                 else torch.arange(n, device=self.device))
        together = self.batch_size * self.world_size  # the batch of all ranks
        served = 0
        for start in range(0, n, together):
            if served == len(self):
                break
            index = order[start:start + together]
            images = self.images[index]
            for augmentation in self.augment:  # drawn for the whole batch, as in one process
                images = augmentation(images, generator)
            mine = slice(self.rank, None, self.world_size)
            if len(index[mine]):
                served += 1
                yield (images[mine].float() - self.mean) / self.std, self.labels[index][mine]
        self.epoch += 1


def denormalize(batch: torch.Tensor, mean, std) -> torch.Tensor:
    """Undo a loader's normalisation: float batch -> uint8 images, to look at what it serves."""
    mean = torch.tensor(mean, device=batch.device).view(1, -1, 1, 1)
    std = torch.tensor(std, device=batch.device).view(1, -1, 1, 1)
    return (batch * std + mean).mul(255).round().clamp(0, 255).to(torch.uint8)


class ImageDataModule(pl.LightningDataModule):
    """A data set split into train / validation / test, served as :class:`DeviceLoader` batches.

    The validation set is a seeded part of the official training split (never the test split).
    ``subset``: (train, val, test) sizes, ``None`` for everything, or ``"auto"`` (everything,
    but ``config.SMOKE_SUBSET`` for ``smoke``). ``smoke``: the data of a smoke run, which may
    also be a labelled synthetic stand-in where the data set is not on this machine (the caller
    says so: ``modes.scale`` for the notebooks' runs). ``test_every_epoch`` also evaluates the
    test set after every epoch (selection stays on validation). ``size`` and ``channels`` resize
    the images and repeat a single channel (MNIST-type data for 3-channel 32x32 networks).
    ``augment`` names the training batches' augmentation in :data:`AUGMENTATIONS`, or None;
    flips are left out where they do not preserve the label (MNIST digits). Training batches
    are the recipe's size (``training.fit`` trains on ``with_batch_size(recipe.batch_size)``),
    evaluation batches ``eval_batch_size``.
    """
    def __init__(self, name: str, val_size: int | float = 5000, seed: int = 0,
                 augment: str | None = "crop-flip", eval_batch_size: int = 1000,
                 subset: tuple | str | None = "auto", test_every_epoch: bool = False,
                 size: int | None = None, channels: int | None = None, smoke: bool = False):
        super().__init__()
        _arguments.check("ImageDataModule", ImageDataModule,
                         {"name": name, "seed": seed, "test_every_epoch": test_every_epoch,
                          "size": size, "channels": channels, "smoke": smoke})
        _arguments.check_data_options(augment, AUGMENTATIONS, val_size, subset, eval_batch_size,
                                      size, channels)
        self.info = info(name)
        self.name = name
        self.val_size = val_size
        self.seed = seed
        self.augment = augment
        self.eval_batch_size = eval_batch_size
        self.subset = subset
        self.test_every_epoch = test_every_epoch
        self.size = size
        self.channels = channels
        self.smoke = smoke
        self.batch_size = None  # of training batches: set by with_batch_size
        self.train = self.val = self.test = None

    def with_batch_size(self, batch_size: int) -> ImageDataModule:
        """A copy of this module (sharing its loaded images) that serves training batches of
        ``batch_size`` images."""
        _arguments.whole_number(batch_size, "batch_size")
        self.setup()
        batched = copy.copy(self)
        batched.batch_size = batch_size
        return batched

    def setup(self, stage: str | None = None) -> None:
        if self.train is not None:
            return
        full_train, test = load(self.name, "train", self.smoke), load(self.name, "test", self.smoke)
        train_index, val_index = split_indices(len(full_train), self.val_size, self.seed)
        sizes = self.subset
        if sizes == "auto":
            sizes = config.SMOKE_SUBSET if self.smoke else None
        test_index = torch.arange(len(test))
        if sizes is not None:
            if not full_train.is_stand_in:
                check_subset(self.name, sizes, (len(train_index), len(val_index), len(test)))
            train_index = train_index[:sizes[0]]
            val_index = val_index[:sizes[1]]
            test_index = test_index[:sizes[2]]
        self.train = full_train.subset(train_index)
        self.val = full_train.subset(val_index)
        self.test = test.subset(test_index)
        if self.size or self.channels:
            self.train = self.train.reshaped(self.size, self.channels)
            self.val = self.val.reshaped(self.size, self.channels)
            self.test = self.test.reshaped(self.size, self.channels)
            self.mean, self.std = mean_std(self.train.images)
        else:
            self.mean, self.std = channel_stats(self.name, self.smoke)

    @property
    def classes(self) -> list:
        return self.info.classes

    @property
    def num_classes(self) -> int:
        return len(self.info.classes)

    @property
    def input_shape(self) -> tuple:
        channels, height, width = self.info.shape
        return (self.channels or channels, self.size or height, self.size or width)

    @property
    def source(self) -> str:
        self.setup()
        return self.train.source

    def describe(self) -> str:
        self.setup()
        channels, height, width = self.input_shape
        return (f"{self.name} from {self.source}: {len(self.train):,} train / {len(self.val):,} "
                f"validation / {len(self.test):,} test images of {channels}x{height}x{width}, "
                f"{self.num_classes} classes")

    def loader(self, part: str, device: str | torch.device = "cpu",
               batch_size: int | None = None) -> DeviceLoader:
        """A :class:`DeviceLoader` over 'train' (shuffled, augmented, full batches only),
        'val' or 'test' (in order, every image once), in batches of ``batch_size`` (default:
        the module's training or evaluation batch size)."""
        if part not in ("train", "val", "test"):
            raise ValueError(f"unknown part {part!r}; valid: train, val, test")
        training = part == "train"
        batch_size = batch_size or (self.batch_size if training else self.eval_batch_size)
        if batch_size is None:
            raise ValueError("this data module has no training batch size: training.fit gives "
                             "it the recipe's (with_batch_size); to look at training batches, "
                             "pass one: loader('train', batch_size=64)")
        self.setup()
        images = {"train": self.train, "val": self.val, "test": self.test}[part]
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
        augment = ()
        if training and self.augment:
            augment = [f for f in AUGMENTATIONS[self.augment]
                       if self.info.flip or f is not random_flip]
        return DeviceLoader(
            images.images, images.labels, mean=self.mean, std=self.std, device=device,
            batch_size=batch_size,
            shuffle=training, drop_last=training, seed=self.seed, rank=rank, world_size=world,
            augment=augment)

    def _device(self):
        return self.trainer.strategy.root_device if self.trainer else torch.device("cpu")

    def train_dataloader(self):
        return self.loader("train", self._device())

    def val_dataloader(self):
        if self.test_every_epoch:  # the validation pass then also measures the test set
            return [self.loader("val", self._device()), self.loader("test", self._device())]
        return self.loader("val", self._device())

    def test_dataloader(self):
        return self.loader("test", self._device())

    def predict_dataloader(self):
        return self.loader("test", self._device())

