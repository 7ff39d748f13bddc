import gzip
import hashlib
import io
import json
import pickle
import shutil
import struct
import tarfile
import urllib.request

import numpy as np
import pytest
import torch
import torchvision

from helpers import data, modes
from helpers._machinery import config, datasets, files


def _idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def _no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the network was used")
    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def _fashion_in_data_dir(root, n_train=30, n_test=12):
    """A tiny Fashion-MNIST in torchvision's layout (raw, uncompressed IDX files)."""
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
            _idx_bytes(rng.integers(0, 256, (n, 28, 28))))
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(_idx_bytes(rng.integers(0, 10, n)))


# --- names and sources ----------------------------------------------------------------------

def test_unknown_data_set_lists_the_valid_ones():
    with pytest.raises(ValueError, match="'CIFAR1000'.*CIFAR10, CIFAR100, MNIST, FashionMNIST"):
        datasets.load("CIFAR1000")
    with pytest.raises(ValueError, match="valid names"):
        data.ImageDataModule("ImageNet")


def test_unknown_split_lists_the_valid_ones():
    with pytest.raises(ValueError, match="'validation'.*train, test"):
        datasets.load("MNIST", "validation")


def test_read_idx_plain_gzipped_and_truncated(tmp_path):
    array = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    (tmp_path / "a").write_bytes(_idx_bytes(array))
    (tmp_path / "a.gz").write_bytes(gzip.compress(_idx_bytes(array)))
    for name in ("a", "a.gz"):
        loaded = datasets.read_idx(tmp_path / name)
        assert loaded.dtype == torch.uint8 and loaded.tolist() == array.tolist()
    (tmp_path / "cut").write_bytes(_idx_bytes(array)[:-5])
    with pytest.raises(ValueError, match="truncated"):
        datasets.read_idx(tmp_path / "cut")


@pytest.mark.parametrize("name, content, problem", [
    ("cut.gz", gzip.compress(_idx_bytes(np.zeros((4, 5))))[:-12], "not a complete, valid gzip"),
    ("empty.gz", b"", "is empty"),
    ("plain.gz", _idx_bytes(np.zeros((4, 5))), "not a complete, valid gzip"),
    ("magic", b"\x08\x03\x00\x00" + bytes(20), "not an IDX file of unsigned bytes"),
    ("header", _idx_bytes(np.zeros((4, 5, 6)))[:9], "truncated: its header is cut off")],
    ids=["cut gzip", "empty", "not gzip", "wrong magic", "cut header"])
def test_read_idx_names_a_damaged_file(tmp_path, name, content, problem):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ValueError, match=f"{tmp_path / name} .*{problem}"):
        datasets.read_idx(tmp_path / name)


needs_debian = pytest.mark.skipif(
    not datasets.DEBIAN_FASHION_MNIST.is_dir(),
    reason="needs the Debian package: apt-get install dataset-fashion-mnist")


@needs_debian
def test_fashion_mnist_from_the_debian_package(monkeypatch):
    _no_network(monkeypatch)
    train, test = datasets.load("FashionMNIST", "train"), datasets.load("FashionMNIST", "test")
    assert train.images.shape == (60_000, 1, 28, 28) and train.images.dtype == torch.uint8
    assert test.images.shape == (10_000, 1, 28, 28)
    assert train.labels.dtype == torch.int64 and set(train.labels.tolist()) == set(range(10))
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    assert train.classes[0] == "T-shirt/top" and len(train.classes) == 10
    assert train.source == str(datasets.DEBIAN_FASHION_MNIST) and not train.is_stand_in


