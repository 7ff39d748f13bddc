"""Stand-ins that make a fault happen on purpose, for the tests and ``make gpu-check``."""

from __future__ import annotations

import pytorch_lightning as pl
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


class Crashed(Exception):
    """What :class:`CrashAt` raises: neither a signal nor an error of the code under test."""


class CrashAt(pl.Callback):
    """Raises :class:`Crashed` before batch ``batch`` of epoch ``epoch`` (both counted from 0):
    a run stopped mid-epoch, as by a crash, with the epochs before it kept."""

    def __init__(self, epoch: int, batch: int = 3):
        self.epoch, self.batch = epoch, batch

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            raise Crashed
