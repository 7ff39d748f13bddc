"""Checkered subsampling: its layers, their sampler sequences, and converting a CNN.

The method is Sadigh & Sen's ( "Improving the Resolution of CNN Feature Maps Efficiently with
Multisampling", arXiv 1805.10766).

A stride-2 layer normally keeps 1 of the 4 positions of every 2x2 window. A checkered layer keeps
2, on a diagonal of the window, each in a submap of its own: height and width halve as usual, the
number of submaps doubles, and only half of the resolution is lost instead of three quarters.
Tensors carry the submaps in an extra axis: (N, C, S, H, W).

Which diagonal a submap is sampled on is its *sampler*: 0 keeps (top-left, bottom-right), 1 keeps
(top-right, bottom-left). Output submap i holds input submap i's first sample and output submap
S + i its second. The sequence of samplers for the S input submaps is "naive" (all 0, as the
original experiments), "lattice" (the original's published table, for up to 512 submaps),
"random" (a fixed random choice per submap count) or "spread" (the course's own rule, which equals
the table for its first five entries and goes on to any power of two).

Unlike the original implementation, which computes all four shifted strided convolutions and
keeps two, :class:`CheckeredConv2d` computes only the two it keeps (how: ``checkered_conv`` in
``_checkered_support``, the same numbers as :func:`checkered_subsample` in less time).
:func:`convert_to_checkered` turns a CNN into a checkered one without any edit of its ``forward``.
"""

from __future__ import annotations

import copy
import functools
import math

import torch
from torch import nn
from torch.nn import functional as F

from ._checkered_support import (ConversionError, as_pair, check_conversion, check_conv_options,
                                 check_pooled_pixels, check_pooling, check_sampling,
                                 check_submaps, checked_ints, checkered_conv, first_input_shape,
                                 probe)
from ._checkered_support import SAMPLINGS  # noqa: F401 (the samplings there are, by name)


# --- sampler sequences ---------------------------------------------------------------------------

def _alternating(*runs: int) -> str:
    """Samplers written as runs of equal ones, alternately 0 and 1, starting with 0:
    ``_alternating(1, 2, 3) == "011000"``."""
    return "".join(str(i % 2) * run for i, run in enumerate(runs))


# The lattice table of the original code, by number of input submaps (Sadigh & Sen's published
# code, generate.py, as described in the course's reference notes, section 1.5): the first five
# entries as listed there, the later ones from their runs of equal samplers.
_LATTICE_TABLE = {
    1: "0", 2: "00", 4: "0101", 8: "01100011", 16: "0010100101001010",
    32: _alternating(*(3, 2) * 6, 2),
    64: _alternating(*(5, 5) * 6, 4),
    128: _alternating(*(10,) * 6, 9, *(10,) * 5, 9),
    256: _alternating(20, 20, 20, 19, 20, 20, 19, 20, 20, 19, 20, 20, 19),
    512: "01" * 256,  # "alternative 0s and 1s"
}


@functools.cache
def _spread_steps(steps: int) -> tuple:
    """The course's "spread" sampler sequences for 1, 2, 4, ... 2**(steps-1) input submaps.

    After j checkered steps the samples of the 2**j submaps are cosets of a grid of spacing 2**j;
    their offsets form a permutation ("n rooks": every row and column once). Choosing the
    samplers so that the offsets are the rank-1 lattice {(r, a*r mod 2**j)} spreads them evenly.
    Each step can only refine the previous lattice (a mod 2**(j-1) is fixed), so at every step
    we take, of the two refinements, the one whose closest pair of samples (on the torus) is
    farthest apart; on a tie, the one closer to naive. This equals the original's published
    lattice table for its first five entries (1 to 16 submaps) and differs from it from the
    sixth on (at 32 submaps every odd-numbered submap gets the other sampler, submap 1 first)."""
    def closest(n, a):
        return min(math.hypot(min(i, n - i), min(a * i % n, n - a * i % n)) for i in range(1, n))

    offsets, multiplier, sequences = [(0, 0)], 1, []
    for step in range(steps):
        spacing = 2 ** step
        options = []
        for a in ([multiplier] if step == 0 else [multiplier, multiplier + spacing]):
            sequence = [0 if a * row % (2 * spacing) == col else 1 for row, col in offsets]
            options.append((closest(2 * spacing, a), -sum(sequence), a, sequence))
        _, _, multiplier, sequence = max(options)
        sequences.append(tuple(sequence))
        first = [(r, c if s == 0 else c + spacing) for (r, c), s in zip(offsets, sequence)]
        second = [(r + spacing, c + spacing if s == 0 else c)
                  for (r, c), s in zip(offsets, sequence)]
        offsets = first + second
    return tuple(sequences)