def _damage(path, how):
    raw = path.read_bytes()
    if how == "delete":
        path.unlink()
    else:
        path.write_bytes({"truncate": raw[: len(raw) // 2], "empty": b"",
                          "corrupt the header": b"\0" * 10 + raw[10:]}[how])


@needs_debian
@pytest.mark.parametrize("file, how", [("train-images-idx3-ubyte.gz", "truncate"),
                                       ("t10k-labels-idx1-ubyte.gz", "empty"),
                                       ("train-labels-idx1-ubyte.gz", "delete"),
                                       ("t10k-images-idx3-ubyte.gz", "corrupt the header")])
@pytest.mark.parametrize("smoke", [True, False])
def test_a_damaged_debian_fashion_mnist_names_the_file_and_the_fix(monkeypatch, tmp_path, file,
                                                                   how, smoke):
    _no_network(monkeypatch)
    copy = tmp_path / "fashion-mnist"
    copy.mkdir()
    # links; a real copy of the one to damage
    for original in datasets.DEBIAN_FASHION_MNIST.iterdir():
        (copy / original.name).symlink_to(original)
    (copy / file).unlink()
    shutil.copy(datasets.DEBIAN_FASHION_MNIST / file, copy / file)
    _damage(copy / file, how)
    monkeypatch.setattr(datasets, "DEBIAN_FASHION_MNIST", copy)
    with pytest.raises(datasets.DatasetNotFoundError,
                       match=f"{copy / file}.*apt-get install --reinstall dataset-fashion-mnist"):
        datasets.load("FashionMNIST", smoke=smoke)


def test_data_dir_comes_first_and_is_read_by_torchvision(course_env, monkeypatch):
    _no_network(monkeypatch)
    _fashion_in_data_dir(course_env / "data")
    train = datasets.load("FashionMNIST", "train")
    assert train.images.shape == (30, 1, 28, 28)
    assert train.source == str(course_env / "data" / "FashionMNIST")
    assert len(datasets.load("FashionMNIST", "test")) == 12


@pytest.mark.parametrize("mode", ["full", "cpu"])
def test_offline_without_data_stops_with_one_line_that_says_how_to_get_it(monkeypatch, mode):
    """Only smoke mode falls back to the stand-in; in a notebook the error shows as its one
    line, not a traceback (IPython's _render_traceback_)."""
    _no_network(monkeypatch)
    monkeypatch.setenv("COURSE_MODE", mode)
    with pytest.raises(datasets.DatasetNotFoundError) as error:
        datasets.load("CIFAR100")
    message = str(error.value)
    assert "\n" not in message and error.value._render_traceback_() == [message]
    assert "cifar-100-python" in message and "COURSE_OFFLINE" in message
    assert "161 MB" in message and "stand-in" not in message


def test_cpu_mode_without_fashion_mnist_points_to_the_debian_package(monkeypatch, tmp_path,
                                                                     capsys):
    _no_network(monkeypatch)
    monkeypatch.setenv("COURSE_MODE", "cpu")
    monkeypatch.setattr(datasets, "DEBIAN_FASHION_MNIST", tmp_path / "absent")
    with pytest.raises(datasets.DatasetNotFoundError,
                       match="apt-get install dataset-fashion-mnist"):
        datasets.load("FashionMNIST")
    assert "STAND-IN" not in capsys.readouterr().out


def test_a_smoke_run_offline_uses_an_announced_stand_in(monkeypatch, capsys):
    _no_network(monkeypatch)
    train = datasets.load("CIFAR100", "train", smoke=True)
    assert "SYNTHETIC STAND-IN" in capsys.readouterr().out
    assert train.images.shape == (10_000, 3, 32, 32) and train.images.dtype == torch.uint8
    assert train.labels.dtype == torch.int64 and int(train.labels.max()) < 100
    assert train.classes == datasets.CIFAR100_CLASSES and len(set(train.classes)) == 100
    assert train.is_stand_in
    datasets._loaded.clear()
    again = datasets.load("CIFAR100", "train", smoke=True)
    assert torch.equal(again.images, train.images)  # seeded: the same every time


def test_a_corrupt_data_folder_is_named_with_the_remedy(course_env):
    folder = course_env / "data" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    (folder / "data_batch_1").write_bytes(b"garbage")
    with pytest.raises(datasets.DatasetNotFoundError, match=r"cifar-10-batches-py.*fails "
                                                        r"torchvision's MD5 check.*Delete"):
        datasets.load("CIFAR10")


def test_a_damaged_mnist_folder_is_named_without_claiming_a_checksum(course_env):
    """torchvision checks only that MNIST-type files exist; a cut one fails inside its reader."""
    _fashion_in_data_dir(course_env / "data")
    raw = course_env / "data" / "FashionMNIST" / "raw" / "train-images-idx3-ubyte"
    raw.write_bytes(raw.read_bytes()[:100])
    with pytest.raises(datasets.DatasetNotFoundError,
                       match=r"FashionMNIST exists but is incomplete or damaged.*not their "
                             r"checksums.*Delete"):
        datasets.load("FashionMNIST")


# --- the torchvision download, against a local server ---------------------------------------

def _fake_cifar10(monkeypatch, server, corrupt=False):
    """Serve a tiny archive in CIFAR-10's format and point torchvision's CIFAR10 at it."""
    rng = np.random.default_rng(0)
    blobs = {f"data_batch_{i}": 4 for i in range(1, 6)} | {"test_batch": 6}
    members = {name: pickle.dumps({"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                                   "labels": rng.integers(0, 10, n).tolist()})
               for name, n in blobs.items()}
    members["batches.meta"] = pickle.dumps({"label_names": datasets.CIFAR10_CLASSES})
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, blob in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            archive.addfile(info, io.BytesIO(blob))
    body = buffer.getvalue()
    md5 = {name: hashlib.md5(blob).hexdigest() for name, blob in members.items()}
    cls = torchvision.datasets.CIFAR10
    monkeypatch.setattr(cls, "url", server.serve("/cifar-10-python.tar.gz", body))
    monkeypatch.setattr(cls, "tgz_md5", "0" * 32 if corrupt else hashlib.md5(body).hexdigest())
    monkeypatch.setattr(cls, "train_list", [[f"data_batch_{i}", md5[f"data_batch_{i}"]]
                                            for i in range(1, 6)])
    monkeypatch.setattr(cls, "test_list", [["test_batch", md5["test_batch"]]])
    monkeypatch.setattr(cls, "meta", {"filename": "batches.meta", "key": "label_names",
                                      "md5": md5["batches.meta"]})


def test_torchvision_download_lands_complete(course_env, monkeypatch, server):
    monkeypatch.delenv("COURSE_OFFLINE")
    _fake_cifar10(monkeypatch, server)
    train = datasets.load("CIFAR10", "train")
    assert train.images.shape == (20, 3, 32, 32) and len(datasets.load("CIFAR10", "test")) == 6
    assert train.classes == datasets.CIFAR10_CLASSES
    assert server.requests  # it really went through the server
    root = course_env / "data"
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-batches-py"]  # no leftovers
    datasets._loaded.clear()
    server.requests.clear()
    assert len(datasets.load("CIFAR10", "train")) == 20 and server.requests == []  # found locally


def test_a_download_failing_its_checksum_leaves_nothing(course_env, monkeypatch, server):
    monkeypatch.delenv("COURSE_OFFLINE")
    monkeypatch.setenv("COURSE_MODE", "full")
    _fake_cifar10(monkeypatch, server, corrupt=True)
    with pytest.raises(datasets.DatasetNotFoundError, match="download failed"):
        datasets.load("CIFAR10")
    assert list((course_env / "data").iterdir()) == []


def test_offline_never_downloads(monkeypatch, server):
    _fake_cifar10(monkeypatch, server)
    datasets.load("CIFAR10", smoke=True)
    assert server.requests == []


# --- statistics and splits ------------------------------------------------------------------

def test_channel_stats_are_computed_from_the_training_split():
    mean, std = datasets.channel_stats("CIFAR10", smoke=True)
    pixels = datasets.load("CIFAR10", "train", smoke=True).images.double() / 255
    assert mean == pytest.approx(pixels.mean(dim=(0, 2, 3)).tolist(), abs=1e-9)
    assert std == pytest.approx(pixels.std(dim=(0, 2, 3), correction=0).tolist(), abs=1e-9)


def test_channel_stats_of_real_data_are_cached(course_env, monkeypatch):
    _fashion_in_data_dir(course_env / "data")
    first = datasets.channel_stats("FashionMNIST")
    assert (course_env / "data" / "stats" / "FashionMNIST.json").exists()
    monkeypatch.setattr(datasets, "mean_std", lambda images: pytest.fail("recomputed"))
    assert datasets.channel_stats("FashionMNIST") == first


_THIS_COPY = {"source": "the tiny copy's folder", "images": 30}  # keyed to the data in use


@pytest.mark.parametrize("content", [
    "{not json", {"mean": [0.5], "std": [0.2]}, [0.5, 0.2],  # invalid; no keys; not an object
    _THIS_COPY | {"mean": "0.5", "std": [0.2]}, _THIS_COPY | {"mean": [None], "std": [0.2]},
    _THIS_COPY | {"mean": [0.5, 0.5], "std": [0.2, 0.2]}, "a directory"],
    ids=["invalid json", "missing keys", "not an object", "a string", "null", "two channels",
         "a directory"])
def test_an_unreadable_stats_cache_is_recomputed_with_one_line(course_env, capsys, content):
    _fashion_in_data_dir(course_env / "data")
    expected = datasets.mean_std(datasets.load("FashionMNIST", "train").images)
    cache = course_env / "data" / "stats" / "FashionMNIST.json"
    cache.parent.mkdir()
    if content == "a directory":
        cache.mkdir()
    elif isinstance(content, str):
        cache.write_text(content)
    else:
        if isinstance(content, dict) and "source" in content:
            content = content | {"source": str(course_env / "data" / "FashionMNIST")}
        cache.write_text(json.dumps(content))
    assert datasets.channel_stats("FashionMNIST") == expected
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"The channel-statistics cache {cache} is unreadable (")
    assert lines[0].endswith("); recomputing it.")
    if content == "a directory":  # left alone, so it cannot be rewritten: said in a second line
        assert len(lines) == 2 and lines[1].startswith("Could not cache")
    else:  # rewritten, and read back the next time
        assert len(lines) == 1
        assert json.loads(cache.read_text())["mean"] == list(expected[0])
        assert datasets.channel_stats("FashionMNIST") == expected
        assert capsys.readouterr().out == ""


def test_an_unwritable_stats_cache_is_skipped_with_one_line(course_env, monkeypatch, capsys):
    _fashion_in_data_dir(course_env / "data")

    def refuse(target, text):
        raise PermissionError(13, "Permission denied", str(target))
    monkeypatch.setattr(files, "write_text", refuse)
    mean, std = datasets.channel_stats("FashionMNIST")
    assert len(mean) == len(std) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Could not cache the channel statistics of "
                                                   "FashionMNIST in ")
    assert "Permission denied" in lines[0] and "writable" in lines[0]


@needs_debian
def test_a_data_dir_that_cannot_exist_does_not_stop_the_debian_data(course_env, monkeypatch,
                                                                    capsys):
    _no_network(monkeypatch)
    (course_env / "afile").write_text("a file, not a folder")
    monkeypatch.setenv("DATA_DIR", str(course_env / "afile" / "data"))
    mean, std = datasets.channel_stats("FashionMNIST")
    assert 0.2 < mean[0] < 0.4 and 0.3 < std[0] < 0.4  # Fashion-MNIST's known 0.286, 0.353
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and "Could not cache the channel statistics of FashionMNIST" in lines[0]
    assert str(course_env / "afile" / "data" / "stats") in lines[0]


def test_split_is_disjoint_complete_and_seeded():
    train, val = data.split_indices(1000, 100, seed=3)
    assert len(val) == 100 and len(train) == 900
    assert set(train.tolist()).isdisjoint(val.tolist())
    assert sorted(train.tolist() + val.tolist()) == list(range(1000))
    again_train, again_val = data.split_indices(1000, 100, seed=3)
    assert torch.equal(val, again_val) and torch.equal(train, again_train)
    assert not torch.equal(val, data.split_indices(1000, 100, seed=4)[1])
    assert len(data.split_indices(1000, 0.25)[1]) == 250
    with pytest.raises(ValueError, match="non-empty"):
        data.split_indices(10, 10)


def test_data_module_splits_train_only_and_keeps_test_whole():
    module = data.ImageDataModule("CIFAR10", smoke=True, val_size=1000, subset=None, seed=1)
    module.setup()
    full_train, full_test = (datasets.load("CIFAR10", "train", smoke=True),
                             datasets.load("CIFAR10", "test", smoke=True))
    assert (len(module.train), len(module.val), len(module.test)) == (9000, 1000, 2000)
    assert torch.equal(module.test.images, full_test.images)
    train_index, val_index = data.split_indices(len(full_train), 1000, seed=1)
    assert torch.equal(module.val.images, full_train.images[val_index])
    assert torch.equal(module.train.labels, full_train.labels[train_index])


def test_a_smoke_run_takes_the_quick_subset():
    module = data.ImageDataModule("CIFAR10", smoke=True)
    module.setup()
    assert (len(module.train), len(module.val), len(module.test)) == (1024, 256, 512)
    assert "1,024 train / 256 validation / 512 test" in module.describe()


# --- augmentation and batches ---------------------------------------------------------------

def test_random_crop_cuts_windows_of_the_padded_image():
    images = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8)
    cropped = data.random_crop(images, torch.Generator().manual_seed(0), padding=2)
    assert cropped.shape == images.shape and cropped.dtype == torch.uint8
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    offsets = set()
    for i in range(16):
        matches = [(dy, dx) for dy in range(5) for dx in range(5)
                   if torch.equal(cropped[i], padded[i, :, dy:dy + 8, dx:dx + 8])]
        assert matches, f"image {i} is not a window of its padded original"
        offsets.add(matches[0])
    assert len(offsets) > 1  # the windows really are random


