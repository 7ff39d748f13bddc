from pathlib import Path

import pytest
import torch

from helpers import measure, models
from helpers._machinery import runs
from helpers.models.densenet import DenseNet, densenet, layers_per_block

# Published configurations: exact counts and channel traces (allconv_and_densenet.md, 4.2).
PAPER = [  # depth, k, BC, params (10 classes), params (100 classes), trace
    (40, 12, False, 1_019_722, 1_060_132, [16, 160, 160, 304, 304, 448]),
    (100, 12, False, 6_979_642, 7_084_852, [16, 400, 400, 784, 784, 1168]),
    (100, 24, False, 27_249_082, 27_457_972, [16, 784, 784, 1552, 1552, 2320]),
    (100, 12, True, 769_162, 800_032, [24, 216, 108, 300, 150, 342]),
    (250, 24, True, 15_324_406, 15_480_556, [48, 1032, 516, 1500, 750, 1734]),
    (190, 40, True, 25_624_430, 25_821_620, [80, 1320, 660, 1900, 950, 2190]),
]


@pytest.mark.parametrize("depth, k, bc, c10, c100, trace", PAPER)
def test_paper_configurations_have_the_published_counts(depth, k, bc, c10, c100, trace):
    model = densenet(depth, k, bc)
    assert model.widths == trace
    assert measure.count_parameters(model) == c10
    assert measure.count_parameters(densenet(depth, k, bc, num_classes=100)) == c100


@pytest.mark.parametrize("name, c10, c100", [("densenet-40-k12", 1_019_722, 1_060_132),
                                             ("densenet-bc-100-k12", 769_162, 800_032)])
def test_presets(name, c10, c100):
    assert measure.count_parameters(models.create(name)) == c10
    assert measure.count_parameters(models.create(name, num_classes=100)) == c100
    assert measure.count_parameters(models.create(name, dropout=0.2)) == c10


@pytest.mark.parametrize("bottleneck, compression, expected", [
    (0, 1.0, 1_019_722), (48, 1.0, 721_642), (0, 0.5, 578_090), (48, 0.5, 475_850)])
def test_seed_002_models_come_from_the_same_class(bottleneck, compression, expected):
    """Seed 002's "DenseNet40_12" is the B+C row: 3 x 12 bottleneck layers, 76 weighted layers."""
    model = DenseNet(block_config=(12, 12, 12), growth_rate=12, bottleneck_width=bottleneck,
                     compression=compression, stem_channels=16, stem_bias=False)
    assert measure.count_parameters(model) == expected


def test_seed_002_four_block_model_and_the_tutorial_default():
    custom = DenseNet(block_config=(15, 15, 15, 15), growth_rate=12, bottleneck_width=48,
                      compression=0.5, stem_channels=24, stem_bias=False)
    assert measure.count_parameters(custom) == 1_007_332
    assert custom.widths == [24, 204, 102, 282, 141, 321, 160, 340]
    tutorial = models.create("densenet")
    assert measure.count_parameters(tutorial) == 239_146
    assert tutorial.widths == [32, 128, 64, 160, 80, 176, 88, 184]


@pytest.mark.parametrize("depth, bottleneck, n", [(40, False, 12), (100, False, 32),
                                                  (100, True, 16), (250, True, 41),
                                                  (190, True, 31), (76, True, 12)])
def test_depth_to_layers_per_block(depth, bottleneck, n):
    assert layers_per_block(depth, bottleneck) == n


def test_an_impossible_depth_says_what_would_fit():
    with pytest.raises(ValueError, match=r"depth 41 .*must be 4 \+ a multiple of 3"):
        layers_per_block(41, bottleneck=False)
    with pytest.raises(ValueError, match=r"42 does not fit 3 blocks of bottleneck layers.* 6 "):
        layers_per_block(42, bottleneck=True)


def test_unknown_activation_lists_the_valid_ones():
    with pytest.raises(ValueError, match="'swish'.*relu, leakyrelu, tanh, gelu"):
        models.create("densenet", act_fn="swish")


@pytest.mark.parametrize("name", ["densenet", "densenet-40-k12", "densenet-bc-100-k12"])
@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 28, 28)])
def test_output_shape(name, shape):
    model = models.create(name, num_classes=7, in_channels=shape[0]).eval()
    assert model(torch.randn(2, *shape)).shape == (2, 7)


def _tiny(memory_efficient, bottleneck_width=8, dropout=0.2):
    torch.manual_seed(0)
    return DenseNet(block_config=(3, 3), growth_rate=4, bottleneck_width=bottleneck_width,
                    stem_channels=8, dropout=dropout, memory_efficient=memory_efficient).train()


@pytest.mark.parametrize("bottleneck_width", [0, 8])
def test_memory_efficient_variant_equals_the_plain_one(bottleneck_width):
    """Same outputs, same gradients (weights and input), same BatchNorm statistics: the
    recomputation in the backward pass neither changes the dropout masks nor counts a batch
    twice."""
    plain, efficient = _tiny(False, bottleneck_width), _tiny(True, bottleneck_width)
    x = torch.randn(6, 3, 16, 16)
    outputs, inputs = [], []
    for model in (plain, efficient):
        torch.manual_seed(1)
        x_copy = x.clone().requires_grad_()
        out = model(x_copy)
        out.square().sum().backward()
        outputs.append(out)
        inputs.append(x_copy.grad)
    assert torch.allclose(outputs[0], outputs[1], atol=1e-6)
    assert torch.allclose(inputs[0], inputs[1], atol=1e-5)
    for (name, a), (_, b) in zip(plain.named_parameters(), efficient.named_parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-5), name
    for (name, a), (_, b) in zip(plain.named_buffers(), efficient.named_buffers()):
        assert torch.equal(a, b), name


def test_memory_efficient_variant_stores_less():
    plain = measure.peak_step_memory("densenet-bc-100-k12", [32])
    if plain["peak_mib"][32] is None:
        pytest.skip(f"peak memory cannot be measured here: {plain['method']}")
    efficient = measure.peak_step_memory("densenet-bc-100-k12", [32], memory_efficient=True)
    assert plain["peak_mib"][32] > 2 * efficient["peak_mib"][32] > 0
    assert plain["method"] == "peak resident memory (Linux VmHWM)" == efficient["method"]


TUTORIAL = Path(__file__).resolve().parents[2] / "shared" / "reference" / "uvadlc-tutorial5"


@pytest.mark.skipif(not (TUTORIAL / "DenseNet.ckpt").exists(),
                    reason="the published Tutorial 5 checkpoints are not beside the checkout")
def test_the_tutorial_default_loads_the_published_densenet_strictly():
    checkpoint = runs.load_weights(TUTORIAL / "DenseNet.ckpt", models.create("densenet"))
    assert checkpoint["hyper_parameters"]["model_hparams"]["num_layers"] == [6, 6, 6, 6]
