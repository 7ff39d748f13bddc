"""The memory layout a run's convolutions compute in: each batch handed over with its strides."""

from __future__ import annotations

import torch


def images_in_layout(images: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """A batch with the strides of the layout its run trains in, copied where they differ, so
    that the convolutions compute in that layout. ``contiguous()`` would not do: it keeps the
    strides of a one-channel batch (a size-1 dimension's stride does not count). So a crop
    gathered per pixel (``data.random_crop``, channels-last strides) would run channels-last in
    the usual layout, and under channels-last an uncropped one-channel batch would run the first
    convolution in the usual layout (``models.to_channels_last`` gives the weights theirs)."""
    layout = torch.channels_last if channels_last else torch.contiguous_format
    if images.stride() != torch.empty(images.shape, device="meta", memory_format=layout).stride():
        return images.clone(memory_format=layout)
    return images