def test_random_flip_mirrors_some_images_and_keeps_the_rest():
    images = torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8)
    flipped = data.random_flip(images, torch.Generator().manual_seed(0))
    mirrored = [torch.equal(f, i.flip(2)) for f, i in zip(flipped, images)]
    kept = [torch.equal(f, i) for f, i in zip(flipped, images)]
    assert all(m or k for m, k in zip(mirrored, kept))
    assert 10 < sum(mirrored) < 54


def _labelled_images(n):
    """Images whose every pixel is 10 x label: augmentation must keep that link."""
    labels = torch.arange(n) % 10
    images = (labels * 10 + 5).to(torch.uint8).view(n, 1, 1, 1).expand(n, 3, 8, 8).clone()
    return images, labels


def test_device_loader_keeps_labels_with_their_images():
    images, labels = _labelled_images(100)
    loader = data.DeviceLoader(images, labels, batch_size=32, mean=(0, 0, 0), std=(1, 1, 1),
                               shuffle=True, augment=data.AUGMENTATIONS["crop-flip"],
                               drop_last=True)
    assert len(loader) == 3
    for x, y in loader:
        assert x.shape == (32, 3, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
        assert torch.equal(x.amax(dim=(1, 2, 3)), (y * 10 + 5).float() / 255)


def test_random_resized_crop_of_the_whole_image_is_the_image():
    images = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    same = data.random_resized_crop(images, torch.Generator().manual_seed(0), scale=(1, 1),
                                    ratio=(1, 1))
    assert same.dtype == torch.float32 and torch.allclose(same, images.float(), atol=1e-3)


def test_random_resized_crop_zooms_into_random_windows():
    """A quarter of the area, square: a 4x4 window of an 8x8 image, upsampled twice."""
    images = torch.arange(64, dtype=torch.uint8).view(1, 1, 8, 8).expand(16, 3, 8, 8).clone()
    zoomed = data.random_resized_crop(images, torch.Generator().manual_seed(0), scale=(0.25, 0.25),
                                      ratio=(1, 1))
    assert zoomed.shape == images.shape
    spans = zoomed[:, 0].amax(dim=(1, 2)) - zoomed[:, 0].amin(dim=(1, 2))
    assert (spans < 40).all()  # a window: the full image spans 63
    assert len({round(v, 3) for v in zoomed[:, 0, 0, 0].tolist()}) > 1  # at random places


def test_augmentations_keep_labels_with_their_images_for_every_recipe():
    labels = torch.arange(64) % 10
    images = (labels * 10 + 5).to(torch.uint8).view(64, 1, 1, 1).expand(64, 3, 16, 16).clone()
    for name, augment in data.AUGMENTATIONS.items():
        loader = data.DeviceLoader(images, labels, batch_size=64, mean=(0,) * 3, std=(1,) * 3,
                                   shuffle=True, augment=augment)
        x, y = next(iter(loader))
        centre = x[:, :, 7:9, 7:9].mean(dim=(1, 2, 3))  # no padding reaches the centre
        assert torch.allclose(centre, (y * 10 + 5).float() / 255, atol=1e-5), name


def test_random_rotation_turns_images_about_their_centre():
    image = torch.zeros(1, 1, 9, 9, dtype=torch.uint8)
    image[0, 0, 4, :] = 255                        # a horizontal line through the centre
    batch = image.expand(64, 1, 9, 9)
    turned = data.random_rotation(batch, torch.Generator().manual_seed(0), degrees=90)
    assert turned.shape == batch.shape and (turned[:, 0, 4, 4] == 255).all()  # the centre stays
    vertical = turned[:, 0, :, 4].sum(1) > 255 * 6  # some turned near 90 degrees
    assert vertical.any() and not vertical.all()
    same = data.random_rotation(batch, torch.Generator().manual_seed(0), degrees=0)
    assert torch.equal(same, batch.float())


def test_unknown_augmentation_lists_the_valid_ones():
    valid = "crop-flip, resized-crop-flip, rotate-crop, flip, or None"
    with pytest.raises(ValueError, match=f"'cutout'.*{valid}"):
        data.ImageDataModule("CIFAR10", augment="cutout")


def test_digits_are_never_flipped():
    module = data.ImageDataModule("MNIST", smoke=True, subset=(64, 16, 16))
    assert data.random_flip not in module.loader("train", batch_size=32).augment
    cifar = data.ImageDataModule("CIFAR10", smoke=True)
    assert data.random_flip in cifar.loader("train", batch_size=32).augment


def test_device_loader_evaluation_sees_every_image_once_in_order():
    images, labels = _labelled_images(70)
    loader = data.DeviceLoader(images, labels, batch_size=32, mean=(0.5,) * 3, std=(0.25,) * 3)
    batches = list(loader)
    assert len(loader) == len(batches) == 3 and len(batches[-1][1]) == 6
    assert torch.equal(torch.cat([y for _, y in batches]), labels)
    x = batches[0][0][0, 0, 0, 0]
    assert x.item() == pytest.approx((5 / 255 - 0.5) / 0.25)


def test_denormalize_returns_the_original_images():
    images = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8)
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    loader = data.DeviceLoader(images, torch.arange(5), batch_size=5, mean=mean, std=std)
    x, _ = next(iter(loader))
    assert torch.equal(data.denormalize(x, mean, std), images)


