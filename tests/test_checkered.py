import itertools
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from helpers.models import checkered
from helpers import measure, models, plots
from helpers.models.checkered import (CheckeredAvgPool2d, CheckeredConv2d, CheckeredMaxPool2d,
    ConversionError, SubmapMeanPool, convert_to_checkered, sampled_pixels, sampler_sequence)

from loading import ROOT, load_script

benchmark = load_script(ROOT / "benchmarks" / "checkered_layer.py")

# The original repository's lattice table, as quoted in the reference notes (first five steps).
PUBLISHED_LATTICE = {1: [0], 2: [0, 0], 4: [0, 1, 0, 1], 8: [0, 1, 1, 0, 0, 0, 1, 1],
                     16: [0, 0, 1, 0, 1, 0, 0, 1, 0, 1, 0, 0, 1, 0, 1, 0]}
# Its next four entries, as the notes describe them: runs of equal samplers (sampler, length), read
# left to right over the submaps. The tenth, for 512 submaps, alternates 0 and 1.
PUBLISHED_LATTICE_RUNS = {
    32: [(0, 3), (1, 2)] * 6 + [(0, 2)],
    64: [(0, 5), (1, 5)] * 6 + [(0, 4)],
    128: [(0, 10), (1, 10), (0, 10), (1, 10), (0, 10), (1, 10), (0, 9), (1, 10), (0, 10),
          (1, 10), (0, 10), (1, 10), (0, 9)],
    256: [(0, 20), (1, 20), (0, 20), (1, 19), (0, 20), (1, 20), (0, 19), (1, 20), (0, 20),
          (1, 19), (0, 20), (1, 20), (0, 19)]}
TABLE_SIZES = "1, 2, 4, 8, 16, 32, 64, 128, 256, 512"


# --- samplers --------------------------------------------------------------------------------

@pytest.mark.parametrize("submaps, expected", PUBLISHED_LATTICE.items())
def test_lattice_reproduces_the_published_sequences(submaps, expected):
    assert sampler_sequence(submaps, "lattice") == expected


@pytest.mark.parametrize("submaps, runs", PUBLISHED_LATTICE_RUNS.items())
def test_lattice_reproduces_the_published_runs(submaps, runs):
    sequence = sampler_sequence(submaps, "lattice")
    assert len(sequence) == submaps == sum(length for _, length in runs)
    assert [(sampler, len(list(run))) for sampler, run in itertools.groupby(sequence)] == runs


def test_lattice_512_is_a_plain_alternation():
    assert sampler_sequence(512, "lattice") == [0, 1] * 256


def test_lattice_has_an_entry_for_each_of_the_ten_steps_and_no_more():
    for step in range(10):
        sequence = sampler_sequence(2 ** step, "lattice")
        assert len(sequence) == 2 ** step and set(sequence) <= {0, 1}
    assert checkered._LATTICE_TABLE.keys() == {2 ** step for step in range(10)}


def test_spread_is_the_table_for_five_steps_then_its_own_rule():
    for submaps in (1, 2, 4, 8, 16):
        assert sampler_sequence(submaps, "spread") == PUBLISHED_LATTICE[submaps]
    lattice, spread = sampler_sequence(32, "lattice"), sampler_sequence(32, "spread")
    # At the sixth step (32 submaps) every odd submap gets the other sampler, the first being
    # submap 1: 0 in the table, 1 by the rule.
    assert [i for i in range(32) if lattice[i] != spread[i]] == list(range(1, 32, 2))
    assert (lattice[1], spread[1]) == (0, 1)
    for submaps, differing in ((64, 32), (128, 64), (256, 128), (512, 268)):
        lattice, spread = sampler_sequence(submaps, "lattice"), sampler_sequence(submaps, "spread")
        assert sum(a != b for a, b in zip(lattice, spread)) == differing
    assert len(sampler_sequence(1024, "spread")) == 1024  # the rule has no last step


