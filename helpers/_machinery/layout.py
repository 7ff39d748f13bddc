"""The memory layout a run's convolutions compute in: each batch handed over with its strides."""

from __future__ import annotations

import torch


def images_in_layout(images: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """A batch with the strides of the layout its run trains in, so that the convolutions
    compute in that layout. The usual layout takes a copy where a batch comes with other
    strides: a crop gathered per pixel (``data.random_crop``) hands over channels-last ones, and
    ``contiguous()`` keeps those of a one-channel batch (a size-1 dimension's stride does not
    count), with which the convolutions would run channels-last. (The other way round, an
    uncropped one-channel batch keeps the usual strides under channels-last and its first
    convolution computes in the usual layout, as the course's measured CPU-mode runs did.)"""
    if channels_last:
        return images.contiguous(memory_format=torch.channels_last)
    if images.stride() != torch.empty(images.shape, device="meta").stride():
        return images.clone(memory_format=torch.contiguous_format)
    return images
