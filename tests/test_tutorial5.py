"""The four models of UvA Tutorial 5 and their published checkpoints and logs.

The published files are served from ../shared/reference/uvadlc-tutorial5/ by a local HTTP
server; the tests that need them skip when that folder is not beside the checkout."""

import socket
from pathlib import Path

import pandas as pd
import pytest
import torch

from helpers import checkpoints, measure, models, recipes, training
from helpers._machinery import downloads, runs

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "uvadlc-tutorial5"
needs_reference = pytest.mark.skipif(
    not REFERENCE.is_dir(), reason=f"the published Tutorial 5 files are not at {REFERENCE}")
COUNTS = {"googlenet": 260_650, "resnet": 272_378, "preact-resnet": 272_250, "densenet": 239_146}


@pytest.mark.parametrize("name, expected", COUNTS.items())
def test_parameter_counts(name, expected):
    assert measure.count_parameters(models.create(name)) == expected


@pytest.mark.parametrize("name", COUNTS)
@pytest.mark.parametrize("act_fn, module", [("gelu", torch.nn.GELU), ("tanh", torch.nn.Tanh),
                                            ("leakyrelu", torch.nn.LeakyReLU)])
def test_activation_is_selectable(name, act_fn, module):
    model = models.create(name, act_fn=act_fn)
    assert any(isinstance(m, module) for m in model.modules())
    assert not any(isinstance(m, torch.nn.ReLU) for m in model.modules())
    assert measure.count_parameters(model) == COUNTS[name]
    assert model.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_resnet_shapes_and_blocks():
    model = models.create("resnet", num_blocks=(2, 2, 2), c_hidden=(8, 16, 32))
    shapes = measure.summary(model, (3, 32, 32))
    last_conv = shapes[shapes["type"] == "Conv2d"].iloc[-1]
    assert last_conv["output shape"] == (32, 8, 8)
    pre = models.create("preact-resnet")
    assert type(pre.blocks[0]).__name__ == "PreActResNetBlock" and len(pre.input_net) == 1


@pytest.fixture
def published(server, monkeypatch):
    """The reference folder served on 127.0.0.1, and the course pointed at it, online."""
    if not REFERENCE.is_dir():
        pytest.skip(f"the published Tutorial 5 files are not at {REFERENCE}")
    for path in REFERENCE.rglob("*"):
        if path.is_file():
            server.serve("/" + path.relative_to(REFERENCE).as_posix(), path.read_bytes())
    monkeypatch.setenv("COURSE_TUTORIAL5_URL", server.url("/"))
    monkeypatch.delenv("COURSE_OFFLINE")
    return server


@pytest.mark.parametrize("name", COUNTS)
def test_published_checkpoints_load_strictly(published, name, course_env):
    run = checkpoints.load_tutorial5(name)
    assert not run.model.training and measure.count_parameters(run.model) == COUNTS[name]
    state = torch.load(REFERENCE / models.weights.TUTORIAL5[name].checkpoint, map_location="cpu",
                       weights_only=True)
    published_keys = {key.removeprefix("model.") for key in state["state_dict"]}
    assert set(run.model.state_dict()) == published_keys
    saved = course_env / "saved_models" / f"tutorial5-{name}" / "best.ckpt"
    published = REFERENCE / models.weights.TUTORIAL5[name].checkpoint
    assert saved.read_bytes() == published.read_bytes()
    assert run.provenance.startswith("published checkpoint http://127.0.0.1")


@needs_reference
def test_densenet_concatenates_new_maps_before_its_input():
    """The published DenseNet's second layer normalised its input with running means whose
    channels 16-47 are the stem's: our model must put the stem's maps there too. With zero-mean
    inputs (as normalised CIFAR-10 is) a convolution's mean output is its bias."""
    model = models.create("densenet")
    runs.load_weights(REFERENCE / "DenseNet.ckpt", model)
    norm = model.blocks[0].block[1].net[0]
    seen = {}
    norm.register_forward_hook(lambda module, inputs, output: seen.update(x=inputs[0]))
    torch.manual_seed(0)
    with torch.no_grad():
        model.eval()(torch.randn(64, 3, 32, 32))
    means = seen["x"].mean(dim=(0, 2, 3))
    assert torch.allclose(means[16:], norm.running_mean[16:], atol=0.1)
    assert not torch.allclose(means[:32], norm.running_mean[:32], atol=0.1)


def test_a_wrong_hash_is_refused(published, course_env):
    published.serve("/ResNet.ckpt", (REFERENCE / "ResNetPreAct.ckpt").read_bytes())
    with pytest.raises(downloads.DownloadError, match="ResNet.ckpt arrived with sha256 .*"
                                                        "expected c16348ee.*nothing was saved"):
        checkpoints.load_tutorial5("resnet")
    assert not (course_env / "saved_models" / "tutorial5-resnet").exists()


