"""Stand-ins that make a fault happen on purpose, for the tests and ``make gpu-check``."""

from __future__ import annotations

import torch


class OutOfMemoryAbove(torch.nn.Module):
    """``model``, but failing as on a full GPU (PyTorch's OutOfMemoryError) for any batch larger
    than ``limit``: exercises the recovery on machines whose memory never runs out (the tests,
    ``make gpu-check``)."""

    def __init__(self, model: torch.nn.Module, limit: int):
        super().__init__()
        self.model = model
        self.limit = limit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(x) > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory (injected by the test)")
        return self.model(x)
