"""A DenseNet's dense blocks trained in fewer passes over memory, on a CPU 1.2 to 1.8x as fast.

The same model, parameters and results (to rounding), a training step 1.2 to 1.8 times as fast on
the course's two CPU types in fp32, DenseNet-BC-100's about 1.5 times in bf16 (AVX512-BF16)
(``benchmarks/densenet_shared_statistics.py``; docs/measurements.md, "Speed").

The straightforward layer concatenates all earlier maps and applies BatchNorm-ReLU-conv to the
concatenation: per layer, several passes over a width that grows with depth, and a BatchNorm over
maps whose batch statistics every earlier layer of the block has already computed. Within one
batch a map never changes, so its statistics do not either. The blocks here (the design
of the memory-efficient DenseNet paper's shared buffers, taken further) keep

* each map once, normalised once with its own batch statistics, in one preallocated buffer per
  block (channels-last, newest maps first, as the concatenation orders them);
* per layer only the affine part of its first BatchNorm and the ReLU (one pass that writes the
  first convolution's input), and in the backward pass one pass that masks, sums the affine
  gradients and adds into the buffer's gradient. The normalisation's gradient is taken once per
  map, from the sum of all its consumers' gradients;
* everything after the first convolution's input as it is (autograd).

These passes run as PyTorch operations ("eager") and as C++ kernels of our own
(``dense_kernels.cpp``, built at run time with ``torch.utils.cpp_extension``):
"C++ affine-ReLU" replaces only the two per-layer passes; "C++ fused" also

* computes a 1x1 first convolution (the bottleneck's) with the affine-ReLU pass, in tiles of
  1,024 pixels (2,048 in bf16) whose input is made in cache and multiplied at once (MKL), never
  written out; the backward pass makes it again instead of reading it;
* takes the statistics of the BatchNorm after it from each tile of the product while it is in
  cache, so that the bottleneck's BatchNorm-ReLU is one more pass; in the backward pass, after one
  pass for that BatchNorm's sums, each tile's gradient is made in cache from them (the whole
  bottleneck, up to its second ReLU, is one kernel backward);
* places each new map into the buffers (two passes: its statistics, read once, and the write)
  and takes its gradient (two passes);
* takes each 3x3 convolution's weight gradient itself, for float maps, on a CPU without AVX512
  (on the AVX2-only CPU oneDNN's ran at 40 to 50 GFLOP/s, its forward pass at 70, its input
  gradient at 110 to 140; :func:`own_3x3_weight_gradient`): each pixel is given the gradients of
  the nine output pixels that read it, in cache, and a tile's input is multiplied by them at once;
* computes what follows each block from its normalised buffer: the BatchNorm after a block
  normalises the concatenation with the maps' own statistics, so a transition's
  BatchNorm-ReLU-conv 1x1 is one more fused 1x1 convolution (the classifier's BatchNorm-ReLU one
  more affine-ReLU pass), and the concatenation itself is never written.

Outputs, gradients and the running statistics are the straightforward model's (float64 tests).
In bf16 autocast the buffers hold bf16 maps, as the straightforward model's concatenations do,
and the kernels compute in fp32 (their products in bf16, as autocast's convolutions).
Evaluation runs the model as written. :func:`shared_statistics` patches a model's blocks in
place, :func:`as_written` undoes it.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import sysconfig
from pathlib import Path
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from . import files
from ..models.densenet import (DenseBlock, DenseLayer, DenseNet, MemoryEfficientDenseLayer,
                               TransitionLayer)

CHANNELS_LAST = torch.channels_last
KERNELS = Path(__file__).with_suffix(".cpp")
LIBRARY = "dense_kernels.so"  # what torch builds from KERNELS, in build_directory()


def eager_affine_relu(buffer, start, weight, bias):
    """ReLU(weight * buffer[:, start:] + bias): a layer's first BatchNorm after normalising, in
    the buffer's dtype (computed in the parameters' where those are wider, as with bf16)."""
    return torch.addcmul(bias.view(1, -1, 1, 1), buffer[:, start:],
                         weight.view(1, -1, 1, 1)).relu_().to(buffer.dtype)


def eager_affine_relu_backward(grad, relu_out, buffer, start, weight, bias, grad_buffer):
    """Adds the gradient of ``buffer[:, start:]`` into ``grad_buffer``; returns the gradients of
    ``weight`` and ``bias``."""
    masked = torch.ops.aten.threshold_backward(grad, relu_out, 0)
    grad_buffer[:, start:].addcmul_(masked, weight.view(1, -1, 1, 1))
    masked = masked.to(weight.dtype)  # the sums in the parameters' dtype
    return (masked * buffer[:, start:]).sum((0, 2, 3)), masked.sum((0, 2, 3))


def eager_place_map(new, raw, normalised, first, eps):
    """Writes a new map into the block's buffers at channel ``first``: as it is into ``raw``
    (None where the block does not keep its output), normalised with its batch statistics into
    ``normalised``. Returns (the map as :func:`eager_map_gradient` reads it, its mean, 1/std)."""
    values = new.contiguous()  # the usual layout: ATen's BatchNorm is several times slower on a
    out, mean, inv_std = _normalise(values, eps)  # dozen channels in channels-last
    if raw is not None:
        raw[:, first:first + new.shape[1]] = values
    normalised[:, first:first + new.shape[1]] = out
    return values, mean, inv_std


def eager_map_gradient(grad_normalised, grad_raw, first, values, mean, inv_std, eps):
    """A placed map's gradient: through its normalisation, plus its share of ``grad_raw`` (None
    where the block did not keep its output)."""
    end = first + values.shape[1]
    grad = torch.ops.aten.native_batch_norm_backward(
        grad_normalised[:, first:end].contiguous(), values, _unit_scale(values), None, None, mean,
        inv_std, True, eps, [True, False, False])[0]
    return grad if grad_raw is None else grad + grad_raw[:, first:end]


class BlockOps(NamedTuple):
    """How a block's passes are computed: each layer's first BatchNorm's affine part and ReLU;
    where given, the same followed by a 1x1 convolution, and a whole bottleneck (the same, the
    1x1 convolution, BatchNorm and ReLU); and the placing of each new map into the buffers with
    its gradient. With ``following``, the block also computes what follows it in a DenseNet from
    its buffer (a transition's BatchNorm-ReLU-conv 1x1, the classifier's BatchNorm-ReLU), so that
    its own output, the concatenation, is never written."""
    affine_relu: Callable
    affine_relu_backward: Callable
    conv1x1: Callable | None = None
    conv1x1_backward: Callable | None = None
    place_map: Callable = eager_place_map
    map_gradient: Callable = eager_map_gradient
    bottleneck: Callable | None = None
    bottleneck_backward: Callable | None = None
    conv3x3_weight_gradient: Callable | None = None
    following: bool = False


EAGER = BlockOps(eager_affine_relu, eager_affine_relu_backward)


def find_ninja() -> bool:
    """Whether torch can find ninja, which builds C++ extensions. pip installs it beside this
    interpreter, a folder on PATH only in an activated environment: it is put on PATH here."""
    if shutil.which("ninja"):
        return True
    scripts = sysconfig.get_path("scripts")
    if shutil.which("ninja", path=scripts) is None:
        return False
    os.environ["PATH"] = scripts + os.pathsep + os.environ.get("PATH", "")
    return True


def _cpu() -> str:
    """What tells this CPU type apart for ``-march=native``: its instruction-set flags."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:  # not Linux
        lines = []
    flags = next((line for line in lines if line.startswith(("flags", "Features"))), "")
    return flags or f"{platform.machine()} {platform.processor()}"


