import pytest
import torch

from helpers import models

# Exact counts of the seed's AllCNN (reference: allconv_and_densenet.md, section 2.3).
ALLCNN_COUNTS = [(32, 100, 354_628), (64, 100, 1_387_044), (96, 100, 3_097_348),
                 (32, 10, 343_018), (64, 10, 1_363_914), (96, 10, 3_062_698)]


@pytest.mark.parametrize("c, classes, expected", ALLCNN_COUNTS)
@pytest.mark.parametrize("residual", [False, True])
def test_allcnn_parameter_counts(c, classes, expected, residual):
    model = models.create("allcnn", c=c, num_classes=classes, residual=residual)
    assert models.count_parameters(model) == expected


@pytest.mark.parametrize("classes, expected", [(10, 1_369_738), (100, 1_387_108)])
def test_allcnn_c_parameter_counts_match_the_paper_spec(classes, expected):
    model = models.create("allcnn-c", num_classes=classes)
    assert models.count_parameters(model) == expected


def test_names_lists_both_models():
    assert {"allcnn", "allcnn-c"} <= set(models.names())


def test_unknown_model_lists_valid_names():
    with pytest.raises(ValueError, match=r"unknown model 'allcnn-d'.*allcnn, allcnn-c"):
        models.create("allcnn-d")


def test_unknown_hyperparameter_lists_valid_ones():
    with pytest.raises(ValueError, match=r"'width'.*'allcnn'.*c=32.*num_classes=100.*residual"):
        models.create("allcnn", width=64)


def test_create_records_the_spec():
    model = models.create("allcnn", c=16, residual=True)
    assert model.spec == {"name": "allcnn", "hparams": {"c": 16, "residual": True}}


@pytest.mark.parametrize("name", ["allcnn", "allcnn-c"])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 28, 28)])
def test_output_is_batch_by_classes(name, batch, shape):
    """Also for a batch of one, which the seed's .squeeze() turned into a 1-D tensor."""
    model = models.create(name, num_classes=7, in_channels=shape[0]).eval()
    assert model(torch.randn(batch, *shape)).shape == (batch, 7)


def test_residual_shortcuts_change_the_function_not_the_weights():
    torch.manual_seed(0)
    plain = models.create("allcnn", c=8).eval()
    residual = models.create("allcnn", c=8, residual=True).eval()
    residual.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 32, 32)
    assert not torch.allclose(plain(x), residual(x))


def test_seed_head_makes_logits_non_negative_and_drops_class_maps():
    torch.manual_seed(0)
    model = models.create("allcnn", c=8, seed_head=True)
    x = torch.randn(64, 3, 32, 32)
    assert (model.eval()(x) >= 0).all()
    logits = model.train()(x)
    dropped = (logits == 0).float().mean().item()  # dropped maps and ReLU-zeroed ones
    assert dropped > 0.2
    fixed = models.create("allcnn", c=8).eval()
    assert (fixed(x) < 0).any()


def test_flops_match_the_layer_arithmetic():
    """2 x (c_in x c_out x k x k x output pixels), summed over the convolutions, c=64."""
    layers = [(3, 64, 9, 32), (64, 64, 9, 32), (64, 128, 9, 16), (128, 128, 9, 16),
              (128, 128, 9, 16), (128, 256, 9, 8), (256, 256, 9, 8), (256, 256, 1, 8),
              (256, 100, 1, 8)]
    expected = sum(2 * cin * cout * k * size * size for cin, cout, k, size in layers)
    assert models.count_flops(models.create("allcnn", c=64), (3, 32, 32)) == expected


def test_summary_traces_shapes_and_parameters():
    model = models.create("allcnn", c=64)
    table = models.summary(model, (3, 32, 32))
    assert table["parameters"].sum() == 1_387_044
    shapes = dict(zip(table["layer"], table["output shape"]))
    assert shapes["units.2.0"] == (128, 16, 16)   # first stride-2 conv
    assert shapes["units.5.0"] == (256, 8, 8)     # second stride-2 conv
    assert shapes["classifier"] == (100, 8, 8)    # one map per class
    valid = models.summary(models.create("allcnn-c"), (3, 32, 32))
    assert dict(zip(valid["layer"], valid["output shape"]))["classifier"] == (10, 6, 6)