def test_lattice_beyond_the_table_names_the_valid_counts_and_the_alternative():
    with pytest.raises(ValueError, match=f"no entry .* got 1024; valid: {TABLE_SIZES} .*"
                                         f"sampling='spread', the course's own rule"):
        sampler_sequence(1024, "lattice")
    with pytest.raises(ValueError, match=f"power-of-two number of submaps, got 48; valid: "
                                         f"{TABLE_SIZES} .*sampling='spread'"):
        sampler_sequence(48, "lattice")
    with pytest.raises(ValueError, match="spread sampling needs a power-of-two .*, got 3"):
        sampler_sequence(3, "spread")
    layer = CheckeredMaxPool2d(1, stride=2, sampling="lattice")
    with pytest.raises(ValueError, match="got 1024; valid:"):
        layer(torch.zeros(1, 1, 1024, 2, 2))
    assert CheckeredMaxPool2d(1, 2, sampling="spread")(torch.zeros(1, 1, 1024, 2, 2)).shape == (
        1, 1, 2048, 1, 1)


def test_naive_and_random_sequences():
    assert sampler_sequence(8, "naive") == [0] * 8
    random = sampler_sequence(64, "random")
    assert random == sampler_sequence(64, "random") and 10 < sum(random) < 54


def test_bad_sampling_arguments():
    with pytest.raises(ValueError, match="'diagonal'.*naive, lattice, random"):
        sampler_sequence(4, "diagonal")
    with pytest.raises(ValueError, match="^unknown sampling 'lattice2'; valid: naive, lattice, "
                                         "random, spread$"):
        sampler_sequence(4, "lattice2")
    with pytest.raises(ValueError, match="power-of-two number of submaps, got 3"):
        sampler_sequence(3, "lattice")
    with pytest.raises(ValueError, match="stride must be 1 or 2 .*, got 3"):
        CheckeredConv2d(3, 3, 3, stride=3)


# --- the layer -------------------------------------------------------------------------------

@pytest.mark.parametrize("stride, depth, expected", [
    (1, 1, (2, 8, 4, 9, 9)), (2, 1, (2, 8, 8, 5, 5)), (1, 2, (2, 8, 3, 9, 9)),
    (2, 2, (2, 8, 6, 5, 5))])
def test_shapes(stride, depth, expected):
    layer = CheckeredConv2d(3, 8, 3, stride=stride, padding=1, depth=depth)
    assert layer(torch.randn(2, 3, 4, 9, 9)).shape == expected


@pytest.mark.parametrize("depth", [1, 2])
def test_parameters_are_those_of_the_plain_convolution(depth):
    plain = nn.Conv2d(16 * depth, 32, 3)
    assert (measure.count_parameters(CheckeredConv2d(16, 32, 3, depth=depth))
            == measure.count_parameters(plain))


@pytest.mark.parametrize("kernel, padding", [(3, 1), (1, 0), (5, 2)])
@pytest.mark.parametrize("size", [8, 9])
def test_submap_0_is_the_ordinary_stride_2_convolution(kernel, padding, size):
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 5, kernel, stride=2, padding=padding).double()
    layer = convert_to_checkered(nn.Sequential(conv), input_shape=(3, size, size)).model[0]
    x = torch.randn(2, 3, size, size, dtype=torch.float64)
    out = layer(x.unsqueeze(2))
    assert out.shape[2] == 2 and torch.allclose(out[:, :, 0], conv(x), atol=1e-12)


def test_each_sampler_keeps_its_diagonal_of_the_stride_1_output():
    """Sampler 0 keeps (even, even) and (odd, odd) positions; sampler 1 (even, odd) and
    (odd, even). With lattice sampling of 4 submaps both kinds occur."""
    torch.manual_seed(0)
    layer = CheckeredConv2d(3, 4, 3, stride=2, padding=1, sampling="lattice").double()
    x = torch.randn(2, 3, 4, 8, 8, dtype=torch.float64)
    out = layer(x)
    full = F.conv3d(x, layer.weight, layer.bias, padding=(0, 1, 1))  # stride 1, every position
    for submap, sampler in enumerate(sampler_sequence(4, "lattice")):
        first = full[:, :, submap, 0::2, 1::2] if sampler else full[:, :, submap, 0::2, 0::2]
        second = full[:, :, submap, 1::2, 0::2] if sampler else full[:, :, submap, 1::2, 1::2]
        assert torch.allclose(out[:, :, submap], first, atol=1e-12)
        assert torch.allclose(out[:, :, 4 + submap], second, atol=1e-12)


