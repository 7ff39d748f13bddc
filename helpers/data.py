"""Image data sets as uint8 tensors, and batches cut and augmented on the training device.

``load(name, split)`` returns an :class:`ImageSet` (uint8 images N x C x H x W, int64 labels,
class names, where it came from) from the first source that has it:

1. ``DATA_DIR`` (default ``data/``) in torchvision's layout;
2. the Debian package ``dataset-fashion-mnist`` (Fashion-MNIST only);
3. a torchvision download (with its checksums) unless ``COURSE_OFFLINE`` is set.

If none has it, full mode raises :class:`DatasetNotFoundError` saying how to get it; quick mode
uses a small synthetic, learnable stand-in of the same shape and says so in a banner.

:class:`ImageDataModule` splits off a seeded validation set, computes the channel statistics
from the training split, and serves :class:`DeviceLoader` batches: the whole split lives on the
training device and random crops and flips are done there for a whole batch at once, with no
PIL, no per-image Python and no worker processes.
"""

from __future__ import annotations

import functools
import gzip
import json
import math
import os
import struct
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
import torch
import torchvision
from torch.nn import functional as F

from . import config, files

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                   "truck"]
CIFAR100_CLASSES = (
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus "
    "butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch "
    "crab crocodile cup dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo "
    "keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree motorcycle mountain mouse "
    "mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree plain plate poppy "
    "porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper "
    "snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television "
    "tiger tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm").split()

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
DEBIAN_REINSTALL = "apt-get install --reinstall dataset-fashion-mnist"
STAND_IN_SIZES = {"train": 10_000, "test": 2_000}


@dataclass(frozen=True)
class Spec:
    """What the course needs to know about a data set."""
    torchvision_class: str
    folder: str          # what torchvision creates under DATA_DIR
    shape: tuple         # (channels, height, width)
    classes: list
    flip: bool           # is a horizontal flip label-preserving?
    size_mb: int         # download size, for the error message
    md5_on_load: bool = False  # does torchvision check the files' MD5 when it loads the folder?


DATASETS = {
    "CIFAR10": Spec("CIFAR10", "cifar-10-batches-py", (3, 32, 32), CIFAR10_CLASSES, True, 163,
                    md5_on_load=True),
    "CIFAR100": Spec("CIFAR100", "cifar-100-python", (3, 32, 32), CIFAR100_CLASSES, True, 161,
                     md5_on_load=True),
    "MNIST": Spec("MNIST", "MNIST", (1, 28, 28), torchvision.datasets.MNIST.classes, False, 12),
    "FashionMNIST": Spec("FashionMNIST", "FashionMNIST", (1, 28, 28),
                         torchvision.datasets.FashionMNIST.classes, True, 30),
}
SPLITS = ("train", "test")


class DatasetNotFoundError(FileNotFoundError):
    """No source has the data set; the message says how to get it."""


@dataclass(frozen=True)
class ImageSet:
    """Images (uint8, N x C x H x W), labels (int64, N), class names, and where they came from."""
    images: torch.Tensor
    labels: torch.Tensor
    classes: list
    source: str

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: torch.Tensor) -> ImageSet:
        return ImageSet(self.images[indices], self.labels[indices], self.classes, self.source)

    @property
    def is_stand_in(self) -> bool:
        return self.source.startswith("synthetic")


def spec(name: str) -> Spec:
    """The :class:`Spec` of ``name``; an unknown name raises a ValueError listing the valid ones."""
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; valid names: {', '.join(DATASETS)}")
    return DATASETS[name]


_loaded: dict = {}


def load(name: str, split: str = "train") -> ImageSet:
    """Data set ``name``'s ``split`` ('train' or 'test') from the first source that has it."""
    spec(name)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    key = (name, str(config.data_dir()), config.offline(), config.mode())
    if key not in _loaded:
        _loaded[key] = _load_both_splits(name)
    return _loaded[key][split]