def test_device_loader_epochs_differ_and_repeat_by_seed():
    images, labels = _labelled_images(64)
    loader = data.DeviceLoader(images, labels, batch_size=64, mean=(0,) * 3, std=(1,) * 3,
                               shuffle=True, seed=5)
    first, second = [y for _, y in loader][0], [y for _, y in loader][0]
    assert not torch.equal(first, second)
    loader.set_epoch(1)
    assert torch.equal([y for _, y in loader][0], second)


def test_device_loader_shards_between_ranks():
    images, labels = _labelled_images(50)
    seen = []
    for rank in range(2):
        loader = data.DeviceLoader(images, torch.arange(50), batch_size=8, mean=(0,) * 3,
                                   std=(1,) * 3, rank=rank, world_size=2)
        seen.append(torch.cat([y for _, y in loader]).tolist())
    assert set(seen[0]).isdisjoint(seen[1]) and sorted(seen[0] + seen[1]) == list(range(50))


def test_mnist_type_data_can_be_resized_and_repeated_to_three_channels():
    module = data.ImageDataModule("FashionMNIST", smoke=True, subset=(64, 16, 16), size=32,
                                  channels=3)
    module.setup()
    assert module.input_shape == (3, 32, 32)
    assert module.train.images.shape == (64, 3, 32, 32) and module.train.images.dtype == torch.uint8
    assert torch.equal(module.train.images[:, 0], module.train.images[:, 2])
    assert len(module.mean) == 3 and module.mean[0] == module.mean[2]
    x, _ = next(iter(module.loader("train", batch_size=32)))
    assert x.shape == (32, 3, 32, 32)