def sampler_sequence(submaps: int, sampling: str = "naive", seed: int = 0) -> list[int]:
    """The sampler (0 or 1) for each of ``submaps`` input submaps of a stride-2 layer.

    "naive": all 0. "random": drawn uniformly, the same for the same ``seed`` and ``submaps``.
    "lattice": the original's published table, which has entries for 1, 2, 4, ..., 512 submaps
    (10 subsampling steps) only. "spread": the course's rule (see ``_spread_steps``), the same
    as "lattice" up to 16 submaps, for any power of two."""
    checked_ints("submaps", submaps)
    check_sampling(sampling)
    checked_ints("seed", seed, minimum=0)
    if sampling == "naive":
        return [0] * submaps
    if sampling == "random":
        generator = torch.Generator().manual_seed(seed * 1_000_003 + submaps)
        return torch.randint(2, (submaps,), generator=generator).tolist()
    step = submaps.bit_length() - 1
    power_of_two = submaps == 2 ** step
    if sampling == "lattice" and submaps in _LATTICE_TABLE:
        return [int(sampler) for sampler in _LATTICE_TABLE[submaps]]
    if sampling == "lattice":
        problem = ("needs a power-of-two number of submaps" if not power_of_two else
                   "has no entry in the original's published table for this number of submaps")
        raise ValueError(
            f"lattice sampling {problem}, got {submaps}; valid: "
            f"{', '.join(map(str, _LATTICE_TABLE))} (the table's entries: at most 9 stride-2 "
            f"steps before this one). sampling='spread', the course's own rule, gives a "
            f"sequence for any power of two")
    if not power_of_two:
        raise ValueError(f"spread sampling needs a power-of-two number of submaps, got "
                         f"{submaps}")
    return list(_spread_steps(step + 1)[step])


# --- the layers ----------------------------------------------------------------------------------

def _fold(x: torch.Tensor) -> torch.Tensor:
    """(N, C, S, H, W) -> (N*S, C, H, W): every submap becomes an image of the batch. The
    checkered layers return their 5-D results as views of such batches, so this is free."""
    n, c, s, h, w = x.shape
    return x.transpose(1, 2).reshape(n * s, c, h, w)


def _unfold(x: torch.Tensor, n: int) -> torch.Tensor:
    """(N*S, C, H, W) -> (N, C, S, H, W), as a view."""
    _, c, h, w = x.shape
    return x.view(n, -1, c, h, w).transpose(1, 2)


def checkered_subsample(x: torch.Tensor, op, padding, pad_value: float,
                        samplers: list[int]) -> torch.Tensor:
    """Apply ``op`` (a stride-2 operation on unpadded 4-D input) at the two kept positions of
    every 2x2 window: (N, C, S, H, W) -> (N, C', 2S, H', W').

    Each input submap is padded once and shifted by its sampler's two offsets, (0, 0) and
    (1, 1) for sampler 0 or (0, 1) and (1, 0) for sampler 1 (views of the padded batch, unless
    the samplers differ), and ``op`` runs on the first and on the second samples."""
    n, _, s, h, w = x.shape
    pad_h, pad_w = as_pair(padding)
    padded = F.pad(_fold(x), (pad_w, pad_w + 1, pad_h, pad_h + 1), value=pad_value)
    height, width = h + 2 * pad_h, w + 2 * pad_w

    def shifted(dy, dx):
        return padded[:, :, dy:dy + height, dx:dx + width]

    if any(samplers):
        mask = torch.tensor(samplers, dtype=torch.bool, device=x.device).repeat(n)
        mask = mask[:, None, None, None]
        first = torch.where(mask, shifted(0, 1), shifted(0, 0))
        second = torch.where(mask, shifted(1, 0), shifted(1, 1))
    else:
        first, second = shifted(0, 0), shifted(1, 1)
    halves = [op(part) for part in (first, second)]                 # 2 x (N*S, C', H', W')
    out = torch.stack([half.view(n, s, *half.shape[1:]) for half in halves], dim=1)
    return out.view(n, 2 * s, *out.shape[3:]).transpose(1, 2)      # (N, C', 2S, H', W')