def _load_both_splits(name: str) -> dict[str, ImageSet]:
    root = config.data_dir()
    found = _from_data_dir(name, root)
    if found is None and name == "FashionMNIST" and DEBIAN_FASHION_MNIST.is_dir():
        found = _from_debian(name)
    if found is None:
        reason = "COURSE_OFFLINE is set, so no download was tried"
        if not config.offline():
            try:
                _download(name, root)
                found = _from_data_dir(name, root)
            except (OSError, RuntimeError) as error:  # URLError is an OSError
                reason = f"the torchvision download failed ({error})"
    if found is not None:
        return found
    if config.is_quick():
        return _stand_in(name, reason)
    raise DatasetNotFoundError(_how_to_get(name, root, reason))


def _how_to_get(name: str, root: Path, reason: str) -> str:
    s = spec(name)
    lines = [f"{name} was not found: not in {root / s.folder}, and {reason}.", "To get it:",
             f"  - run with network access and without COURSE_OFFLINE: torchvision downloads it "
             f"(about {s.size_mb} MB) into {root}/;",
             f"  - or place torchvision's extracted folder '{s.folder}' in {root}/ "
             f"(or point DATA_DIR at a folder that has it);"]
    if name == "FashionMNIST":
        lines.append("  - or install the Debian package: apt-get install dataset-fashion-mnist;")
    lines.append("  - or set COURSE_MODE=quick to run on a synthetic stand-in (a smoke run, not a "
                 "result).")
    return "\n".join(lines)


def _from_data_dir(name: str, root: Path) -> dict[str, ImageSet] | None:
    s = spec(name)
    folder = root / s.folder
    if not folder.exists():
        return None
    cls = getattr(torchvision.datasets, s.torchvision_class)
    try:
        sets = {split: cls(root=str(root), train=split == "train", download=False)
                for split in SPLITS}
    except (RuntimeError, AssertionError, ValueError, OSError) as error:  # MNIST's reader asserts
        what = ("a file is missing or fails torchvision's MD5 check" if s.md5_on_load else
                "torchvision cannot read it (it checks only that the files are there, not their "
                "checksums)")
        raise DatasetNotFoundError(
            f"{folder} exists but is incomplete or damaged: {what} ({type(error).__name__}: "
            f"{error}). Delete {folder} and run again to download it afresh.") from error
    return {split: _from_torchvision(ds, str(folder)) for split, ds in sets.items()}


def _from_torchvision(ds, source: str) -> ImageSet:
    images = torch.as_tensor(ds.data)
    images = images.unsqueeze(1) if images.ndim == 3 else images.permute(0, 3, 1, 2)
    labels = torch.as_tensor(ds.targets, dtype=torch.int64)
    return ImageSet(images.contiguous(), labels, list(ds.classes), source)


def read_idx(path: str | os.PathLike) -> torch.Tensor:
    """Read an IDX file (the MNIST format; gzipped or not) of unsigned bytes into a uint8 tensor.
    A damaged file (cut short, empty, not gzip, a wrong header) is a ValueError naming it."""
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise ValueError(f"{path} is not a complete, valid gzip file ({error})") from error
    if not raw:
        raise ValueError(f"{path} is empty")
    if raw[:3] != b"\0\0\x08":  # two zero bytes, then the type code of unsigned bytes
        raise ValueError(f"{path} is not an IDX file of unsigned bytes")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise ValueError(f"{path} is truncated: its header is cut off")
    shape = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    data = torch.frombuffer(bytearray(raw[4 + 4 * ndim:]), dtype=torch.uint8)
    if data.numel() != math.prod(shape):
        raise ValueError(f"{path} is truncated: expected {math.prod(shape)} values, "
                         f"found {data.numel()}")
    return data.reshape(shape)


def _from_idx_files(folder: Path, split: str, name: str) -> ImageSet:
    prefix = "train" if split == "train" else "t10k"
    images = read_idx(folder / f"{prefix}-images-idx3-ubyte.gz").unsqueeze(1)
    labels = read_idx(folder / f"{prefix}-labels-idx1-ubyte.gz").long()
    return ImageSet(images, labels, list(spec(name).classes), str(folder))


def _from_debian(name: str) -> dict[str, ImageSet]:
    """Both splits from the Debian package; a missing or damaged file is named with the fix."""
    try:
        return {split: _from_idx_files(DEBIAN_FASHION_MNIST, split, name) for split in SPLITS}
    except (OSError, ValueError) as error:
        raise DatasetNotFoundError(
            f"The Debian package's {name} in {DEBIAN_FASHION_MNIST} is incomplete or damaged: "
            f"{error}. Reinstall it: {DEBIAN_REINSTALL}") from error


