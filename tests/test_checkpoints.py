import hashlib
import io
import re
import time

import pytest
import torch

from helpers import checkpoints, data, models, recipes, training
from helpers._machinery import downloads


def _published(seed=1):
    """A model and its weights as a published Lightning checkpoint (keys prefixed 'model.')."""
    torch.manual_seed(seed)
    model = models.create("allcnn", c=4, num_classes=10)
    buffer = io.BytesIO()
    torch.save({"epoch": 3, "state_dict": {f"model.{k}": v for k, v in
                                           model.state_dict().items()}}, buffer)
    body = buffer.getvalue()
    return model, body, hashlib.sha256(body).hexdigest()


def _fresh():
    torch.manual_seed(0)
    return models.create("allcnn", c=4, num_classes=10)


def _same_weights(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                 b.state_dict().values()))


def _leftovers(folder):
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


# --- download -------------------------------------------------------------------------------

def test_download_a_good_file(tmp_path, monkeypatch, server):
    monkeypatch.delenv("COURSE_OFFLINE")
    _, body, digest = _published()
    target = tmp_path / "out" / "model.ckpt"
    downloads.download(server.serve("/m.ckpt", body), target, digest)
    assert target.read_bytes() == body and _leftovers(tmp_path / "out") == ["model.ckpt"]


def test_the_progress_bar_names_what_is_downloaded(tmp_path, monkeypatch, server, capsys):
    monkeypatch.delenv("COURSE_OFFLINE")
    _, body, digest = _published()
    downloads.download(server.serve("/m.ckpt", body), tmp_path / "best.ckpt", digest,
                         what="tutorial5-resnet")
    assert "downloading tutorial5-resnet" in capsys.readouterr().err


def test_a_truncated_download_leaves_nothing(tmp_path, monkeypatch, server):
    monkeypatch.delenv("COURSE_OFFLINE")
    _, body, digest = _published()
    url = server.serve("/m.ckpt", body, behaviour="truncate")
    with pytest.raises(downloads.DownloadError, match="m.ckpt.*nothing was saved"):
        downloads.download(url, tmp_path / "out" / "deeper" / "model.ckpt", digest)
    assert not (tmp_path / "out").exists()  # not even the folders made for it


def test_a_wrong_sha256_leaves_nothing(tmp_path, monkeypatch, server):
    monkeypatch.delenv("COURSE_OFFLINE")
    _, body, _ = _published()
    url = server.serve("/m.ckpt", body)
    with pytest.raises(downloads.DownloadError, match=f"expected {'0' * 64}.*nothing was saved"):
        downloads.download(url, tmp_path / "out" / "model.ckpt", "0" * 64)
    assert not (tmp_path / "out").exists()


def test_a_missing_file_is_a_clear_error(tmp_path, monkeypatch, server):
    monkeypatch.delenv("COURSE_OFFLINE")
    with pytest.raises(downloads.DownloadError, match="absent.ckpt answered 404.*check the URL"):
        downloads.download(server.url("/absent.ckpt"), tmp_path / "model.ckpt")
    assert _leftovers(tmp_path) == []


def test_download_refuses_when_offline(tmp_path, server):
    with pytest.raises(downloads.DownloadError, match="COURSE_OFFLINE"):
        downloads.download(server.serve("/m.ckpt", b"x"), tmp_path / "m.ckpt")
    assert server.requests == []


def test_offline_still_copies_from_a_local_folder(tmp_path, course_env, capsys):
    """COURSE_OFFLINE forbids the network, not a file:// mirror (make test uses one)."""
    published, body, digest = _published()
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "m.ckpt").write_bytes(body)
    url = (mirror / "m.ckpt").as_uri()
    run = checkpoints.load_or_train(_fresh(), url=url, sha256=digest, name="tiny")
    assert _same_weights(run.model, published) and "skipped" not in capsys.readouterr().out
    with pytest.raises(downloads.DownloadError, match="sha256"):
        downloads.download(url, tmp_path / "copy.ckpt", sha256="0" * 64)
    assert not (tmp_path / "copy.ckpt").exists()


# --- load_or_train --------------------------------------------------------------------------