class _Checkered(nn.Module):
    """Common part of the checkered layers: stride 1 or 2, and the sampling of stride 2."""

    def __init__(self, stride, padding, sampling: str, stride_name: str = "stride"):
        super().__init__()
        strides = checked_ints(stride_name, stride, pair=True)
        if strides not in ((1, 1), (2, 2)):
            raise ValueError(f"{stride_name} must be 1 or 2 (the same for height and width) in "
                             f"a checkered layer, got {stride!r}")
        check_sampling(sampling)
        self.stride, self.sampling = strides[0], sampling
        self.padding = checked_ints("padding", padding, minimum=0, pair=True)

    def extra_repr(self) -> str:
        return f"stride={self.stride}, padding={self.padding}, sampling={self.sampling!r}"


class CheckeredConv2d(_Checkered):
    """A 2-D convolution applied to every submap of (N, C, S, H, W) with the same weights.

    At stride 2 each output position is computed for the two kept samples only. ``depth > 1``
    convolves ``depth`` neighbouring submaps together (a depth x k x k kernel; the submap axis is
    not padded, so S shrinks by depth - 1). Parameters: exactly those of the ``Conv2d`` with
    ``depth`` times the input channels, so depth 1 has the Conv2d's count."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 depth: int = 1, bias: bool = True, dilation=1, groups: int = 1,
                 sampling: str = "naive"):
        super().__init__(stride, padding, sampling)
        check_conv_options(in_channels, out_channels, depth, groups, bias)
        self.in_channels = in_channels
        self.depth = depth
        self.groups = groups
        self.dilation = checked_ints("dilation", dilation, pair=True)
        kernel = checked_ints("kernel_size", kernel_size, pair=True)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, depth, *kernel))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # nn.Conv2d's default
        if self.bias is not None:
            bound = 1 / math.sqrt(self.weight[0].numel())
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_submaps(self, x)
        if x.shape[1] != self.in_channels:
            raise ValueError(f"{type(self).__name__} has in_channels={self.in_channels}, got "
                             f"{x.shape[1]} channels (x.shape[1]) in a tensor {tuple(x.shape)}")
        if self.depth > x.shape[2]:
            raise ValueError(f"depth {self.depth} convolves {self.depth} neighbouring submaps, "
                             f"but the input has {x.shape[2]} (x.shape[2]); valid: a depth of "
                             f"at most the number of submaps")
        if self.depth > 1:  # stack each window of `depth` submaps as channels
            n, c, s, h, w = x.shape
            windows = x.unfold(2, self.depth, 1)              # (N, C, S', H, W, depth)
            x = windows.permute(0, 1, 5, 2, 3, 4).reshape(n, c * self.depth, -1, h, w)
        weight = self.weight.flatten(1, 2)                     # (out, in * depth, kh, kw)
        conv = functools.partial(F.conv2d, weight=weight, bias=self.bias,
                                 dilation=self.dilation, groups=self.groups)
        if self.stride == 1:
            return _unfold(conv(_fold(x), padding=self.padding), x.shape[0])
        samplers = sampler_sequence(x.shape[2], self.sampling)
        return checkered_conv(x, functools.partial(conv, stride=2), self.padding, samplers)


class _CheckeredPool(_Checkered):
    """Pooling of every submap; at stride 2 the two kept windows only. Subclasses name the 2-D
    pooling (``pool2d``) and the value padding takes (``pad_value``)."""

    def __init__(self, kernel_size, stride=None, padding=0, sampling: str = "naive"):
        kernel = checked_ints("kernel_size", kernel_size, pair=True)
        super().__init__(kernel_size if stride is None else stride, padding, sampling,
                         "stride (by default kernel_size)" if stride is None else "stride")
        check_pooling(self.padding, kernel, kernel_size, padding)
        self.kernel_size = kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_submaps(self, x)
        if self.stride == 1:
            return _unfold(self.pool2d(_fold(x), self.kernel_size, 1, self.padding), x.shape[0])
        pool = functools.partial(self.pool2d, kernel_size=self.kernel_size, stride=2)
        return checkered_subsample(x, pool, self.padding, self.pad_value,
                                   sampler_sequence(x.shape[2], self.sampling))


class CheckeredMaxPool2d(_CheckeredPool):
    """Checkered max-pooling. Padding is -inf, as in nn.MaxPool2d (the original padded with
    zeros, which wins over negative inputs at the borders)."""
    pool2d = staticmethod(F.max_pool2d)
    pad_value = -math.inf


class CheckeredAvgPool2d(_CheckeredPool):
    """Checkered average pooling (zero padding counted, nn.AvgPool2d's default)."""
    pool2d = staticmethod(F.avg_pool2d)
    pad_value = 0.0


class SubmapMeanPool(nn.Module):
    """Adaptive (average or max) pooling of every submap, then the mean over the submaps: the
    point where a checkered network returns to ordinary (N, C, h, w) tensors."""

    def __init__(self, output_size, mode: str = "avg"):
        super().__init__()
        if mode not in ("avg", "max"):
            raise ValueError(f"mode must be 'avg' or 'max', got {mode!r}")
        if not (isinstance(output_size, (tuple, list)) and None in output_size):  # None: as is
            checked_ints("output_size", output_size, pair=True)
        self.output_size, self.mode = output_size, mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_submaps(self, x)
        pool = F.adaptive_avg_pool2d if self.mode == "avg" else F.adaptive_max_pool2d
        return _unfold(pool(_fold(x), self.output_size), x.shape[0]).mean(dim=2)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}, mode={self.mode!r}"


