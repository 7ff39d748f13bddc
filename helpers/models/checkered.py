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
keeps two, :class:`CheckeredConv2d` computes only the two it keeps, as one convolution call.
:func:`convert_to_checkered` turns a CNN into a checkered one without any edit of its ``forward``.
"""

from __future__ import annotations

import copy
import functools
import math

import torch
from torch import nn
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

from .._machinery import arguments as _arguments

SAMPLINGS = ("naive", "lattice", "random", "spread")  # the original's three, then the course's


def _check_sampling(sampling: str) -> None:
    if sampling not in SAMPLINGS:
        error = ValueError if isinstance(sampling, str) else TypeError
        raise error(f"unknown sampling {sampling!r}; valid: {', '.join(SAMPLINGS)}")


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
    _checked_ints("submaps", submaps)
    _check_sampling(sampling)
    _checked_ints("seed", seed, minimum=0)
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

def _pair(value) -> tuple[int, int]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _checked_ints(name: str, value, minimum: int = 1, pair: bool = False):
    """``value`` if it is an integer of at least ``minimum`` (1 or 0), or with ``pair`` an integer
    or a pair of them (returned as a pair); else a TypeError or ValueError that names the
    argument. Checked where options enter, as torch would fail later on them, deep inside."""
    items = _pair(value) if pair else (value,)
    valid = f"a whole number of at least {minimum}" + (" or a pair of them" if pair else "")
    if not all(_arguments.is_whole(item) for item in items):
        raise TypeError(f"{name} must be {valid}, got {value!r}")
    if len(items) != (2 if pair else 1) or min(items) < minimum:
        raise ValueError(f"{name} must be {valid}, got {value!r}")
    return tuple(int(item) for item in items) if pair else int(value)


def _check_submaps(layer: nn.Module, x) -> None:
    """Checkered layers take (N, C, S, H, W) tensors: say how to get one from anything else."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{type(layer).__name__} takes a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 5:
        raise ValueError(
            f"{type(layer).__name__} takes (N, C, S, H, W) tensors, S being the submap axis; got "
            f"a {x.dim()}-D tensor {tuple(x.shape)}. Add the submap axis to images with "
            f"x.unsqueeze(2), or convert a whole CNN with convert_to_checkered (its CheckeredNet "
            f"adds the axis itself)")


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
    pad_h, pad_w = _pair(padding)
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


_OFFSETS = {0: ((0, 0), (1, 1)), 1: ((0, 1), (1, 0))}  # each sampler's two kept positions


def _checkered_conv(x: torch.Tensor, conv, padding, samplers: list[int]) -> torch.Tensor:
    """:func:`checkered_subsample` for a stride-2 convolution ``conv``, computing the same
    numbers in less time: the submaps are grouped by sampler, and each group is convolved at
    its two offsets, (0, 0) with the convolution's own zero padding (no padded copy), any other
    from one copy padded (or cropped) to that offset; no masked selection between samplers."""
    n, _, s, _, _ = x.shape
    pad_h, pad_w = _pair(padding)
    halves = ([], [])  # per kept position: (submap indices, results)
    for sampler in (0, 1):
        indices = [i for i, used in enumerate(samplers) if used == sampler]
        if not indices:
            continue
        part = _fold(x if len(indices) == s else x[:, :, indices])
        for half, (dy, dx) in enumerate(_OFFSETS[sampler]):
            result = (conv(part, padding=(pad_h, pad_w)) if (dy, dx) == (0, 0) else
                      conv(F.pad(part, (pad_w - dx, pad_w + dx, pad_h - dy, pad_h + dy))))
            halves[half].append((indices, result.view(n, len(indices), *result.shape[1:])))
    assembled = []
    for parts in halves:
        if len(parts) == 1:
            assembled.append(parts[0][1])
            continue
        full = parts[0][1].new_empty(n, s, *parts[0][1].shape[2:])
        for indices, result in parts:
            full[:, indices] = result
        assembled.append(full)
    out = torch.stack(assembled, dim=1)                               # (N, 2, S, C', H', W')
    return out.view(n, 2 * s, *out.shape[3:]).transpose(1, 2)        # (N, C', 2S, H', W')


class _Checkered(nn.Module):
    """Common part of the checkered layers: stride 1 or 2, and the sampling of stride 2."""

    def __init__(self, stride, padding, sampling: str, stride_name: str = "stride"):
        super().__init__()
        strides = _checked_ints(stride_name, stride, pair=True)
        if strides not in ((1, 1), (2, 2)):
            raise ValueError(f"{stride_name} must be 1 or 2 (the same for height and width) in "
                             f"a checkered layer, got {stride!r}")
        _check_sampling(sampling)
        self.stride, self.sampling = strides[0], sampling
        self.padding = _checked_ints("padding", padding, minimum=0, pair=True)

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
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels),
                            ("depth", depth), ("groups", groups)):
            _checked_ints(name, value)
        if not isinstance(bias, bool):
            raise TypeError(f"bias must be True or False, got {bias!r}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"groups must divide in_channels ({in_channels}) and out_channels "
                             f"({out_channels}), got {groups}")
        self.in_channels = in_channels
        self.depth = depth
        self.groups = groups
        self.dilation = _checked_ints("dilation", dilation, pair=True)
        kernel = _checked_ints("kernel_size", kernel_size, pair=True)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, depth, *kernel))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # nn.Conv2d's default
        if self.bias is not None:
            bound = 1 / math.sqrt(self.weight[0].numel())
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_submaps(self, x)
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
        return _checkered_conv(x, functools.partial(conv, stride=2), self.padding, samplers)


