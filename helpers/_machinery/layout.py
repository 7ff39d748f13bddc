"""The memory layout a run's convolutions compute in: each batch handed over with its strides."""

from __future__ import annotations

import torch


def in_layout(tensor: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """``tensor`` (a batch of images) with the strides of the layout its run trains in, copied
    where they differ, so that the convolutions compute in that layout. ``contiguous()`` would
    not do: it keeps the strides of a tensor with one channel (a size-1 dimension's stride does
    not count). So a crop gathered per pixel (``data.random_crop``, channels-last strides) would
    run channels-last in the usual layout, and under channels-last an uncropped one-channel
    batch would run the first convolution in the usual layout (``models.to_channels_last``
    gives the weights their strides)."""
    layout = torch.channels_last if channels_last else torch.contiguous_format
    if tensor.stride() != torch.empty(tensor.shape, device="meta", memory_format=layout).stride():
        return tensor.clone(memory_format=layout)
    return tensor