def build_directory() -> Path:
    """Where the kernels are built: in torch's extensions folder, one folder per torch version and
    CPU type, since a build for one CPU (``-march=native``) may crash on another."""
    root = Path(os.environ.get("TORCH_EXTENSIONS_DIR")
                or Path.home() / ".cache" / "torch_extensions")
    cpu = hashlib.sha256(_cpu().encode()).hexdigest()[:12]
    return root / f"dense_kernels-torch{torch.__version__}-cpu{cpu}"


def _unless_damaged(folder: Path) -> None:
    """Removes a built library whose bytes are no longer those recorded when it last loaded
    (loading a damaged one can kill the process), so that ninja builds it again."""
    library, record = folder / LIBRARY, folder / (LIBRARY + ".sha256")
    if library.exists() and record.exists() and record.read_text() != files.sha256(library):
        print(f"The kernels' build in {folder} is damaged: building it again.", flush=True)
        library.unlink()


def own_3x3_weight_gradient() -> bool:
    """Whether "C++ fused" takes the 3x3 convolutions' weight gradients itself: on a CPU
    without AVX512, where ours was 1.1 to 1.7x as fast as oneDNN's (AVX2); with AVX512, oneDNN's
    own kernel was 1.07 to 2.0x as fast as ours (fp32, DenseNet shapes, 2026-12-07)."""
    return torch.backends.cpu.get_cpu_capability() != "AVX512"