# --- converting a CNN ----------------------------------------------------------------------------

def _converted(layer: nn.Module, sampling: str) -> nn.Module | None:
    """The checkered replacement of a 2-D layer (weights and statistics reused), None if the
    layer needs none (it works on 5-D tensors as it is), or raises ConversionError."""
    if isinstance(layer, nn.Conv2d):
        if layer.padding_mode != "zeros" or isinstance(layer.padding, str):
            raise ConversionError(f"padding {layer.padding!r} / {layer.padding_mode} is not "
                                  f"supported")
        new = CheckeredConv2d(layer.in_channels, layer.out_channels, layer.kernel_size,
                              layer.stride, layer.padding, bias=layer.bias is not None,
                              dilation=layer.dilation, groups=layer.groups, sampling=sampling)
        new.to(layer.weight)  # same device and dtype
        with torch.no_grad():
            new.weight.copy_(layer.weight.unsqueeze(2))
            if layer.bias is not None:
                new.bias.copy_(layer.bias)
        return new
    if isinstance(layer, nn.BatchNorm2d):
        new = nn.BatchNorm3d(layer.num_features, layer.eps, layer.momentum, layer.affine,
                             layer.track_running_stats)
        if layer.running_mean is not None:
            new.to(layer.running_mean)  # same device and dtype
        new.load_state_dict(layer.state_dict())
        return new
    if isinstance(layer, nn.Dropout2d):
        return nn.Dropout3d(layer.p, layer.inplace)
    if isinstance(layer, (nn.MaxPool2d, nn.AvgPool2d)):
        if layer.ceil_mode or getattr(layer, "dilation", 1) not in (1, (1, 1)):
            raise ConversionError("ceil_mode=True or a dilation is not supported")
        if isinstance(layer, nn.AvgPool2d) and not layer.count_include_pad:
            raise ConversionError("count_include_pad=False is not supported")
        cls = CheckeredMaxPool2d if isinstance(layer, nn.MaxPool2d) else CheckeredAvgPool2d
        return cls(layer.kernel_size, layer.stride, layer.padding, sampling=sampling)
    if isinstance(layer, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        return SubmapMeanPool(layer.output_size,
                              "avg" if isinstance(layer, nn.AdaptiveAvgPool2d) else "max")
    return None


class CheckeredNet(nn.Module):
    """A converted network: inserts the submap axis in front of ``model`` (averaging it away at
    the end, if the model did not), so that it takes and returns ordinary tensors."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"a converted network takes ordinary (N, C, H, W) images and adds "
                             f"the submap axis itself; got a {x.dim()}-D tensor {tuple(x.shape)}")
        out = self.model(x.unsqueeze(2))
        return out.mean(dim=2) if out.dim() == 5 else out


def convert_to_checkered(model: nn.Module, sampling: str = "naive",
                         input_shape: tuple | None = None) -> CheckeredNet:
    """A checkered copy of ``model`` (the original is left as it is).

    Conv2d, BatchNorm2d, Dropout2d, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d and
    AdaptiveMaxPool2d are replaced, reusing weights and running statistics; adaptive pooling
    also averages over the submaps. A probing forward pass (on zeros of ``input_shape``, by
    default the first convolution's channels at 32x32) then checks that every layer and every
    functional call that sees a 5-D tensor can handle it; anything else raises a
    ConversionError that names each part. A model's forward may average the submaps itself
    (``torch.mean(x, 2)``, as the checkered paper's README advises); layers after that get
    ordinary 4-D tensors and keep their 2-D versions."""
    check_conversion(model, sampling, input_shape)
    converted, problems, replaced = copy.deepcopy(model), [], {}
    for parent_name, parent in list(converted.named_modules()):
        for child_name, child in list(parent.named_children()):
            qualified = f"{parent_name}.{child_name}" if parent_name else child_name
            try:
                new = _converted(child, sampling)
            except (ValueError, TypeError) as error:  # ConversionError, or a checkered option
                problems.append(f"{qualified} ({type(child).__name__}): {error}")
                continue
            if new is not None:
                setattr(parent, child_name, new)
                replaced[qualified] = (parent, child_name, child)
    if problems:
        raise ConversionError("cannot convert:\n  " + "\n  ".join(problems))
    net = CheckeredNet(converted)
    probe(net, input_shape or first_input_shape(model), replaced,
          (CheckeredConv2d, CheckeredMaxPool2d, CheckeredAvgPool2d, SubmapMeanPool))
    return net


# --- what a sequence of subsamplings keeps -------------------------------------------------------

def sampled_pixels(size: int, steps: int, method: str) -> torch.Tensor:
    """Which pixels of a size x size input are still sampled after ``steps`` stride-2
    subsamplings: a (size, size) tensor holding the submap index at each sampled pixel, -1
    elsewhere. ``method``: "traditional" (ordinary stride 2) or a checkered sampling. Computed
    by running the actual pooling layers (kernel 1, stride 2) on an image of pixel indices."""
    check_pooled_pixels(sampled_pixels, size, steps, method)
    index = torch.arange(1, size * size + 1, dtype=torch.float64).view(1, 1, size, size)
    if method == "traditional":
        x = index
        for _ in range(steps):
            x = F.max_pool2d(x, 1, stride=2)
        x = x.unsqueeze(2)
    else:
        layer = CheckeredMaxPool2d(1, stride=2, sampling=method)
        x = index.unsqueeze(2)
        for _ in range(steps):
            x = layer(x)
    result = torch.full((size * size,), -1, dtype=torch.long)
    for submap in range(x.shape[2]):
        picked = x[0, 0, submap].flatten()
        picked = picked[torch.isfinite(picked) & (picked > 0)].long() - 1
        result[picked] = submap
    return result.view(size, size)
