"""What the checkered layers need but do not teach: checks, the probe, a faster convolution.

The checks are of the layers' arguments and inputs. The probing pass runs a converted network
once on zeros to tell whether every layer and every functional call that sees an (N, C, S, H, W)
tensor can handle it. ``checkered_conv`` computes a stride-2 checkered convolution in less time
than the general ``checkered_subsample``, with the same numbers."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

from .._machinery import arguments as _arguments


_OFFSETS = {0: ((0, 0), (1, 1)), 1: ((0, 1), (1, 0))}  # each sampler's two kept positions


def checkered_conv(x: torch.Tensor, conv, padding, samplers: list[int]) -> torch.Tensor:
    """``checkered_subsample`` for a stride-2 convolution ``conv``, computing the same numbers
    in less time: the submaps are grouped by sampler, and each group is convolved at
    its two offsets, (0, 0) with the convolution's own zero padding (no padded copy), any other
    from one copy padded (or cropped) to that offset; no masked selection between samplers."""
    from .checkered import _fold  # (the layers' module imports this one)
    n, _, s, _, _ = x.shape
    pad_h, pad_w = as_pair(padding)
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


class ConversionError(ValueError):
    """Parts of a model that the converter cannot turn into checkered ones, each by name."""


SAMPLINGS = ("naive", "lattice", "random", "spread")  # the original's three, then the course's


def check_sampling(sampling: str) -> None:
    if sampling not in SAMPLINGS:
        error = ValueError if isinstance(sampling, str) else TypeError
        raise error(f"unknown sampling {sampling!r}; valid: {', '.join(SAMPLINGS)}")


def check_conv_options(in_channels, out_channels, depth, groups, bias) -> None:
    """A CheckeredConv2d's sizes and bias, checked as they enter."""
    for name, value in (("in_channels", in_channels), ("out_channels", out_channels),
                        ("depth", depth), ("groups", groups)):
        checked_ints(name, value)
    if not isinstance(bias, bool):
        raise TypeError(f"bias must be True or False, got {bias!r}")
    if in_channels % groups or out_channels % groups:
        raise ValueError(f"groups must divide in_channels ({in_channels}) and out_channels "
                         f"({out_channels}), got {groups}")


def check_pooling(paddings: tuple, kernel: tuple, kernel_size, padding) -> None:
    """A checkered pooling's padding: at most half its window, as in 2-D pooling."""
    if any(2 * pad > size for pad, size in zip(paddings, kernel)):
        raise ValueError(f"padding must be at most half of kernel_size {kernel_size!r} (as "
                         f"in 2-D pooling), got {padding!r}")


def check_conversion(model, sampling: str, input_shape) -> None:
    """``convert_to_checkered``'s arguments: a module, a sampling and one image's shape."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"convert_to_checkered converts a torch nn.Module, got "
                        f"{type(model).__name__} {model!r:.60}")
    check_sampling(sampling)
    if input_shape is not None:
        if not isinstance(input_shape, (tuple, list)) or len(input_shape) != 3:
            raise ValueError(f"input_shape must be (channels, height, width) of one image, "
                             f"e.g. (3, 32, 32), got {input_shape!r}")
        for name, value in zip(("channels", "height", "width"), input_shape):
            checked_ints(f"input_shape's {name}", value)


def first_input_shape(model: nn.Module) -> tuple:
    """The probe's default image: the first convolution's channels at 32x32."""
    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if first is None:
        raise ConversionError("the model has no Conv2d; pass input_shape")
    return (first.in_channels, 32, 32)


def check_pooled_pixels(function, size, steps, method) -> None:
    """``sampled_pixels``' arguments: enough pixels for ``steps`` subsamplings."""
    _arguments.check("sampled_pixels", function, {"size": size, "steps": steps,
                                                  "method": method})
    if method != "traditional":
        check_sampling(method)
    if size < 2 ** steps or steps < 0:
        raise ValueError(f"sampled_pixels: {steps} stride-2 subsamplings need steps >= 0 and an "
                         f"input of at least 2**steps = {2 ** max(steps, 0)} pixels a side; got "
                         f"size={size}")


def as_pair(value) -> tuple[int, int]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def checked_ints(name: str, value, minimum: int = 1, pair: bool = False):
    """``value`` if it is an integer of at least ``minimum`` (1 or 0), or with ``pair`` an integer
    or a pair of them (returned as a pair); else a TypeError or ValueError that names the
    argument. Checked where options enter, as torch would fail later on them, deep inside."""
    items = as_pair(value) if pair else (value,)
    valid = f"a whole number of at least {minimum}" + (" or a pair of them" if pair else "")
    if not all(_arguments.is_whole(item) for item in items):
        raise TypeError(f"{name} must be {valid}, got {value!r}")
    if len(items) != (2 if pair else 1) or min(items) < minimum:
        raise ValueError(f"{name} must be {valid}, got {value!r}")
    return tuple(int(item) for item in items) if pair else int(value)


def check_submaps(layer: nn.Module, x) -> None:
    """Checkered layers take (N, C, S, H, W) tensors: say how to get one from anything else."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{type(layer).__name__} takes a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 5:
        raise ValueError(
            f"{type(layer).__name__} takes (N, C, S, H, W) tensors, S being the submap axis; got "
            f"a {x.dim()}-D tensor {tuple(x.shape)}. Add the submap axis to images with "
            f"x.unsqueeze(2), or convert a whole CNN with convert_to_checkered (its CheckeredNet "
            f"adds the axis itself)")


# Layers and functions that act on each element (or each channel) alone, so 5-D input is fine.
# A Sequential is checked through its children; an empty one, the identity shortcut of many
# ResNets, has none and is fine as it is.
_ELEMENTWISE_LAYERS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.ELU, nn.Tanh,
                       nn.Sigmoid, nn.Hardtanh, nn.Identity, nn.Sequential, nn.Dropout,
                       nn.Dropout3d, nn.BatchNorm3d)
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


class _GetsImages(Exception):
    """Raised in a probe by a replaced layer that gets a 4-D tensor (the model averaged the
    submaps before it), with the layer's name."""


def probe(net: nn.Module, input_shape: tuple, replaced: dict, checkered: tuple) -> None:
    """Probing forward passes of the converted ``net`` (``checkered``: the layer types that take
    5-D tensors); a replaced layer that gets ordinary 4-D tensors gets its 2-D
    original back (``replaced``: name -> (parent, child name, original)), and the probe reruns."""
    while True:
        try:
            return _probe_once(net, input_shape, replaced, checkered)
        except _GetsImages as images:
            parent, child_name, original = replaced.pop(images.args[0])
            setattr(parent, child_name, original)


def _probe_once(net: nn.Module, input_shape: tuple, replaced: dict, checkered: tuple) -> None:
    recorder, hooks = _FunctionalCalls(), []
    for name, module in net.model.named_modules():
        label = name or type(net.model).__name__

        def enter(module, args, label=label):
            dims = args[0].dim() if args and isinstance(args[0], torch.Tensor) else None
            if dims == 4 and label in replaced:
                raise _GetsImages(label)
            recorder.stack.append((label, module))
            if (dims == 5 and next(module.children(), None) is None
                    and not isinstance(module, (*_ELEMENTWISE_LAYERS, *checkered))):
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