@functools.cache
def build_kernels() -> dict[str, BlockOps] | None:
    """The C++ kernels, built on first use (about a minute; kept in :func:`build_directory`, and
    in this process), as two ways to run a block: "C++ affine-ReLU" and "C++ fused" (the
    module's docstring). None, with the reason printed, where they cannot be built."""
    if not find_ninja():
        print("The course's C++ kernels for DenseNets are not used: building them needs ninja "
              "(pip install ninja) and a C++ compiler.")
        return None
    quiet = logging.getLogger("torch.utils.cpp_extension")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # its import warns that CUDA is missing: not needed here
    try:
        from torch.utils.cpp_extension import load
    finally:
        quiet.setLevel(level)
    print("Loading the course's C++ kernels for DenseNets (built the first time: about a "
          "minute, once per machine)...", flush=True)
    folder = build_directory()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _unless_damaged(folder)
        module = load("dense_kernels", [str(KERNELS)], build_directory=str(folder),
                      extra_cflags=["-O3", "-march=native", "-fopenmp"])
    except (RuntimeError, OSError, ImportError, subprocess.SubprocessError) as error:
        print(f"The course's C++ kernels for DenseNets are not used: they did not build or load "
              f"({error}). A damaged build is built again once {folder} is removed.")
        return None
    try:  # what _unless_damaged compares with; a folder that cannot be written keeps none
        files.write_text(folder / (LIBRARY + ".sha256"), files.sha256(folder / LIBRARY))
    except OSError:
        pass

    def backward(grad, relu_out, buffer, start, weight, bias, grad_buffer):  # reads the buffer
        return module.affine_relu_backward(grad, buffer, start, weight, bias, grad_buffer)

    def map_gradient(grad_normalised, grad_raw, first, values, mean, inv_std, eps):
        return module.map_gradient(grad_normalised, grad_raw, first, values, mean, inv_std)

    def conv1x1(buffer, start, weight, bias, conv_weight):
        return module.affine_relu_conv1x1(buffer, start, weight, bias, conv_weight, None)[0]

    def bottleneck(buffer, start, weight, bias, conv_weight, norm_weight, norm_bias, eps):
        """(its output, and what its backward pass reads: the convolution's output, and the
        BatchNorm's batch mean and 1/std, taken from the convolution's tiles)"""
        inner, mean, inv_std = module.affine_relu_conv1x1(buffer, start, weight, bias,
                                                          conv_weight, eps)
        return (module.batchnorm_relu(inner, mean, inv_std, norm_weight, norm_bias), inner, mean,
                inv_std)

    alone = BlockOps(module.affine_relu, backward)
    return {"C++ affine-ReLU": alone,
            "C++ fused": alone._replace(
                conv1x1=conv1x1, conv1x1_backward=module.affine_relu_conv1x1_backward,
                place_map=module.place_map, map_gradient=map_gradient, bottleneck=bottleneck,
                bottleneck_backward=module.bottleneck_backward,
                conv3x3_weight_gradient=module.conv3x3_weight_gradient, following=True)}


def _unit_scale(maps: torch.Tensor) -> torch.Tensor | None:
    """None for fp32 or fp64 maps; for bf16 ones, an fp32 scale of 1 per channel: with it ATen's
    BatchNorm keeps the statistics in fp32, as a BatchNorm layer with fp32 parameters does."""
    if maps.dtype in (torch.float32, torch.float64):
        return None
    return torch.ones(maps.shape[1], dtype=torch.float32)


def _normalise(maps: torch.Tensor, eps: float):
    """(normalised maps, mean, 1/std) with the batch's statistics. ``maps`` in the usual layout:
    ATen's BatchNorm is several times slower on a dozen channels in channels-last."""
    return torch.ops.aten.native_batch_norm(maps, _unit_scale(maps), None, None, None, True, 0.0,
                                            eps)


def _fuses(ops: BlockOps, conv: nn.Module) -> bool:
    """Whether ``ops`` computes this first convolution with the affine-ReLU pass: a 1x1 one."""
    return (ops.conv1x1 is not None and isinstance(conv, nn.Conv2d)
            and conv.kernel_size == (1, 1) and conv.stride == (1, 1) and conv.groups == 1
            and conv.bias is None)


