"""Where the course's image data sets come from, as uint8 tensors.

``load(name, split)`` returns an :class:`ImageSet` (uint8 images N x C x H x W, int64 labels,
class names, where it came from) from the first source that has it:

1. ``DATA_DIR`` (default ``data/``) in torchvision's layout;
2. the Debian package ``dataset-fashion-mnist`` (Fashion-MNIST only);
3. a torchvision download (with its checksums) unless ``COURSE_OFFLINE`` is set.

If none has it, :class:`DatasetNotFoundError` says in one line how to get it. A smoke run alone
(``load(..., smoke=True)``: the data module of one says so, as smoke mode's do in tests and CI)
takes a small synthetic, learnable stand-in of the same shape instead, and says so in a banner;
the full and CPU modes' runs never do.
:func:`channel_stats` gives the per-channel mean and std that batches are normalised with.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import struct
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

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
class DatasetInfo:
    """What the course needs to know about a data set."""
    torchvision_class: str
    folder: str          # what torchvision creates under DATA_DIR
    shape: tuple         # (channels, height, width)
    classes: list
    flip: bool           # is a horizontal flip label-preserving?
    size_mb: int         # download size, for the error message
    md5_on_load: bool = False  # does torchvision check the files' MD5 when it loads the folder?


DATASETS = {
    "CIFAR10": DatasetInfo("CIFAR10", "cifar-10-batches-py", (3, 32, 32), CIFAR10_CLASSES,
                           True, 163, md5_on_load=True),
    "CIFAR100": DatasetInfo("CIFAR100", "cifar-100-python", (3, 32, 32), CIFAR100_CLASSES,
                            True, 161, md5_on_load=True),
    "MNIST": DatasetInfo("MNIST", "MNIST", (1, 28, 28), torchvision.datasets.MNIST.classes,
                         False, 12),
    "FashionMNIST": DatasetInfo("FashionMNIST", "FashionMNIST", (1, 28, 28),
                         torchvision.datasets.FashionMNIST.classes, True, 30),
}
SPLITS = ("train", "test")


class DatasetNotFoundError(FileNotFoundError):
    """No source has the data set; the message says how to get it. A notebook shows that one
    message, not a traceback (IPython's ``_render_traceback_``)."""

    def _render_traceback_(self) -> list[str]:
        return [str(self)]


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

    def reshaped(self, size: int | None, channels: int | None) -> ImageSet:
        """Images resized (bilinear) to size x size and with a single channel repeated to
        ``channels``, as uint8 again: how Mundt et al. fed MNIST-type data to 3-channel 32x32
        VGGs."""
        images = self.images
        if size and images.shape[-2:] != (size, size):
            resized = [F.interpolate(chunk.float(), size=(size, size), mode="bilinear",
                                     align_corners=False) for chunk in images.split(4096)]
            images = torch.cat(resized).round().clamp(0, 255).to(torch.uint8)
        if channels and images.shape[1] != channels:
            if images.shape[1] != 1:
                raise ValueError(f"cannot turn {images.shape[1]} channels into {channels}")
            images = images.expand(-1, channels, -1, -1).contiguous()
        return ImageSet(images, self.labels, self.classes, self.source)


def check_subset(name: str, sizes, available: tuple) -> None:
    """A data module's ``subset`` (train, validation, test) against the images there are."""
    if any(map(int.__gt__, sizes, available)):
        raise ValueError(
            f"subset={tuple(sizes)} asks for more images than {name} has: "
            f"{available[0]:,} train, {available[1]:,} validation (val_size) and "
            f"{available[2]:,} test; ask for at most those, or None for everything")


def info(name: str) -> DatasetInfo:
    """What the course knows about data set ``name``; an unknown name raises a ValueError
    listing the valid ones."""
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; valid names: {', '.join(DATASETS)}")
    return DATASETS[name]


_loaded: dict = {}


def load(name: str, split: str = "train", smoke: bool = False) -> ImageSet:
    """Data set ``name``'s ``split`` ('train' or 'test') from the first source that has it;
    for a ``smoke`` run (the caller says: the course's smoke mode), where none has it, a
    labelled synthetic stand-in."""
    info(name)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    key = (name, str(config.data_dir()), config.offline(), smoke)
    if key not in _loaded:
        _loaded[key] = _load_both_splits(name, smoke)
    return _loaded[key][split]


def _load_both_splits(name: str, smoke: bool) -> dict[str, ImageSet]:
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
    if smoke:
        return _stand_in(name, reason)
    raise DatasetNotFoundError(_how_to_get(name, root, reason))


def _how_to_get(name: str, root: Path, reason: str) -> str:
    """One line: what is missing, why, and every way to get it."""
    s = info(name)
    debian = ("install the Debian package (apt-get install dataset-fashion-mnist), "
              if name == "FashionMNIST" else "")
    return (f"{name} is not here (not in {root / s.folder}; {reason}). To get it: {debian}run "
            f"once with network access and without COURSE_OFFLINE (torchvision downloads about "
            f"{s.size_mb} MB into {root}/), or put torchvision's folder '{s.folder}' in {root}/.")


def _from_data_dir(name: str, root: Path) -> dict[str, ImageSet] | None:
    s = info(name)
    folder = root / s.folder
    try:
        if not folder.exists():
            return None
    except OSError as error:  # a name too long, a loop of links: DATA_DIR cannot hold data
        raise DatasetNotFoundError(
            f"DATA_DIR={os.environ.get('DATA_DIR')!r} cannot hold data sets ({error.strerror}: "
            f"{folder}); set it to a folder that can, or unset it for data/ in the checkout."
        ) from None
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
    return ImageSet(images, labels, list(info(name).classes), str(folder))


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
    s = info(name)
    root.mkdir(parents=True, exist_ok=True)
    cls = getattr(torchvision.datasets, s.torchvision_class)
    with tempfile.TemporaryDirectory(dir=root, prefix=f".download-{name}-") as temporary:
        for split in SPLITS:
            cls(root=temporary, train=split == "train", download=True)
        os.replace(Path(temporary) / s.folder, root / s.folder)


def _stand_in(name: str, reason: str) -> dict[str, ImageSet]:
    """A learnable synthetic data set of the real one's shape: each class is a smooth random
    colour pattern; each image is its class pattern plus noise. Seeded, so always the same."""
    s = info(name)
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
    print(f"*** {name} is not available ({reason}).\n*** Smoke mode uses a SYNTHETIC STAND-IN of "
          f"the same shape ({STAND_IN_SIZES['train']:,} train / {STAND_IN_SIZES['test']:,} test "
          f"images, {len(s.classes)} classes): it proves the code runs; nothing learned on it is "
          f"a result.")
    return out


def channel_stats(name: str, smoke: bool = False) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of the pixel values (scaled to [0, 1]) of the training split.

    Computed from the data, never hard-coded, and cached in ``DATA_DIR/stats/<name>.json``
    (keyed by the source and the number of images, so a different copy is recomputed). An
    unreadable cache is recomputed, and an unwritable one skipped, each with one line."""
    train = load(name, "train", smoke)
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