def test_a_truncated_download_is_refused(published, course_env):
    published.serve("/DenseNet.ckpt", (REFERENCE / "DenseNet.ckpt").read_bytes(), "truncate")
    with pytest.raises(downloads.DownloadError, match="DenseNet.ckpt was truncated"):
        checkpoints.load_tutorial5("densenet")
    assert not (course_env / "saved_models" / "tutorial5-densenet").exists()


def test_no_network_says_so_in_one_line_and_trains_instead(monkeypatch, capsys):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("COURSE_TUTORIAL5_URL", f"http://127.0.0.1:{port}/")
    monkeypatch.delenv("COURSE_OFFLINE")
    from helpers import data
    module = data.ImageDataModule("CIFAR10", smoke=True, subset=(128, 64, 64))
    run = checkpoints.load_tutorial5("resnet", data=module, epochs=1, enable_progress_bar=False)
    assert len(run.history) == 1 and run.info["smoke_run"]
    lines = [line for line in capsys.readouterr().out.splitlines() if "ResNet.ckpt" in line]
    assert len(lines) == 1 and lines[0].startswith(f"No network: could not reach "
                                                   f"http://127.0.0.1:{port}/ResNet.ckpt")
    with pytest.raises(checkpoints.CheckpointError, match="tutorial5-googlenet .*download was"):
        checkpoints.load_tutorial5("googlenet")


def test_offline_skips_with_one_line_and_says_what_is_missing(capsys):
    with pytest.raises(checkpoints.CheckpointError,
                       match="no checkpoint for tutorial5-resnet .*download was skipped"):
        checkpoints.load_tutorial5("resnet")
    assert capsys.readouterr().out.count("skipped downloading") == 1
    assert checkpoints.tutorial5_log("resnet") is None


def test_unknown_published_model_lists_the_valid_ones():
    with pytest.raises(ValueError, match="'vgg'.*googlenet, resnet, preact-resnet, densenet"):
        checkpoints.load_tutorial5("vgg")


@needs_reference
def test_published_logs_are_read_with_tensorboards_reader(published):
    log = checkpoints.tutorial5_log("resnet")
    per_tag = log.groupby("tag")["value"]
    assert per_tag.size()["val_acc"] == 180 and per_tag.size()["lr"] == 180
    lr = log[log["tag"] == "lr"].set_index("epoch")["value"]
    assert lr[0] == pytest.approx(0.1) and lr[100] == pytest.approx(0.01)
    assert lr[179] == pytest.approx(0.001)
    val = log[log["tag"] == "val_acc"]
    assert val["epoch"].min() == 1 and val["epoch"].max() == 180
    assert log[log["tag"] == "test_acc"]["value"].round(4).tolist() == [0.9162, 0.9106]


@needs_reference
def test_a_corrupt_local_log_is_named(published, course_env):
    path = course_env / "saved_models" / "tutorial5-resnet" / "tensorboard"
    path.mkdir(parents=True)
    (path / "events.out.tfevents.resnet").write_bytes(b"garbage")
    with pytest.raises(checkpoints.CheckpointError, match="events.out.tfevents.resnet has sha256"):
        checkpoints.tutorial5_log("resnet")


def test_our_own_runs_tensorboard_logs_read_back(course_env):
    from helpers import data
    module = data.ImageDataModule("CIFAR10", smoke=True, subset=(128, 64, 64))
    training.seed(0)
    run = training.fit(models.create("allcnn", c=4, num_classes=10), module,
                       recipes.get_recipe("sgd-cosine", batch_size=64), name="logged", epochs=2,
                       enable_progress_bar=False)
    scalars = downloads.tensorboard_scalars(run.directory / "logs" / "tensorboard")
    val = scalars[scalars["tag"] == "val_acc"]["value"].tolist()
    assert val == pytest.approx(run.history["val_acc"].tolist())


@pytest.mark.parametrize("name, expected", [("tutorial5-sgd", "sgd"), ("tutorial5-adamw", "adamw")])
def test_tutorial5_recipes(name, expected):
    recipe = recipes.get_recipe(name)
    assert (recipe.optimizer, recipe.epochs, recipe.batch_size) == (expected, 180, 128)
    lr = [recipes.lr_factor(recipe, epoch + 0.5, 180) for epoch in (99, 100, 149, 150)]
    assert lr == pytest.approx([1, 0.1, 0.1, 0.01])
    assert isinstance(recipes.recipes_table(), pd.DataFrame)