def _update_running_statistics(norm: nn.BatchNorm2d, mean, biased_variance, count: int):
    """What a BatchNorm in training does to its running statistics, from its batch's."""
    norm.running_mean.lerp_(mean, norm.momentum)
    norm.running_var.lerp_(biased_variance * (count / (count - 1)), norm.momentum)
    norm.num_batches_tracked.add_(1)


def _bottleneck(ops: BlockOps, net: nn.Sequential) -> bool:
    """Whether ``ops`` computes this dense layer's bottleneck, the 1x1 convolution between two
    BatchNorm-ReLU pairs, up to its second ReLU."""
    return (ops.bottleneck is not None and len(net) > 4 and _fuses(ops, net[2])
            and isinstance(net[3], nn.BatchNorm2d) and isinstance(net[4], nn.ReLU))


def _is_conv3x3(module: nn.Module) -> bool:
    """A 3x3 convolution that keeps the map's size (stride 1, padding 1), without a bias."""
    return (isinstance(module, nn.Conv2d) and module.kernel_size == (3, 3)
            and module.stride == (1, 1) and module.padding == (1, 1)
            and module.dilation == (1, 1) and module.groups == 1 and module.bias is None
            and module.padding_mode == "zeros")


class _Conv3x3(torch.autograd.Function):
    """Such a convolution as autograd computes it, but for its weight gradient, which ``ops``
    computes (oneDNN's is the slowest of its three passes on an AVX2-only CPU)."""

    @staticmethod
    def forward(ctx, x, weight, ops):
        ctx.save_for_backward(x, weight)
        ctx.ops = ops
        return F.conv2d(x, weight, padding=1)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad_x = torch.ops.aten.convolution_backward(
            grad, x, weight, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1,
            [ctx.needs_input_grad[0], False, False])[0]
        return grad_x, ctx.ops.conv3x3_weight_gradient(grad, x), None


def _rest_of_layer(modules: nn.Sequential, x: torch.Tensor, ops: BlockOps) -> torch.Tensor:
    """``modules(x)``, each 3x3 convolution's weight gradient taken by ``ops`` where it can (float
    maps outside autocast) and pays (:func:`own_3x3_weight_gradient`)."""
    ours = (ops.conv3x3_weight_gradient is not None and x.dtype in (torch.float32, torch.float64)
            and not torch.is_autocast_enabled("cpu") and own_3x3_weight_gradient())
    for module in modules:
        x = _Conv3x3.apply(x, module.weight, ops) if ours and _is_conv3x3(module) else module(x)
    return x