def test_load_or_train_downloads_then_loads_locally(course_env, monkeypatch, server, capsys):
    monkeypatch.delenv("COURSE_OFFLINE")
    published, body, digest = _published()
    url = server.serve("/m.ckpt", body)
    run = checkpoints.load_or_train(_fresh(), url=url, sha256=digest, name="tiny")
    assert _same_weights(run.model, published) and not run.model.training
    assert (course_env / "saved_models" / "tiny" / "best.ckpt").read_bytes() == body
    server.requests.clear()
    again = checkpoints.load_or_train(_fresh(), url=url, sha256=digest, name="tiny")
    assert _same_weights(again.model, published) and server.requests == []
    assert "Loaded tiny from" in capsys.readouterr().out


def test_offline_skips_the_download_with_one_line_and_trains(server, capsys):
    _, body, digest = _published()
    url = server.serve("/m.ckpt", body)
    module = data.ImageDataModule("CIFAR10", smoke=True, subset=(128, 64, 64))
    recipe = recipes.get_recipe("sgd-cosine", batch_size=64)
    run = checkpoints.load_or_train(_fresh(), module, recipe, url=url, sha256=digest,
                                    epochs=1, enable_progress_bar=False, name="tiny")
    assert server.requests == [] and len(run.history) == 1
    lines = [line for line in capsys.readouterr().out.splitlines() if "m.ckpt" in line]
    assert lines == [f"COURSE_OFFLINE is set: skipped downloading tiny from {url}."]


def test_nothing_to_load_and_nothing_to_train_with_is_an_error():
    with pytest.raises(checkpoints.CheckpointError, match="no checkpoint for tiny"):
        checkpoints.load_or_train(_fresh(), name="tiny")


def _place(course_env, body: bytes):
    path = course_env / "saved_models" / "tiny" / "best.ckpt"
    path.parent.mkdir(parents=True)
    path.write_bytes(body)
    return path


def test_a_corrupt_checkpoint_names_the_file_and_the_remedy(course_env):
    path = _place(course_env, b"this is not a checkpoint")
    with pytest.raises(checkpoints.CheckpointError, match=f"{path} is not a readable.*Delete"):
        checkpoints.load_or_train(_fresh(), name="tiny")


def test_a_local_file_with_the_wrong_hash_is_refused(course_env):
    _, body, digest = _published()
    middle = len(body) // 2
    path = _place(course_env, body[:middle] + bytes([body[middle] ^ 1]) + body[middle + 1:])
    with pytest.raises(checkpoints.CheckpointError, match=f"{path} has sha256.*Delete {path}"):
        checkpoints.load_or_train(_fresh(), sha256=digest, name="tiny")


def test_a_checkpoint_of_another_architecture_is_refused(course_env):
    _, body, _ = _published()
    path = _place(course_env, body)
    with pytest.raises(checkpoints.CheckpointError, match=f"{path} does not fit this model"):
        checkpoints.load_or_train(models.create("allcnn", c=8, num_classes=10), name="tiny")


def test_an_interrupted_run_is_resumed_not_loaded(course_env, monkeypatch):
    module = data.ImageDataModule("CIFAR10", smoke=True, val_size=1000, subset=(128, 64, 64))
    module.setup()  # on the smoke-mode stand-in
    monkeypatch.setenv("COURSE_MODE", "full")  # so that the run lands in saved_models/
    recipe = recipes.get_recipe("sgd-cosine", batch_size=64, epochs=2)
    training.fit(_fresh(), module, recipe, name="tiny", enable_progress_bar=False)
    (course_env / "saved_models" / "tiny" / "run.json").unlink()  # as if killed before the end
    called = []
    monkeypatch.setattr(training, "fit", lambda *args, **kwargs: called.append(kwargs["name"]))
    checkpoints.load_or_train(_fresh(), module, recipe, name="tiny")
    assert called == ["tiny"]


# --- deadlines and bad URLs -----------------------------------------------------------------

def test_a_trickling_download_stops_at_its_deadline(tmp_path, monkeypatch, server):
    monkeypatch.delenv("COURSE_OFFLINE")
    url = server.serve("/slow.ckpt", bytes(100), behaviour="slow")  # one byte a second
    started = time.monotonic()
    with pytest.raises(downloads.DownloadError, match=r"slow.ckpt exceeded its deadline of 2 s "
                                                        r"after \d bytes; nothing was saved"):
        downloads.download(url, tmp_path / "out" / "model.ckpt", deadline=2)
    assert time.monotonic() - started < 4.5
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("url", ["htp:/nowhere/m.ckpt", "not a url", "http:///m.ckpt",
                                 "https://[::1/m.ckpt", "file://elsewhere/m.ckpt"])