def _download(name: str, root: Path) -> None:
    """Download with torchvision (its URLs and checksums) into a temporary folder inside
    ``root``, and move the result into place only when both splits are complete."""
    s = spec(name)
    root.mkdir(parents=True, exist_ok=True)
    cls = getattr(torchvision.datasets, s.torchvision_class)
    with tempfile.TemporaryDirectory(dir=root, prefix=f".download-{name}-") as temporary:
        for split in SPLITS:
            cls(root=temporary, train=split == "train", download=True)
        os.replace(Path(temporary) / s.folder, root / s.folder)


def _stand_in(name: str, reason: str) -> dict[str, ImageSet]:
    """A learnable synthetic data set of the real one's shape: each class is a smooth random
    colour pattern; each image is its class pattern plus noise. Seeded, so always the same."""
    s = spec(name)
    channels, height, width = s.shape
    generator = torch.Generator().manual_seed(1234)
    patterns = torch.rand(len(s.classes), channels, 4, 4, generator=generator)
    patterns = F.interpolate(patterns, size=(height, width), mode="bilinear", align_corners=False)
    out = {}
    for split in SPLITS:
        n = STAND_IN_SIZES[split]
        labels = torch.randint(len(s.classes), (n,), generator=generator)
        noise = torch.randn(n, channels, height, width, generator=generator) * 0.25
        images = ((patterns[labels] + noise).clamp(0, 1) * 255).round().to(torch.uint8)
        out[split] = ImageSet(images, labels, list(s.classes), f"synthetic stand-in for {name}")
    print(f"*** {name} is not available ({reason}).\n*** Quick mode uses a SYNTHETIC STAND-IN of "
          f"the same shape ({STAND_IN_SIZES['train']:,} train / {STAND_IN_SIZES['test']:,} test "
          f"images, {len(s.classes)} classes): it proves the code runs; nothing learned on it is "
          f"a result.")
    return out