@pytest.mark.parametrize("sampling", ["naive", "lattice", "random", "spread"])
def test_the_course_layer_equals_the_original_four_shift_algorithm(sampling):
    torch.manual_seed(0)
    layer = CheckeredConv2d(6, 5, 3, stride=2, padding=1, sampling=sampling).double()
    x = torch.randn(3, 6, 8, 10, 10, dtype=torch.float64)
    assert torch.allclose(layer(x), benchmark.four_shift_conv(x, layer), atol=1e-12)


def test_depth_2_mixes_neighbouring_submaps_like_a_3d_convolution():
    torch.manual_seed(0)
    layer = CheckeredConv2d(3, 4, 3, padding=1, depth=2).double()
    x = torch.randn(2, 3, 4, 6, 6, dtype=torch.float64)
    reference = F.conv3d(x, layer.weight, layer.bias, padding=(0, 1, 1))
    assert torch.allclose(layer(x), reference, atol=1e-12)


def test_max_pooling_pads_with_minus_infinity():
    x = -1 - torch.rand(2, 3, 1, 8, 8)  # all negative: zero padding would win at the borders
    out = CheckeredMaxPool2d(3, stride=2, padding=1)(x)
    assert torch.equal(out[:, :, 0], F.max_pool2d(x[:, :, 0], 3, stride=2, padding=1))
    assert (out < 0).all()


def test_average_pooling_submap_0_is_the_ordinary_pooling():
    x = torch.randn(2, 3, 1, 8, 8)
    out = CheckeredAvgPool2d(2)(x)
    assert out.shape == (2, 3, 2, 4, 4)
    assert torch.allclose(out[:, :, 0], F.avg_pool2d(x[:, :, 0], 2))
    shifted = F.pad(x[:, :, 0, 1:, 1:], (0, 1, 0, 1))  # windows from (1, 1): a zero border
    assert torch.allclose(out[:, :, 1], F.avg_pool2d(shifted, 2))


# Options that torch would accept for a while or fail on deep inside: (layer, args, keyword
# arguments, error, message).
BAD_OPTIONS = [
    (CheckeredConv2d, (3, 4, 3), {"depth": 0}, ValueError,
     "depth must be a whole number of at least 1, got 0"),
    (CheckeredConv2d, (3, 4, 3), {"depth": -1}, ValueError,
     "depth must be a whole number of at least 1, got -1"),
    (CheckeredConv2d, (3, 4, 3), {"depth": 1.5}, TypeError,
     "depth must be a whole number of at least 1, got 1.5"),
    (CheckeredConv2d, (0, 4, 3), {}, ValueError,
     "in_channels must be a whole number of at least 1, got 0"),
    (CheckeredConv2d, (3, -4, 3), {}, ValueError,
     "out_channels must be a whole number of at least 1, got -4"),
    (CheckeredConv2d, (3, 4, 0), {}, ValueError,
     "kernel_size must be a whole number of at least 1 or a pair of them, got 0"),
    (CheckeredConv2d, (3, 4, (3, 3, 3)), {}, ValueError,
     "kernel_size must be a whole number of at least 1 or a pair of them, got \\(3, 3, 3\\)"),
    (CheckeredConv2d, (3, 4, 3), {"padding": -1}, ValueError,
     "padding must be a whole number of at least 0 or a pair of them, got -1"),
    (CheckeredConv2d, (3, 4, 3), {"padding": "same"}, TypeError,
     "padding must be a whole number of at least 0 or a pair of them, got 'same'"),
    (CheckeredConv2d, (3, 4, 3), {"dilation": 0}, ValueError,
     "dilation must be a whole number of at least 1 or a pair of them, got 0"),
    (CheckeredConv2d, (3, 4, 3), {"groups": 2}, ValueError,
     "groups must divide in_channels \\(3\\) and out_channels \\(4\\), got 2"),
    (CheckeredConv2d, (4, 4, 3), {"groups": 0}, ValueError,
     "groups must be a whole number of at least 1, got 0"),
    (CheckeredConv2d, (3, 4, 3), {"stride": 2.0}, TypeError,
     "stride must be a whole number of at least 1 or a pair of them, got 2.0"),
    (CheckeredConv2d, (3, 4, 3), {"stride": (1, 2)}, ValueError,
     "stride must be 1 or 2 \\(the same for height and width\\) .*, got \\(1, 2\\)"),
    (CheckeredConv2d, (3, 4, 3), {"sampling": 0}, TypeError,
     "unknown sampling 0; valid: naive, lattice, random"),
    (CheckeredMaxPool2d, (0,), {}, ValueError,
     "kernel_size must be a whole number of at least 1 or a pair of them, got 0"),
    (CheckeredMaxPool2d, (3,), {}, ValueError,
     "stride \\(by default kernel_size\\) must be 1 or 2 .*, got 3"),
    (CheckeredAvgPool2d, (2,), {"padding": 2}, ValueError,
     "padding must be at most half of kernel_size 2 .*, got 2"),
    (CheckeredAvgPool2d, (3, 2), {"padding": -1}, ValueError,
     "padding must be a whole number of at least 0 or a pair of them, got -1"),
    (SubmapMeanPool, (1,), {"mode": "mean"}, ValueError, "mode must be 'avg' or 'max', got 'mean'"),
]