class _CheckeredPool(_Checkered):
    """Pooling of every submap; at stride 2 the two kept windows only. Subclasses name the 2-D
    pooling (``pool2d``) and the value padding takes (``pad_value``)."""

    def __init__(self, kernel_size, stride=None, padding=0, sampling: str = "naive"):
        kernel = _checked_ints("kernel_size", kernel_size, pair=True)
        super().__init__(kernel_size if stride is None else stride, padding, sampling,
                         "stride (by default kernel_size)" if stride is None else "stride")
        if any(2 * pad > size for pad, size in zip(self.padding, kernel)):
            raise ValueError(f"padding must be at most half of kernel_size {kernel_size!r} (as "
                             f"in 2-D pooling), got {padding!r}")
        self.kernel_size = kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_submaps(self, x)
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
            _checked_ints("output_size", output_size, pair=True)
        self.output_size, self.mode = output_size, mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_submaps(self, x)
        pool = F.adaptive_avg_pool2d if self.mode == "avg" else F.adaptive_max_pool2d
        return _unfold(pool(_fold(x), self.output_size), x.shape[0]).mean(dim=2)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}, mode={self.mode!r}"


# --- converting a CNN ----------------------------------------------------------------------------

class ConversionError(ValueError):
    """Parts of a model that the converter cannot turn into checkered ones, each by name."""


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


# Layers and functions that act on each element (or each channel) alone, so 5-D input is fine.
# A Sequential is checked through its children; an empty one, the identity shortcut of many
# ResNets, has none and is fine as it is.
_ELEMENTWISE_LAYERS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.ELU, nn.Tanh,
                       nn.Sigmoid, nn.Hardtanh, nn.Identity, nn.Sequential, nn.Dropout,
                       nn.Dropout3d, nn.BatchNorm3d, CheckeredConv2d, CheckeredMaxPool2d,
                       CheckeredAvgPool2d, SubmapMeanPool)
_ELEMENTWISE_FUNCTIONS = {
    "relu", "relu_", "relu6", "gelu", "silu", "elu", "leaky_relu", "leaky_relu_", "tanh",
    "sigmoid", "hardtanh", "dropout", "add", "add_", "sub", "mul", "div", "__add__", "__iadd__",
    "__radd__", "__sub__", "__mul__", "__rmul__", "__imul__", "__truediv__", "clone",
    "contiguous", "size", "dim", "__get__", "to", "float", "detach", "batch_norm"}
# Reductions a model's forward may apply to the submap axis itself, as the checkered paper's
# README advises (torch.mean(x, 2) before the classifier).
_SUBMAP_REDUCTIONS = {"mean", "sum", "amax", "amin"}


def _reduces_submaps(name: str, args: tuple, kwargs: dict) -> bool:
    """Whether a call reduces a 5-D tensor over its submap axis alone, or over the submaps and
    the whole map (a global pooling). Other reductions of a 5-D tensor come from code written
    for (N, C, H, W) tensors, whose dims 2 and 3 are now the submaps and the rows."""
    dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
    dims = dim if isinstance(dim, (tuple, list)) else (dim,)
    return (name in _SUBMAP_REDUCTIONS and all(isinstance(d, int) for d in dims)
            and {d % 5 for d in dims} in ({2}, {2, 3, 4}))


class _FunctionalCalls(TorchFunctionMode):
    """Records calls on 5-D tensors that are not element- or channel-wise, made in a model's own
    ``forward`` code (not inside a layer), with the model part they happen in, during one
    probing forward pass."""

    def __init__(self):
        super().__init__()
        self.stack, self.problems = [], []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", str(func))
        # Inside a leaf layer the layer itself is what counts (allowed, or reported by name).
        inside_leaf = self.stack and next(self.stack[-1][1].children(), None) is None
        values = [*args, *kwargs.values()]
        values += [v for a in values if isinstance(a, (list, tuple)) for v in a]  # torch.cat
        five_d = any(isinstance(v, torch.Tensor) and v.dim() == 5 for v in values)
        if five_d and not inside_leaf:
            where = self.stack[-1][0] if self.stack else "the top-level forward"
            channel_cat = name == "cat" and kwargs.get("dim", args[1] if len(args) > 1 else 0) == 1
            if (name not in _ELEMENTWISE_FUNCTIONS and not channel_cat
                    and not _reduces_submaps(name, args, kwargs)):
                self.problems.append(f"functional call {name!r} on a 5-D tensor in {where}")
            elif shifted := _shifted_operand(values):
                self.problems.append(
                    f"functional call {name!r} in {where} combines a 5-D tensor with one of "
                    f"shape {shifted}, written for (N, C, H, W): its channel axis would meet "
                    f"the submap axis (make it 5-D, e.g. .unsqueeze(2), or a layer)")
        return func(*args, **kwargs)


