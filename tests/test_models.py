import ast
from pathlib import Path

import pytest
import torch

from helpers import measure, models
from helpers.models import _registry as registry

# Exact counts of the seed's AllCNN (reference: allconv_and_densenet.md, section 2.3).
ALLCNN_COUNTS = [(32, 100, 354_628), (64, 100, 1_387_044), (96, 100, 3_097_348),
                 (32, 10, 343_018), (64, 10, 1_363_914), (96, 10, 3_062_698)]


@pytest.mark.parametrize("c, classes, expected", ALLCNN_COUNTS)
@pytest.mark.parametrize("residual", [False, True])
def test_allcnn_parameter_counts(c, classes, expected, residual):
    model = models.create("allcnn", c=c, num_classes=classes, residual=residual)
    assert measure.count_parameters(model) == expected


@pytest.mark.parametrize("classes, expected", [(10, 1_369_738), (100, 1_387_108)])
def test_allcnn_c_parameter_counts_match_the_paper_spec(classes, expected):
    model = models.create("allcnn-c", num_classes=classes)
    assert measure.count_parameters(model) == expected


def test_names_lists_both_models():
    assert {"allcnn", "allcnn-c"} <= set(models.names())


def test_unknown_model_lists_valid_names():
    with pytest.raises(ValueError, match=r"unknown model 'allcnn-d'.*allcnn, allcnn-c"):
        models.create("allcnn-d")


def test_unknown_hyperparameter_lists_valid_ones():
    with pytest.raises(ValueError, match=r"'width'.*'allcnn'.*c=32.*num_classes=100.*residual"):
        models.create("allcnn", width=64)


def test_create_records_how_it_built_the_model():
    model = models.create("allcnn", c=16, residual=True)
    assert model.blueprint == {"name": "allcnn", "hparams": {"c": 16, "residual": True}}


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
    assert measure.count_flops(models.create("allcnn", c=64), (3, 32, 32)) == expected


def test_summary_traces_shapes_and_parameters():
    model = models.create("allcnn", c=64)
    table = measure.summary(model, (3, 32, 32))
    assert table["parameters"].sum() == 1_387_044
    shapes = dict(zip(table["layer"], table["output shape"]))
    assert shapes["units.2.0"] == (128, 16, 16)   # first stride-2 conv
    assert shapes["units.5.0"] == (256, 8, 8)     # second stride-2 conv
    assert shapes["classifier"] == (100, 8, 8)    # one map per class
    valid = measure.summary(models.create("allcnn-c"), (3, 32, 32))
    assert dict(zip(valid["layer"], valid["output shape"]))["classifier"] == (10, 6, 6)


# --- the package's shape ---------------------------------------------------------------------

MODELS_DIR = Path(models.__file__).parent


def test_every_builder_is_a_named_class_or_function_findable_by_grep():
    """A preset's builder is a function named after it (densenet-bc-100-k12 ->
    densenet_bc_100_k12), so that grep finds it; a family is built by its class."""
    for name in models.names():
        builder, _ = registry._BUILDERS[name]
        source = (MODELS_DIR / f"{builder.__module__.rsplit('.', 1)[-1]}.py").read_text()
        assert f'@register("{name}"' in source, name
        if not isinstance(builder, type):
            assert builder.__name__ == name.replace("-", "_"), name
            assert builder.__doc__, name


def test_no_model_module_imports_from_the_package_init():
    for path in MODELS_DIR.glob("*.py"):
        tree = ast.parse(path.read_text())
        upward = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                  and node.level == 1 and node.module is None and path.name != "__init__.py"]
        assert not upward, f"{path.name} imports from the package __init__ (line {upward})"


def test_the_package_init_only_imports():
    tree = ast.parse((MODELS_DIR / "__init__.py").read_text())
    kinds = {type(node).__name__ for node in tree.body}
    assert kinds <= {"Expr", "ImportFrom", "Import", "Assign"}  # docstring, imports, __all__
    assert [type(node).__name__ for node in tree.body][-1] == "Assign"  # __all__ after imports


def test_a_preset_fixes_hyperparameters_that_can_still_be_overridden():
    assert models.hyperparameters("preact-resnet")["preact"] is True
    assert models.hyperparameters("resnet")["preact"] is False
    plain = models.create("preact-resnet", preact=False)
    assert measure.count_parameters(plain) == measure.count_parameters(models.create("resnet"))