@needs_debian
def test_the_data_module_is_told_it_is_a_smoke_run_and_does_not_read_the_mode(monkeypatch):
    """In smoke mode (as every test runs) a data module not told smoke=True takes everything,
    and one told so takes the quick subset; the mode is read by the caller (modes.scale)."""
    assert config.is_smoke()
    told = data.ImageDataModule("FashionMNIST", smoke=True)
    untold = data.ImageDataModule("FashionMNIST")
    told.setup(), untold.setup()
    assert (len(told.train), len(told.val), len(told.test)) == config.SMOKE_SUBSET
    assert (len(untold.train), len(untold.val), len(untold.test)) == (55_000, 5_000, 10_000)
    assert modes.scale("01").module().smoke and not modes.FULL["01"].module().smoke
    with pytest.raises(datasets.DatasetNotFoundError):  # no stand-in unless told
        data.ImageDataModule("CIFAR10").setup()


def test_a_training_batch_size_is_checked_as_every_count_is():
    module = data.ImageDataModule("FashionMNIST", val_size=100, subset=(200, 100, 100),
                                  smoke=True)
    with pytest.raises(ValueError, match="batch_size must be a whole number of at least 1, not 0"):
        module.with_batch_size(0)
    with pytest.raises(TypeError, match="batch_size must be a whole number of at least 1, not 3.5"):
        module.with_batch_size(3.5)