class _SharedStatisticsBlock(torch.autograd.Function):
    """A dense block's training forward and backward, and where ``head`` is given, that of the
    modules after it that it computes (BatchNorm, ReLU, where given a 1x1 convolution); the
    parameters of both are passed only so that autograd hands their gradients back."""

    @staticmethod
    def forward(ctx, x, block, ops, head, *parameters):
        layers = list(block.block)
        batch, c_in, height, width = x.shape
        growth = [m for m in layers[0].net if isinstance(m, nn.Conv2d)][-1].out_channels
        channels = c_in + len(layers) * growth
        starts = [channels - c_in - index * growth for index in range(len(layers))]
        eps = layers[0].net[0].eps
        normalised = torch.empty(batch, channels, height, width, dtype=x.dtype,
                                 memory_format=CHANNELS_LAST)
        raw = None if head is not None else torch.empty_like(normalised)  # the block's output
        maps = []  # (the map as place_map keeps it, its mean, its 1/std, its first channel)

        def add(new: torch.Tensor, first: int):
            maps.append((*ops.place_map(new, raw, normalised, first, eps), first))

        add(x, channels - c_in)
        graphs = []
        for layer, start in zip(layers, starts):  # a layer reads channels [start, channels)
            net = layer.net
            common = (normalised, start, net[0].weight.detach(), net[0].bias.detach())
            if _bottleneck(ops, net):  # saved: what bottleneck_backward reads
                inner, *saved = ops.bottleneck(*common, net[2].weight.detach(),
                                               net[3].weight.detach(), net[3].bias.detach(),
                                               net[3].eps)
                _, mean, inv_std = saved
                _update_running_statistics(net[3], mean, inv_std.pow(-2) - net[3].eps,
                                           batch * height * width)
                rest = net[5:]
            elif _fuses(ops, net[2]):
                inner, saved, rest = ops.conv1x1(*common, net[2].weight.detach()), None, net[3:]
            else:
                inner, saved, rest = ops.affine_relu(*common), None, net[2:]
            with torch.enable_grad():  # the rest of the layer: autograd, as it is
                inner.requires_grad_()
                new = _rest_of_layer(rest, inner, ops)
            graphs.append((inner, new, rest, saved))
            add(new.detach(), start - growth)
        # every first BatchNorm's running statistics, as each would have updated its own
        means = torch.cat([mean for _, mean, _, _ in maps[::-1]])
        variances = torch.cat([inv_std.pow(-2) - eps for _, _, inv_std, _ in maps[::-1]])
        norms = [(layer.net[0], start) for layer, start in zip(layers, starts)]
        if head is not None:
            norms.append((head[0], 0))  # the head's BatchNorm reads all channels
        for norm, start in norms:
            _update_running_statistics(norm, means[start:], variances[start:],
                                       batch * height * width)
        output = raw
        if head is not None:
            norm = head[0]
            common = (normalised, 0, norm.weight.detach(), norm.bias.detach())
            output = (ops.conv1x1(*common, head[2].weight.detach()) if len(head) == 3
                      else ops.affine_relu(*common))
        ctx.block, ctx.ops, ctx.head, ctx.graphs, ctx.maps, ctx.starts, ctx.eps = (
            block, ops, head, graphs, maps, starts, eps)
        ctx.save_for_backward(normalised, output if head is not None and len(head) == 2 else None)
        return output

    @staticmethod
    def backward(ctx, grad_output):
        normalised, relu_out = ctx.saved_tensors
        ops, head = ctx.ops, ctx.head
        grad_output = grad_output.contiguous(memory_format=CHANNELS_LAST)  # the buffers' layout
        grad_normalised = torch.zeros_like(normalised)
        layers = list(ctx.block.block)
        grads = {}
        grad_raw = None if head is not None else grad_output
        if head is not None:
            norm = head[0]
            common = (normalised, 0, norm.weight.detach(), norm.bias.detach())
            if len(head) == 3:
                grads[head[2].weight], grads[norm.weight], grads[norm.bias] = (
                    ops.conv1x1_backward(grad_output, *common, head[2].weight.detach(),
                                         grad_normalised))
            else:
                grads[norm.weight], grads[norm.bias] = ops.affine_relu_backward(
                    grad_output, relu_out, *common, grad_normalised)

        def grad_of_map(index):  # its own output's share plus its normalisation's gradient
            values, mean, inv_std, first = ctx.maps[index]
            return ops.map_gradient(grad_normalised, grad_raw, first, values, mean, inv_std,
                                    ctx.eps)

        for index in reversed(range(len(layers))):
            inner, new, rest, saved = ctx.graphs[index]
            rest = list(rest.parameters())
            grad_inner, *grad_rest = torch.autograd.grad(new, [inner, *rest],
                                                         grad_of_map(index + 1))
            grads.update(zip(rest, grad_rest))
            net = layers[index].net
            norm = net[0]
            common = (normalised, ctx.starts[index], norm.weight.detach(), norm.bias.detach())
            if saved is not None:
                conv, second = net[2], net[3]
                (grads[conv.weight], grads[norm.weight], grads[norm.bias], grads[second.weight],
                 grads[second.bias]) = ops.bottleneck_backward(
                    grad_inner, *common, conv.weight.detach(), *saved, second.weight.detach(),
                    second.bias.detach(), grad_normalised)
            elif _fuses(ops, net[2]):
                grads[net[2].weight], grads[norm.weight], grads[norm.bias] = (
                    ops.conv1x1_backward(grad_inner, *common, net[2].weight.detach(),
                                         grad_normalised))
            else:
                grads[norm.weight], grads[norm.bias] = ops.affine_relu_backward(
                    grad_inner, inner.detach(), *common, grad_normalised)
        grad_x = grad_of_map(0)
        ctx.graphs = ctx.maps = None
        parameters = [*ctx.block.parameters(), *(head.parameters() if head is not None else [])]
        return (grad_x, None, None, None, *[grads.get(p) for p in parameters])


def _block_forward(block: DenseBlock, ops, head, straightforward, x):
    if block.training and torch.is_grad_enabled():
        output = _SharedStatisticsBlock.apply(x, block, ops, head, *block.parameters(),
                                              *(head.parameters() if head is not None else []))
        output.computed_modules = len(head) if head is not None else 0  # for _follower_forward
        return output
    return straightforward(x)  # evaluation: each BatchNorm's own running statistics


def _follower_forward(modules: nn.Sequential, straightforward, x):
    """The modules after a block, less those the block computed already (it says how many)."""
    done = getattr(x, "computed_modules", 0)
    return modules[done:](x) if done else straightforward(x)


