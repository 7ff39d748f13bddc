"""The original checkered convolution (four shifted strided convolutions, half of them thrown
away) against the course's (only the two kept ones), side by side on the same inputs.

    python benchmarks/checkered_layer.py [--repeats 5]

For several layer shapes and samplings it prints the largest difference between the two outputs,
the time of a forward and backward pass of each and their ratio, and the peak memory of each and
their ratio, with the hardware. The original algorithm is written here from its description in
Sadigh & Sen's repository (one Conv3d with a 1 x k x k kernel applied to four shifted copies of
the zero-padded input, then a per-submap choice of two of the four results).
"""

from __future__ import annotations

import argparse
import sys
from datetime import date

import torch
from torch.nn import functional as F

from _timing import timed
from helpers._machinery import config, memory
from helpers.models.checkered import CheckeredConv2d, sampler_sequence


def four_shift_conv(x: torch.Tensor, layer: CheckeredConv2d) -> torch.Tensor:
    """The original algorithm for a stride-2, depth-1 checkered convolution of (N, C, S, H, W)."""
    pad_h, pad_w = layer.padding
    padded = F.pad(x, (pad_w, pad_w, pad_h, pad_h))

    def strided(shifted):  # keep every shifted copy the padded size: zeros at the bottom/right
        dy, dx = padded.shape[-2] - shifted.shape[-2], padded.shape[-1] - shifted.shape[-1]
        return F.conv3d(F.pad(shifted, (0, dx, 0, dy)), layer.weight, layer.bias,
                        stride=(1, 2, 2), groups=layer.groups)

    up_left, down_right = strided(padded), strided(padded[..., 1:, 1:])
    up_right, down_left = strided(padded[..., :, 1:]), strided(padded[..., 1:, :])
    top, bottom = [], []
    for submap, sampler in enumerate(sampler_sequence(x.shape[2], layer.sampling)):
        top.append((up_left if sampler == 0 else up_right)[:, :, submap])
        bottom.append((down_right if sampler == 0 else down_left)[:, :, submap])
    return torch.stack(top + bottom, dim=2)


CASES = [  # batch, channels in -> out, input submaps, size, sampling
    (32, 64, 64, 1, 32, "naive"),
    (32, 64, 128, 2, 16, "naive"),
    (32, 128, 128, 4, 16, "lattice"),
    (32, 128, 256, 8, 8, "lattice"),
    (32, 64, 64, 8, 16, "random"),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    memory.track_cpu_peaks()
    device = config.device_type()
    print(f"checkered 3x3 stride-2 convolution, forward + backward; {config.hardware()}, "
          f"torch {torch.__version__}, fp32, {date.today()}")
    header = ("batch x C_in->C_out x S x HxW, sampling", "max |diff|", "original ms", "ours ms",
              "speed-up", "original MiB", "ours MiB", "memory ratio")
    print(" | ".join(header))
    worst = 0.0
    for batch, c_in, c_out, submaps, size, sampling in CASES:
        torch.manual_seed(0)
        layer = CheckeredConv2d(c_in, c_out, 3, stride=2, padding=1, sampling=sampling).to(device)
        x = torch.randn(batch, c_in, submaps, size, size, device=device, requires_grad=True)
        with torch.no_grad():
            difference = (four_shift_conv(x, layer) - layer(x)).abs().max().item()
        worst = max(worst, difference)

        def step(forward, x=x, layer=layer):
            return lambda: forward(x, layer).square().mean().backward()

        original, ours = step(four_shift_conv), step(lambda x, layer: layer(x))
        t_original, t_ours = timed((original, ours), args.repeats)
        m_original, m_ours = memory.peak_memory_mib(original), memory.peak_memory_mib(ours)
        ratio = f"{m_original / m_ours:.2f}" if m_original and m_ours else "-"
        print(f"{batch} x {c_in}->{c_out} x {submaps} x {size}x{size}, {sampling} | "
              f"{difference:.1e} | {1000 * t_original:.1f} | {1000 * t_ours:.1f} | "
              f"{t_original / t_ours:.2f}x | {m_original} | {m_ours} | {ratio}")
    print(f"largest difference between the two outputs: {worst:.1e}")
    return 0 if worst < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