def _shifted_operand(values: list) -> tuple | None:
    """The shape of a 3- or 4-D tensor among an element-wise call's operands (e.g. a
    per-channel (1, C, 1, 1) scale), which broadcasting would align with the last dimensions of
    a 5-D tensor, (S, H, W), instead of (C, H, W); None if there is none. Scalars, and 1- or 2-D
    tensors, which meet the rows and columns in both, are fine."""
    for value in values:
        if isinstance(value, torch.Tensor) and value.dim() in (3, 4) and value.numel() > 1:
            return tuple(value.shape)
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
    if not isinstance(model, nn.Module):
        raise TypeError(f"convert_to_checkered converts a torch nn.Module, got "
                        f"{type(model).__name__} {model!r:.60}")
    _check_sampling(sampling)
    if input_shape is not None:
        if not isinstance(input_shape, (tuple, list)) or len(input_shape) != 3:
            raise ValueError(f"input_shape must be (channels, height, width) of one image, "
                             f"e.g. (3, 32, 32), got {input_shape!r}")
        for name, value in zip(("channels", "height", "width"), input_shape):
            _checked_ints(f"input_shape's {name}", value)
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
    _probe(net, input_shape or _first_input_shape(model), replaced)
    return net


def _first_input_shape(model: nn.Module) -> tuple:
    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if first is None:
        raise ConversionError("the model has no Conv2d; pass input_shape")
    return (first.in_channels, 32, 32)


class _GetsImages(Exception):
    """Raised in a probe by a replaced layer that gets a 4-D tensor (the model averaged the
    submaps before it), with the layer's name."""


def _probe(net: CheckeredNet, input_shape: tuple, replaced: dict) -> None:
    """Probing forward passes; a replaced layer that gets ordinary 4-D tensors gets its 2-D
    original back (``replaced``: name -> (parent, child name, original)), and the probe reruns."""
    while True:
        try:
            return _probe_once(net, input_shape, replaced)
        except _GetsImages as images:
            parent, child_name, original = replaced.pop(images.args[0])
            setattr(parent, child_name, original)


def _probe_once(net: CheckeredNet, input_shape: tuple, replaced: dict) -> None:
    recorder, hooks = _FunctionalCalls(), []
    for name, module in net.model.named_modules():
        label = name or type(net.model).__name__

        def enter(module, args, label=label):
            dims = args[0].dim() if args and isinstance(args[0], torch.Tensor) else None
            if dims == 4 and label in replaced:
                raise _GetsImages(label)
            recorder.stack.append((label, module))
            if (dims == 5 and next(module.children(), None) is None
                    and not isinstance(module, _ELEMENTWISE_LAYERS)):
                recorder.problems.append(f"layer {label} ({type(module).__name__}) gets a 5-D "
                                         f"tensor and has no checkered version")

        def leave(*_):
            recorder.stack.pop()  # (returning it would replace the module's output)

        hooks.append(module.register_forward_pre_hook(enter))
        hooks.append(module.register_forward_hook(leave))
    was_training = net.training
    like = next(net.parameters(), torch.zeros(()))  # probe with the model's dtype and device
    probe = torch.zeros(2, 1, *input_shape, dtype=like.dtype, device=like.device).transpose(1, 2)
    try:
        with torch.no_grad(), recorder:
            net.eval().model(probe)
    except _GetsImages:
        raise
    except Exception as error:  # a shape error downstream of an unconvertible part
        recorder.problems.append(f"the probing forward pass failed: {type(error).__name__}: "
                                 f"{error}")
    finally:
        for hook in hooks:
            hook.remove()
        net.train(was_training)
    if recorder.problems:
        unique = list(dict.fromkeys(recorder.problems))
        raise ConversionError("the converted model cannot run as it is:\n  " + "\n  ".join(unique)
                              + "\nReplace these parts by layers (F.avg_pool2d by nn.AvgPool2d "
                              "or nn.AdaptiveAvgPool2d, for example), average the submaps in "
                              "forward before them (torch.mean(x, 2) on 5-D tensors), or convert "
                              "them by hand.")


# --- what a sequence of subsamplings keeps -------------------------------------------------------

def sampled_pixels(size: int, steps: int, method: str) -> torch.Tensor:
    """Which pixels of a size x size input are still sampled after ``steps`` stride-2
    subsamplings: a (size, size) tensor holding the submap index at each sampled pixel, -1
    elsewhere. ``method``: "traditional" (ordinary stride 2) or a checkered sampling. Computed
    by running the actual pooling layers (kernel 1, stride 2) on an image of pixel indices."""
    _arguments.check("sampled_pixels", sampled_pixels, {"size": size, "steps": steps,
                                                        "method": method})
    if method != "traditional":
        _check_sampling(method)
    if size < 2 ** steps or steps < 0:
        raise ValueError(f"sampled_pixels: {steps} stride-2 subsamplings need steps >= 0 and an "
                         f"input of at least 2**steps = {2 ** max(steps, 0)} pixels a side; got "
                         f"size={size}")
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