def _heads(model: nn.Module, ops: BlockOps) -> dict:
    """For each dense block of a DenseNet, the modules that follow it and that it can compute
    from its buffer (a BatchNorm and ReLU, with ``ops``' kernels also a 1x1 convolution), and
    the Sequential they begin; nothing where ``ops`` does not compute followers."""
    if not (ops.following and type(model) is DenseNet):  # a subclass may compute otherwise
        return {}
    modules = list(model.blocks)
    heads = {}
    for block, after in zip(modules, modules[1:] + [None]):
        if not isinstance(block, DenseBlock):
            continue
        follower = after.transition if type(after) is TransitionLayer else (
            model.output_net if after is None else None)
        if (follower is None or not isinstance(follower[0], nn.BatchNorm2d)
                or follower[0].momentum is None or not isinstance(follower[1], nn.ReLU)):
            continue
        covered = 3 if len(follower) > 2 and _fuses(ops, follower[2]) else 2
        heads[block] = (follower[:covered], follower)
    return heads


def refusal(model: nn.Module) -> str | None:
    """Why :func:`shared_statistics` would not compute ``model`` alike; None where it would. It
    reads the course's dense blocks and layers module by module and never runs their forward
    code, so a subclass (which may compute otherwise) is refused."""
    blocks = [block for block in model.modules() if isinstance(block, DenseBlock)]
    layers = [layer for block in blocks for layer in block.block]
    if not blocks:
        return (f"{type(model).__name__} has no dense blocks: the shared-statistics block is a "
                "DenseNet's (e.g. densenet-bc-100-k12)")
    if any(type(block) is not DenseBlock for block in blocks) or any(
            type(layer) not in (DenseLayer, MemoryEfficientDenseLayer) for layer in layers):
        return ("the shared-statistics block computes the course's DenseBlock and DenseLayer; "
                "this model has a subclass of one, whose code it would not run")
    if not all(type(layer.net[0]) is nn.BatchNorm2d for layer in layers):
        return ("the shared-statistics block normalises each map with a BatchNorm's batch "
                "statistics; this model's dense layers begin otherwise")
    if not all(type(layer.net[1]) is nn.ReLU for layer in layers):
        return ("the shared-statistics block fuses BatchNorm with ReLU; this model's dense "
                "layers use another activation")
    norms = [norm for layer in layers for norm in layer.net if isinstance(norm, nn.BatchNorm2d)]
    if not all(norm.affine and norm.track_running_stats for norm in norms):
        return ("the shared-statistics block computes BatchNorms with affine parameters and "
                "running statistics; this model has one without")
    if any(norm.momentum is None for norm in norms):
        return ("the shared-statistics block updates running statistics with a momentum; this "
                "model's BatchNorms average them instead")
    return None


def shared_statistics(model: nn.Module, ops=EAGER) -> nn.Module:
    """``model`` with every dense block trained as described above, its passes computed by
    ``ops`` (:data:`EAGER` or one of :func:`build_kernels`' ways), patched in place (see
    :func:`as_written`). Same parameters, same results."""
    if (reason := refusal(model)) is not None:
        raise ValueError(reason)
    as_written(model)  # never patched twice
    heads = _heads(model, ops)
    for block in (module for module in model.modules() if isinstance(module, DenseBlock)):
        head, follower = heads.get(block, (None, None))
        block.forward = functools.partial(_block_forward, block, ops, head, block.forward)
        if follower is not None:
            follower.forward = functools.partial(_follower_forward, follower, follower.forward)
    return model


def _patches(model: nn.Module) -> list[nn.Module]:
    """The modules of ``model`` whose forward :func:`shared_statistics` replaced."""
    return [module for module in model.modules()
            if getattr(module.__dict__.get("forward"), "func", None) in (_block_forward,
                                                                         _follower_forward)]


def in_use(model: nn.Module, ops: BlockOps | None = None) -> bool:
    """Whether ``model``'s dense blocks train through :func:`shared_statistics` (with ``ops``,
    where given)."""
    return any(ops is None or module.forward.args[1] is ops for module in _patches(model)
               if module.forward.func is _block_forward)


def as_written(model: nn.Module) -> nn.Module:
    """``model`` computed by its modules' own code again (undoes :func:`shared_statistics`)."""
    for module in _patches(model):
        del module.forward
    return model


def fused() -> BlockOps | None:
    """The "C++ fused" way to run a block, where the kernels build (:func:`build_kernels`)."""
    return (build_kernels() or {}).get("C++ fused")