@pytest.mark.parametrize("layer, args, kwargs, error, message", BAD_OPTIONS,
                         ids=[f"{case[0].__name__}{case[1]}{case[2]}" for case in BAD_OPTIONS])
def test_bad_layer_options_are_named_where_they_enter(layer, args, kwargs, error, message):
    with pytest.raises(error, match=message):
        layer(*args, **kwargs)


@pytest.mark.parametrize("layer", [CheckeredConv2d(3, 4, 3, padding=1), CheckeredMaxPool2d(2),
                                   CheckeredAvgPool2d(3, stride=1, padding=1), SubmapMeanPool(1)],
                         ids=lambda layer: type(layer).__name__)
@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (3, 8, 8), (2, 3, 1, 1, 8, 8)],
                         ids=lambda shape: f"{len(shape)}-D")
def test_a_checkered_layer_explains_the_submap_axis(layer, shape):
    with pytest.raises(ValueError, match=f"{type(layer).__name__} takes \\(N, C, S, H, W\\) "
                       f"tensors.*got a {len(shape)}-D tensor .*x.unsqueeze\\(2\\)"
                       ".*convert_to_checkered"):
        layer(torch.zeros(shape))


def test_a_depth_beyond_the_submaps_names_both_numbers():
    layer = CheckeredConv2d(3, 4, 3, depth=3)
    assert layer(torch.zeros(1, 3, 3, 8, 8)).shape == (1, 4, 1, 6, 6)  # depth = S is fine
    with pytest.raises(ValueError, match="depth 3 .* the input has 2 \\(x.shape\\[2\\]\\)"):
        layer(torch.zeros(1, 3, 2, 8, 8))


def test_a_wrong_number_of_channels_is_named():
    with pytest.raises(ValueError, match="in_channels=3, got 5 channels \\(x.shape\\[1\\]\\)"):
        CheckeredConv2d(3, 4, 3, stride=2)(torch.zeros(1, 5, 2, 8, 8))


# --- the converter ---------------------------------------------------------------------------

def _randomise_batchnorm(model):
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
    return model


@pytest.mark.parametrize("name", ["resnet", "preact-resnet", "googlenet", "densenet"])
def test_converted_model_keeps_parameters_and_gives_the_original_on_submap_0(name):
    """In eval mode, every block's submap 0 is the original network's activation (here in
    float64, so that 'equal' means equal up to rounding of the last bits)."""
    torch.manual_seed(0)
    cnn = _randomise_batchnorm(models.create(name)).double().eval()
    ccnn = convert_to_checkered(cnn).eval()
    assert measure.count_parameters(ccnn) == measure.count_parameters(cnn)
    blocks = "inception_blocks" if name == "googlenet" else "blocks"
    seen = {}
    for label, net in (("cnn", getattr(cnn, blocks)), ("ccnn", getattr(ccnn.model, blocks))):
        for index, block in enumerate(net):
            block.register_forward_hook(
                lambda m, i, out, key=(label, index): seen.__setitem__(key, out))
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        assert ccnn(x).shape == cnn(x).shape == (2, 10)
    for index in range(len(getattr(cnn, blocks))):
        plain, checkered_out = seen[("cnn", index)], seen[("ccnn", index)]
        assert checkered_out.dim() == 5
        assert torch.allclose(checkered_out[:, :, 0], plain, atol=1e-10), index
    assert any(seen[("ccnn", i)].shape[2] > 1 for i in range(len(getattr(cnn, blocks))))