def test_a_malformed_url_is_a_configuration_error_not_no_network(tmp_path, monkeypatch, url):
    monkeypatch.delenv("COURSE_OFFLINE")
    with pytest.raises(downloads.ConfigurationError,
                       match=f"the URL '{re.escape(url)}' is not a URL to download from"):
        downloads.download(url, tmp_path / "m.ckpt")
    assert _leftovers(tmp_path) == []


def test_a_malformed_url_is_an_error_also_offline(capsys):
    with pytest.raises(downloads.ConfigurationError, match="'htp:/x.ckpt'.*scheme 'htp'"):
        checkpoints.load_or_train(_fresh(), url="htp:/x.ckpt", name="tiny")
    assert "skipped" not in capsys.readouterr().out


def test_a_file_url_downloads_or_names_the_missing_file(tmp_path, monkeypatch):
    monkeypatch.delenv("COURSE_OFFLINE")
    _, body, digest = _published()
    (tmp_path / "mirror").mkdir()
    (tmp_path / "mirror" / "m.ckpt").write_bytes(body)
    target = tmp_path / "out" / "m.ckpt"
    downloads.download((tmp_path / "mirror" / "m.ckpt").as_uri(), target, digest)
    assert target.read_bytes() == body
    missing = tmp_path / "mirror" / "absent.ckpt"
    with pytest.raises(downloads.DownloadError, match=f"cannot read {missing.as_uri()} .*No such "
                                                        f"file.*nothing was saved") as error:
        downloads.download(missing.as_uri(), tmp_path / "out" / "absent.ckpt")
    assert not isinstance(error.value, downloads.NoNetworkError)


def _train_instead(monkeypatch):
    monkeypatch.setattr(training, "fit", lambda *args, **kwargs: pytest.fail("trained instead"))


@pytest.mark.parametrize("base, message", [
    ("htp:/nowhere", "COURSE_TUTORIAL5_URL='htp:/nowhere' is not a URL.*scheme 'htp'"),
    ("not a url", "COURSE_TUTORIAL5_URL='not a url' is not a URL.*scheme ''"),
    ("http://", "COURSE_TUTORIAL5_URL='http://' is not a URL.*no host"),
    ("file:///nowhere/mirror/", "COURSE_TUTORIAL5_URL='file:///nowhere/mirror/' names the folder "
                                "/nowhere/mirror, which does not exist.*unset it")])
def test_a_bad_tutorial5_mirror_is_named_not_mistaken_for_no_network(monkeypatch, capsys, base,
                                                                    message):
    monkeypatch.setenv("COURSE_TUTORIAL5_URL", base)
    monkeypatch.delenv("COURSE_OFFLINE")
    _train_instead(monkeypatch)
    module = data.ImageDataModule("CIFAR10", smoke=True, subset=(128, 64, 64))
    with pytest.raises(downloads.ConfigurationError, match=message):
        checkpoints.load_tutorial5("resnet", data=module)
    with pytest.raises(downloads.ConfigurationError, match=message):
        checkpoints.tutorial5_log("resnet")
    assert "No network" not in capsys.readouterr().out


def test_a_tutorial5_folder_without_the_file_names_it(tmp_path, monkeypatch, capsys):
    (tmp_path / "mirror").mkdir()
    monkeypatch.setenv("COURSE_TUTORIAL5_URL", (tmp_path / "mirror").as_uri())
    monkeypatch.delenv("COURSE_OFFLINE")
    _train_instead(monkeypatch)
    module = data.ImageDataModule("CIFAR10", smoke=True, subset=(128, 64, 64))
    url = downloads.tutorial5_url("ResNet.ckpt")
    assert url == (tmp_path / "mirror" / "ResNet.ckpt").as_uri()
    with pytest.raises(downloads.DownloadError, match="cannot read .*mirror/ResNet.ckpt .*"
                                                        "No such file") as error:
        checkpoints.load_tutorial5("resnet", data=module)
    assert not isinstance(error.value, downloads.NoNetworkError)
    assert "No network" not in capsys.readouterr().out