def channel_stats(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of the pixel values (scaled to [0, 1]) of the training split.

    Computed from the data, never hard-coded, and cached in ``DATA_DIR/stats/<name>.json``
    (keyed by the source and the number of images, so a different copy is recomputed). An
    unreadable cache is recomputed, and an unwritable one skipped, each with one line."""
    train = load(name, "train")
    if train.is_stand_in:
        return mean_std(train.images)
    cache = config.data_dir() / "stats" / f"{name}.json"
    if cached := _cached_stats(cache, train):
        return cached
    mean, std = mean_std(train.images)
    try:
        files.write_text(cache, json.dumps({"mean": mean, "std": std, "images": len(train),
                                            "source": train.source}, indent=1))
    except OSError as error:  # a read-only DATA_DIR must not stop data that loads fine
        print(f"Could not cache the channel statistics of {name} in {cache} ({error}); they are "
              f"recomputed each run. To keep them, make that path writable or point DATA_DIR at "
              f"a writable folder.")
    return mean, std


def _cached_stats(cache: Path, train: ImageSet) -> tuple | None:
    """The (mean, std) cached for ``train``, or None: no cache, one for another copy of the data,
    or one that cannot be read (which is said in one line; it is then recomputed)."""
    if not cache.exists():
        return None
    try:
        cached = json.loads(cache.read_text())
        if cached["source"] != train.source or cached["images"] != len(train):
            return None
        stats = tuple(tuple(cached[key]) for key in ("mean", "std"))
        channels = train.images.shape[1]
        if not all(len(values) == channels and all(type(v) in (int, float) for v in values)
                   for values in stats):
            raise ValueError(f"mean and std must be {channels} numbers each")
    except (OSError, ValueError, KeyError, TypeError) as error:  # JSONDecodeError: ValueError
        print(f"The channel-statistics cache {cache} is unreadable ({type(error).__name__}: "
              f"{error}); recomputing it.")
        return None
    return stats


def mean_std(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std, in [0, 1] units, of uint8 images (N x C x H x W)."""
    total = torch.zeros(images.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for chunk in images.split(4096):
        chunk = chunk.double().div_(255)
        total += chunk.sum(dim=(0, 2, 3))
        squares += chunk.square().sum(dim=(0, 2, 3))
    count = images.numel() / images.shape[1]
    mean = total / count
    std = (squares / count - mean.square()).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


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
}


class DeviceLoader:
    """Batches (normalised float images, labels) cut from uint8 tensors held on ``device``.

    Shuffling, cropping and flipping happen on the device for a whole batch at once, from a
    generator seeded by (seed, epoch): the same epoch always gives the same batches, also after
    a resume (the training module sets the epoch at each epoch start). With ``world_size > 1``
    each rank takes its share of every epoch's permutation.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int,
                 mean, std, shuffle: bool = False, augment=(), drop_last: bool = False,
                 seed: int = 0, device: str | torch.device = "cpu", rank: int = 0,
                 world_size: int = 1):
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.labels = labels.to(self.device)
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.augment, self.seed = tuple(augment), seed
        self.rank, self.world_size = rank, world_size
        self.mean = torch.tensor(mean, device=self.device).view(1, -1, 1, 1) * 255
        self.std = torch.tensor(std, device=self.device).view(1, -1, 1, 1) * 255
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass epoch ``epoch`` (each complete pass advances it by one)."""
        self.epoch = epoch

    def _local_count(self) -> int:
        return len(range(self.rank, len(self.labels), self.world_size))

    def __len__(self) -> int:
        count = self._local_count()
        return count // self.batch_size if self.drop_last else math.ceil(count / self.batch_size)

    def __iter__(self):
        # The epoch is read when the first batch is drawn, not when iter() is called: Lightning
        # calls iter() before its epoch-start hooks, which set the epoch.
        generator = torch.Generator(device=self.device)
        generator.manual_seed(self.seed * 1_000_003 + self.epoch)
        n = len(self.labels)
        order = (torch.randperm(n, device=self.device, generator=generator) if self.shuffle
                 else torch.arange(n, device=self.device))
        order = order[self.rank::self.world_size]
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            index = order[start:start + self.batch_size]
            images = self.images[index]
            for augmentation in self.augment:
                images = augmentation(images, generator)
            yield (images.float() - self.mean) / self.std, self.labels[index]
        self.epoch += 1


def _reshaped(part: ImageSet, size: int | None, channels: int | None) -> ImageSet:
    """Images resized (bilinear) to size x size and with a single channel repeated to
    ``channels``, as uint8 again: how Mundt et al. fed MNIST-type data to 3-channel 32x32 VGGs."""
    images = part.images
    if size and images.shape[-2:] != (size, size):
        resized = [F.interpolate(chunk.float(), size=(size, size), mode="bilinear",
                                 align_corners=False) for chunk in images.split(4096)]
        images = torch.cat(resized).round().clamp(0, 255).to(torch.uint8)
    if channels and images.shape[1] != channels:
        if images.shape[1] != 1:
            raise ValueError(f"cannot turn {images.shape[1]} channels into {channels}")
        images = images.expand(-1, channels, -1, -1).contiguous()
    return ImageSet(images, part.labels, part.classes, part.source)


def denormalize(batch: torch.Tensor, mean, std) -> torch.Tensor:
    """Undo a loader's normalisation: float batch -> uint8 images, to look at what it serves."""
    mean = torch.tensor(mean, device=batch.device).view(1, -1, 1, 1)
    std = torch.tensor(std, device=batch.device).view(1, -1, 1, 1)
    return (batch * std + mean).mul(255).round().clamp(0, 255).to(torch.uint8)


def _check_sizes(val_size, subset, batch_size, eval_batch_size) -> None:
    """The sizes an :class:`ImageDataModule` is given, checked before any data is loaded."""
    def whole(value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value > 0

    if not (whole(val_size) or isinstance(val_size, float) and 0 < val_size < 1):
        raise ValueError(f"val_size={val_size!r} is not valid: give a number of images (e.g. "
                         f"5000) or a fraction between 0 and 1 (e.g. 0.1); the validation set "
                         f"is cut from the training split and must leave training data")
    if subset not in (None, "auto") and not (isinstance(subset, (tuple, list))
                                             and len(subset) == 3 and all(map(whole, subset))):
        raise ValueError(f"subset={subset!r} is not valid: give (train, val, test) image counts "
                         f"> 0, None for everything, or 'auto' (everything in full mode, "
                         f"{config.QUICK_SUBSET} in quick mode)")
    for label, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
        if not whole(value):
            raise ValueError(f"{label}={value!r} is not valid: a whole number > 0")


class ImageDataModule(pl.LightningDataModule):
    """A data set split into train / validation / test, served as :class:`DeviceLoader` batches.

    The validation set is a seeded part of the official training split (never the test split).
    ``subset`` = (train, val, test) sizes, ``None`` for everything, or ``"auto"``: everything in
    full mode, ``config.QUICK_SUBSET`` in quick mode. ``test_every_epoch`` also evaluates the
    test set after every epoch (for protocols that report it; selection stays on validation).
    ``size`` and ``channels`` resize the images and repeat a single channel (e.g. MNIST-type
    data for 3-channel 32x32 networks); their statistics are then taken from the resized
    training part. ``augment`` names the training-batch
    augmentation: "crop-flip" (random crop with 4 pixels of zero padding, horizontal flip),
    "resized-crop-flip" (Tutorial 5's random resized crop and flip), "rotate-crop" (the
    checkered-CNN demo's rotation by up to 15 degrees and crop with 2 pixels of padding), or
    None. Flips are left out where they do not preserve the label (MNIST digits).
    """

    def __init__(self, name: str, batch_size: int = 128, val_size: int | float = 5000,
                 seed: int = 0, augment: str | None = "crop-flip", eval_batch_size: int = 1000,
                 subset: tuple | str | None = "auto", test_every_epoch: bool = False,
                 size: int | None = None, channels: int | None = None):
        super().__init__()
        if augment is not None and augment not in AUGMENTATIONS:
            raise ValueError(f"unknown augmentation {augment!r}; valid: "
                             f"{', '.join(AUGMENTATIONS)}, or None")
        _check_sizes(val_size, subset, batch_size, eval_batch_size)
        self.spec = spec(name)
        self.name, self.batch_size, self.val_size, self.seed = name, batch_size, val_size, seed
        self.augment, self.eval_batch_size, self.subset = augment, eval_batch_size, subset
        self.test_every_epoch, self.size, self.channels = test_every_epoch, size, channels
        self.train = self.val = self.test = None

    def setup(self, stage: str | None = None) -> None:
        if self.train is not None:
            return
        full_train, test = load(self.name, "train"), load(self.name, "test")
        train_index, val_index = split_indices(len(full_train), self.val_size, self.seed)
        sizes = self.subset
        if sizes == "auto":
            sizes = config.QUICK_SUBSET if config.is_quick() else None
        test_index = torch.arange(len(test))
        if sizes is not None:
            train_index, val_index, test_index = (
                train_index[:sizes[0]], val_index[:sizes[1]], test_index[:sizes[2]])
        self.train, self.val = full_train.subset(train_index), full_train.subset(val_index)
        self.test = test.subset(test_index)
        if self.size or self.channels:
            self.train, self.val, self.test = (_reshaped(part, self.size, self.channels)
                                               for part in (self.train, self.val, self.test))
            self.mean, self.std = mean_std(self.train.images)
        else:
            self.mean, self.std = channel_stats(self.name)

    @property
    def classes(self) -> list:
        return self.spec.classes

    @property
    def num_classes(self) -> int:
        return len(self.spec.classes)

    @property
    def input_shape(self) -> tuple:
        channels, height, width = self.spec.shape
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

    def loader(self, part: str, device: str | torch.device = "cpu") -> DeviceLoader:
        """A :class:`DeviceLoader` over 'train' (shuffled, augmented, full batches only),
        'val' or 'test' (in order, every image once)."""
        self.setup()
        images = {"train": self.train, "val": self.val, "test": self.test}[part]
        training = part == "train"
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
        augment = ()
        if training and self.augment:
            augment = [f for f in AUGMENTATIONS[self.augment]
                       if self.spec.flip or f is not random_flip]
        return DeviceLoader(
            images.images, images.labels, mean=self.mean, std=self.std, device=device,
            batch_size=self.batch_size if training else self.eval_batch_size,
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