TUTORIAL5 = Path(__file__).resolve().parents[2] / "shared" / "reference" / "uvadlc-tutorial5"


@pytest.mark.skipif(not (TUTORIAL5 / "ResNet.ckpt").exists(),
                    reason="the published Tutorial 5 ResNet is not beside the checkout")
def test_the_published_resnet_converts_to_itself_on_submap_0():
    from helpers._machinery import runs
    cnn = models.create("resnet")
    runs.load_weights(TUTORIAL5 / "ResNet.ckpt", cnn)
    cnn = cnn.double().eval()
    ccnn = convert_to_checkered(cnn).eval()
    features = {}
    cnn.blocks.register_forward_hook(lambda m, i, out: features.__setitem__("cnn", out))
    ccnn.model.blocks.register_forward_hook(lambda m, i, out: features.__setitem__("ccnn", out))
    x = torch.randn(4, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        cnn(x), ccnn(x)
    assert features["ccnn"].shape == (4, 64, 4, 8, 8)
    assert torch.allclose(features["ccnn"][:, :, 0], features["cnn"], atol=1e-10)


def test_converter_reuses_weights_and_statistics_and_leaves_the_original():
    torch.manual_seed(0)
    cnn = _randomise_batchnorm(models.create("resnet"))
    ccnn = convert_to_checkered(cnn)
    assert isinstance(cnn.blocks[3].net[0], nn.Conv2d)  # untouched
    converted = ccnn.model.blocks[3]
    assert isinstance(converted.net[0], CheckeredConv2d)
    assert torch.equal(converted.net[0].weight[:, :, 0], cnn.blocks[3].net[0].weight)
    assert isinstance(converted.net[1], nn.BatchNorm3d)
    assert torch.equal(converted.net[1].running_var, cnn.blocks[3].net[1].running_var)
    assert converted.net[0].stride == 2 and converted.downsample.stride == 2


def test_converted_model_trains():
    torch.manual_seed(0)
    ccnn = convert_to_checkered(models.create("resnet", num_blocks=(1, 1, 1)), sampling="lattice")
    loss = F.cross_entropy(ccnn(torch.randn(4, 3, 32, 32)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in ccnn.parameters())


def test_a_functional_call_on_submaps_is_named():
    with pytest.raises(ConversionError, match="functional call 'mean' on a 5-D tensor in AllCNN"):
        convert_to_checkered(models.create("allcnn"))


class _ScaledPerChannel(nn.Module):
    """Multiplies by a per-channel (1, C, 1, 1) parameter: in 5-D its C meets the submaps."""

    def __init__(self, scale_shape=(1, 8, 1, 1)):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.scale = nn.Parameter(torch.rand(scale_shape))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(8, 10)

    def forward(self, x):
        return self.head(self.pool(self.conv(x) * self.scale).flatten(1))


def test_a_per_channel_tensor_that_would_broadcast_against_the_submaps_is_named():
    with pytest.raises(ConversionError, match=r"'mul' in _ScaledPerChannel combines a 5-D "
                                              r"tensor with one of shape \(1, 8, 1, 1\)"):
        convert_to_checkered(_ScaledPerChannel())


def test_a_scale_that_broadcasts_the_same_in_five_dimensions_converts():
    model = _ScaledPerChannel(scale_shape=(32, 32)).eval()  # meets rows and columns either way
    x = torch.randn(2, 3, 32, 32)
    converted = convert_to_checkered(model).eval()
    assert torch.allclose(converted(x), model(x), atol=1e-6)


def test_a_layer_without_a_checkered_version_is_named():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Upsample(scale_factor=2), nn.Conv2d(4, 4, 3))
    with pytest.raises(ConversionError, match=r"layer 1 \(Upsample\) gets a 5-D tensor") as error:
        convert_to_checkered(model)
    assert "interpolate" not in str(error.value)  # named once, as the layer


@pytest.mark.parametrize("layer, message", [
    (nn.Conv2d(3, 4, 3, padding="same"), "0 \\(Conv2d\\): padding 'same'"),
    (nn.AvgPool2d(2, count_include_pad=False), "count_include_pad=False"),
    (nn.MaxPool2d(2, ceil_mode=True), "ceil_mode"),
])
def test_unsupported_settings_are_named(layer, message):
    with pytest.raises(ConversionError, match=message):
        convert_to_checkered(nn.Sequential(layer), input_shape=(3, 8, 8))


def test_a_layer_option_checkered_layers_refuse_is_named_by_the_converter():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=3), nn.MaxPool2d(3))
    with pytest.raises(ConversionError, match="0 \\(Conv2d\\): stride must be 1 or 2") as error:
        convert_to_checkered(model, input_shape=(3, 16, 16))
    assert "1 (MaxPool2d): stride must be 1 or 2 (the same for height and width) in a " \
           "checkered layer, got 3" in str(error.value)


