"""The time of a model's convolutions alone: what any implementation that computes them spends at
least, whatever it does around them. ``densenet_bound.py`` and ``train_throughput.py`` (on a CPU)
set it beside a whole training step, to bound the speed-up any other implementation can reach."""

from __future__ import annotations

from collections import Counter

import torch
from torch import nn
from torch.nn import functional as F

from _timing import timed

INPUT = (3, 32, 32)


def conv_shapes(model: nn.Module, batch: int, input_shape=INPUT) -> Counter:
    """How often each convolution shape occurs in ``model``: (input shape, out channels, kernel,
    stride, padding, whether its input needs a gradient), recorded in one forward pass."""
    shapes, hooks, first = Counter(), [], []

    def record(conv, args):
        needs_grad = bool(first)  # the stem's input is the images: no gradient
        first.append(conv)
        shapes[(tuple(args[0].shape), conv.out_channels, conv.kernel_size, conv.stride,
                conv.padding, needs_grad)] += 1

    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            if module.groups != 1 or module.dilation != (1, 1):
                raise ValueError(f"{module}: only plain convolutions are timed here")
            hooks.append(module.register_forward_pre_hook(record))
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(batch, *input_shape))
    finally:
        for hook in hooks:
            hook.remove()
    return shapes


def conv_step(shape: tuple, bf16: bool, channels_last: bool):
    """A forward and backward pass of one convolution of ``shape``, on random tensors."""
    (n, c, h, w), out, kernel, stride, padding, needs_grad = shape
    layout = torch.channels_last if channels_last else torch.contiguous_format
    # made in the layout (with one channel, contiguous() would keep the usual strides)
    x = torch.empty(n, c, h, w, memory_format=layout).normal_().requires_grad_(needs_grad)
    weight = torch.empty(out, c, *kernel, memory_format=layout).normal_().requires_grad_()
    with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
        grad = F.conv2d(x, weight, stride=stride, padding=padding).detach().normal_()

    def step():
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            y = F.conv2d(x, weight, stride=stride, padding=padding)
        y.backward(grad)
        weight.grad = x.grad = None

    return step


def conv_seconds(shape: tuple, bf16: bool, repeats: int) -> float:
    """The fastest forward and backward pass of one convolution of ``shape`` in either layout,
    the two timed interleaved."""
    return min(timed([conv_step(shape, bf16, layout) for layout in (False, True)], repeats))


def conv_flops(shape: tuple) -> int:
    """Floating-point operations of one convolution of ``shape``, forward and backward: two a
    multiply-add, in the forward pass, the weight's gradient and (if it needs one) the input's."""
    (n, c, h, w), out, kernel, stride, padding, needs_grad = shape
    out_h, out_w = ((size + 2 * pad - k) // step + 1
                    for size, pad, k, step in zip((h, w), padding, kernel, stride))
    return 2 * n * out_h * out_w * c * out * kernel[0] * kernel[1] * (3 if needs_grad else 2)


def convolution_times(shapes: Counter, bf16: bool, repeats: int) -> dict:
    """The seconds of one convolution of each shape of ``shapes`` (:func:`conv_shapes`), alone,
    forward and backward, in its faster layout."""
    return {shape: conv_seconds(shape, bf16, repeats) for shape in shapes}


def convolutions_seconds(shapes: Counter, bf16: bool, repeats: int) -> float:
    """The time of all convolutions of ``shapes``, each timed as in :func:`convolution_times`."""
    times = convolution_times(shapes, bf16, repeats)
    return sum(count * times[shape] for shape, count in shapes.items())