class _BasicBlock(nn.Module):
    """The common CIFAR ResNet block: conv-BN-ReLU-conv-BN plus a shortcut, which is an empty
    Sequential (the identity) where the shapes match, else a strided 1x1 conv and BN."""

    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class _CifarResNet(nn.Module):
    """A small CIFAR ResNet (3 stages of 2 blocks; the second and third stages start with
    stride 2) written as such networks usually are. ``average_submaps``: forward averages a
    checkered tensor's submaps before the global pooling, as the checkered paper's README
    advises; ``pool_layer``: that pooling is nn.AdaptiveAvgPool2d rather than F.avg_pool2d."""

    def __init__(self, average_submaps=True, pool_layer=False, widths=(8, 16, 32)):
        super().__init__()
        self.conv = nn.Conv2d(3, widths[0], 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(widths[0])
        blocks, c_in = [], widths[0]
        for index, width in enumerate(widths):
            for block in range(2):
                blocks.append(_BasicBlock(c_in, width, 2 if index and not block else 1))
                c_in = width
        self.stages = nn.Sequential(*blocks)
        self.average_submaps = average_submaps
        self.pool = nn.AdaptiveAvgPool2d(1) if pool_layer else None
        self.linear = nn.Linear(c_in, 10)

    def forward(self, x):
        out = self.stages(F.relu(self.bn(self.conv(x))))
        if self.average_submaps and out.dim() == 5:
            out = torch.mean(out, 2)
        out = self.pool(out) if self.pool is not None else F.avg_pool2d(out, 8)
        return self.linear(out.flatten(1))


@pytest.mark.parametrize("average_submaps, pool_layer", [(True, False), (True, True),
                                                         (False, True)])
def test_a_cifar_resnet_with_identity_shortcuts_converts_to_itself_on_submap_0(average_submaps,
                                                                                pool_layer):
    """Empty-Sequential shortcuts stay, and in eval mode the last stage's submap 0 is the
    original's output (float64: equal up to rounding). The head gets the mean of the submaps,
    whether forward takes it (the global pooling after it keeps its 2-D version then) or the
    converted adaptive pooling does."""
    torch.manual_seed(0)
    cnn = _randomise_batchnorm(_CifarResNet(average_submaps, pool_layer)).double().eval()
    ccnn = convert_to_checkered(cnn).eval()
    blocks = ccnn.model.stages
    assert isinstance(blocks[1].shortcut, nn.Sequential) and len(blocks[1].shortcut) == 0
    assert isinstance(blocks[5].shortcut, nn.Sequential) and len(blocks[5].shortcut) == 0
    assert isinstance(blocks[2].shortcut[0], CheckeredConv2d) and blocks[2].shortcut[0].stride == 2
    if pool_layer:
        pool_type = nn.AdaptiveAvgPool2d if average_submaps else SubmapMeanPool
        assert type(ccnn.model.pool) is pool_type
    features = {}
    cnn.stages.register_forward_hook(lambda m, i, out: features.__setitem__("cnn", out))
    blocks.register_forward_hook(lambda m, i, out: features.__setitem__("ccnn", out))
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        logits, checkered_logits = cnn(x), ccnn(x)
    assert features["ccnn"].shape == (2, 32, 4, 8, 8)
    assert torch.allclose(features["ccnn"][:, :, 0], features["cnn"], atol=1e-10)
    with torch.no_grad():
        assert torch.allclose(cnn.linear(features["cnn"].mean(dim=(2, 3))), logits, atol=1e-10)
        head = cnn.linear(features["ccnn"].mean(dim=(2, 3, 4)))  # submap and spatial average
    assert torch.allclose(checkered_logits, head, atol=1e-10)


def test_functional_pooling_of_submaps_is_named_with_the_remedies():
    with pytest.raises(ConversionError, match="functional call 'avg_pool2d' on a 5-D tensor in "
                       "_CifarResNet") as error:
        convert_to_checkered(_CifarResNet(average_submaps=False))
    assert "nn.AdaptiveAvgPool2d" in str(error.value)
    assert "torch.mean(x, 2)" in str(error.value)


class _Reducing(nn.Module):
    """A stride-2 convolution and a reduction written in forward."""

    def __init__(self, reduce):
        super().__init__()
        self.conv, self.reduce = nn.Conv2d(3, 4, 3, stride=2, padding=1), reduce

    def forward(self, x):
        return self.reduce(self.conv(x))


@pytest.mark.parametrize("reduce, shape", [
    (lambda x: torch.mean(x, 2), (2, 4, 4, 4)), (lambda x: x.mean(-3), (2, 4, 4, 4)),
    (lambda x: torch.mean(x, dim=2, keepdim=True), (2, 4, 4, 4)),
    (lambda x: x.sum(dim=[2]), (2, 4, 4, 4)), (lambda x: torch.amax(x, 2), (2, 4, 4, 4)),
    (lambda x: x.mean(dim=(2, 3, 4)), (2, 4))],
    ids=["torch.mean(x, 2)", "x.mean(-3)", "keepdim", "x.sum(dim=[2])", "torch.amax(x, 2)",
         "x.mean(dim=(2, 3, 4))"])
def test_reducing_the_submap_axis_in_forward_is_allowed(reduce, shape):
    torch.manual_seed(0)
    ccnn = convert_to_checkered(_Reducing(reduce), input_shape=(3, 8, 8))
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        submaps = ccnn.model.conv(x.unsqueeze(2))
        assert submaps.shape[2] == 2
        assert torch.allclose(ccnn(x), reduce(submaps).reshape(shape))


@pytest.mark.parametrize("reduce, name", [
    (lambda x: x.mean(3), "mean"), (lambda x: torch.sum(x, dim=(3, 4)), "sum"),
    (lambda x: x.amax((2, 3)), "amax"), (lambda x: x.mean(), "mean")],
    ids=["x.mean(3)", "torch.sum(x, dim=(3, 4))", "x.amax((2, 3))", "x.mean()"])
def test_reducing_other_axes_of_submaps_is_still_named(reduce, name):
    with pytest.raises(ConversionError, match=f"functional call '{name}' on a 5-D tensor in "
                       "_Reducing"):
        convert_to_checkered(_Reducing(reduce), input_shape=(3, 8, 8))


def test_a_converted_network_takes_ordinary_images():
    ccnn = convert_to_checkered(models.create("resnet", num_blocks=(1, 1, 1)))
    with pytest.raises(ValueError, match="ordinary \\(N, C, H, W\\) images .*5-D"):
        ccnn(torch.zeros(2, 3, 1, 32, 32))


def test_unknown_sampling_is_refused_by_the_converter():
    with pytest.raises(ValueError, match="'spiral'"):
        convert_to_checkered(models.create("resnet"), sampling="spiral")


def test_the_converter_and_the_layers_take_spread():
    ccnn = convert_to_checkered(models.create("resnet", num_blocks=(1, 1, 1)), sampling="spread")
    assert {m.sampling for m in ccnn.modules() if isinstance(m, CheckeredConv2d)} == {"spread"}
    assert CheckeredAvgPool2d(2, sampling="spread").sampling == "spread"


# --- the lattices ----------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["naive", "lattice", "random", "spread"])
@pytest.mark.parametrize("size, steps", [(16, 3), (32, 5), (31, 4), (50, 3), (64, 6)])
def test_checkered_sampling_covers_every_row_and_column(method, size, steps):
    kept = sampled_pixels(size, steps, method) >= 0
    assert kept.any(dim=1).all() and kept.any(dim=0).all()
    traditional = (sampled_pixels(size, steps, "traditional") >= 0).sum()
    assert kept.sum() >= 2 ** steps // 2 * traditional  # about 2**steps times as many samples


def test_traditional_subsampling_leaves_rows_and_columns_out():
    kept = sampled_pixels(16, 2, "traditional") >= 0
    assert kept.sum() == 16 and kept.any(dim=1).sum() == 4


def test_lattice_spreads_the_samples_better_than_naive():
    def closest_pair(method):
        points = (sampled_pixels(16, 3, method) >= 0).nonzero().float()
        return (torch.cdist(points, points) + torch.eye(len(points)) * 1e9).min().item()

    assert closest_pair("lattice") == pytest.approx(8 ** 0.5)  # evenly spread
    assert closest_pair("naive") == pytest.approx(2 ** 0.5)    # diagonal lines of touching pixels


def test_table_and_rule_sample_differently_from_the_sixth_step():
    """After j steps of a 2**j x 2**j input (one pixel per submap), as notebook 04 shows: the same
    pixels for five steps; then the rule's closest pair is farther apart after six steps, the
    table's after seven."""
    def closest_pair(method, steps):
        points = (sampled_pixels(2 ** steps, steps, method) >= 0).nonzero().float()
        return (torch.cdist(points, points) + torch.eye(len(points)) * 1e9).min().item()

    assert torch.equal(sampled_pixels(32, 5, "lattice"), sampled_pixels(32, 5, "spread"))
    assert not torch.equal(sampled_pixels(64, 6, "lattice") >= 0,
                           sampled_pixels(64, 6, "spread") >= 0)
    assert closest_pair("lattice", 6) == pytest.approx(26 ** 0.5)
    assert closest_pair("spread", 6) == pytest.approx(58 ** 0.5)
    assert closest_pair("lattice", 7) == pytest.approx(104 ** 0.5)
    assert closest_pair("spread", 7) == pytest.approx(74 ** 0.5)


def test_sampling_figure_one_panel_per_method_and_step():
    figure = plots.sampled_pixels_figure(16, 3)
    assert len(figure.axes) == 12
    import matplotlib.pyplot as plt
    plt.close(figure)


# --- the toy models --------------------------------------------------------------------------

def test_toy_models_parameter_counts_and_shapes():
    ccnn, cnn = models.create("ccnn-toy"), models.create("cnn-toy")
    assert measure.count_parameters(ccnn) == 93_833
    assert measure.count_parameters(cnn) == 67_913
    assert measure.count_parameters(convert_to_checkered(cnn, input_shape=(1, 28, 28))) == 67_913
    shapes = measure.summary(ccnn, (1, 28, 28))
    conv_shapes = shapes[shapes["type"] == "CheckeredConv2d"]["output shape"].tolist()
    assert conv_shapes == [(32, 1, 28, 28), (32, 1, 28, 28), (45, 2, 14, 14), (45, 2, 14, 14),
                           (64, 1, 14, 14)]
    assert ccnn.eval()(torch.randn(3, 1, 28, 28)).shape == (3, 10)


def test_flops_grow_with_the_submaps():
    cnn = models.create("resnet")
    flops = measure.count_flops(cnn, (3, 32, 32))
    ccnn_flops = measure.count_flops(convert_to_checkered(cnn), (3, 32, 32))
    assert 2 * flops < ccnn_flops < 4 * flops  # 1, 2 and 4 submaps in the three stages
    assert checkered.SAMPLINGS == ("naive", "lattice", "random", "spread")


@pytest.mark.parametrize("make, error, says", [
    (lambda: CheckeredConv2d(3, 4, 3, bias="no"), TypeError, "bias must be True or False"),
    (lambda: SubmapMeanPool(-1), ValueError,
     "output_size must be a whole number of at least 1 or a pair"),
    (lambda: convert_to_checkered("model"), TypeError, "converts a torch nn.Module, got str"),
    (lambda: convert_to_checkered(nn.Conv2d(3, 4, 3), input_shape="abc"), ValueError,
     "input_shape must be \\(channels, height, width\\)"),
    (lambda: convert_to_checkered(nn.Conv2d(3, 4, 3), input_shape=(3, 0, 8)), ValueError,
     "input_shape's height must be a whole number of at least 1"),
    (lambda: sampler_sequence(4, "random", seed="x"), TypeError,
     "seed must be a whole number of at least 0"),
])
def test_checkered_arguments_are_checked_where_they_enter(make, error, says):
    with pytest.raises(error, match=says):
        make()
