"""Training that survives running out of memory: an opt-in :class:`MemorySafeClassifier`.

The feature-amount sweep (notebook 05) trains variants whose widest layers may not fit on the
device with the recipe's batch. Instead of failing, a batch that runs out of memory is redone in
micro-batches of half the size, accumulating the gradients of the loss normalised by the whole
batch, so that the optimizer sees the same batch (BatchNorm, though, then normalises per
micro-batch). The smaller size is kept for the following batches; a batch that does not fit
even in the smallest micro-batches stops the run with :class:`DoesNotFit`. Evaluation batches
are likewise cut into chunks on demand. ``training.fit(..., memory_safe=True)`` turns it on.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from ._machinery.memory import is_out_of_memory, release_memory as _release_memory
from .classifier import Classifier


class DoesNotFit(RuntimeError):
    """A training batch does not fit in memory even split into the smallest micro-batches."""


class MemorySafeClassifier(Classifier):
    """A :class:`~helpers.classifier.Classifier` whose batches are cut smaller when they do not
    fit in memory (manual optimisation: it decides itself when to step the optimizer).
    ``micro_batch`` is the training batch size in use; below ``min_micro_batch`` the run stops.
    It is kept in the checkpoints, so that a resumed run goes on with it and records it."""

    def __init__(self, *args, min_micro_batch: int = 2, **kwargs):
        super().__init__(*args, **kwargs)
        self.automatic_optimization = False
        self.micro_batch = None
        self.min_micro_batch = min_micro_batch
        self.eval_chunk = None

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["micro_batch"] = self.micro_batch

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # Resuming: the size the run had reached. Testing the best epoch after training in
        # this process keeps the size in use, which an earlier epoch's checkpoint may exceed.
        if self.micro_batch is None:
            self.micro_batch = checkpoint.get("micro_batch")

    def training_step(self, batch, batch_idx):
        images, labels = batch
        if self.micro_batch is None:
            self.micro_batch = len(labels)
        optimizer = self.optimizers()
        while (loss := self._accumulate(images, labels)) is None:  # recover outside except
            optimizer.zero_grad(set_to_none=True)
            _release_memory()
            if self.micro_batch // 2 < self.min_micro_batch:
                raise DoesNotFit(f"a batch of {len(labels)} does not fit in memory even in "
                                 f"micro-batches of {self.micro_batch}")
            self.micro_batch //= 2
            print(f"Out of memory: redoing the batch in micro-batches of {self.micro_batch}.")
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        self.lr_schedulers().step()
        return loss

    def _accumulate(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor | None:
        """Gradients of the batch's mean loss, summed over micro-batches; returns the loss, or
        None (and partial gradients) if the device ran out of memory."""
        loss = images.new_zeros((), dtype=torch.float32)
        correct = images.new_zeros((), dtype=torch.long)
        try:
            for part_images, part_labels in zip(images.split(self.micro_batch),
                                                labels.split(self.micro_batch)):
                logits = self(part_images)
                part = F.cross_entropy(logits, part_labels, reduction="sum",
                                       label_smoothing=self.recipe.label_smoothing) / len(labels)
                self.manual_backward(part)
                loss += part.detach()
                correct += (logits.argmax(dim=1) == part_labels).sum()
        except RuntimeError as error:
            if not is_out_of_memory(error):
                raise
            return None
        self.log_metrics("train", loss, correct / len(labels), len(labels))
        return loss

    def evaluation_logits(self, images: torch.Tensor) -> torch.Tensor:
        """The classifier's evaluation logits, in chunks halved after each out-of-memory error
        (the size found is kept for later batches)."""
        while True:
            size = self.eval_chunk or len(images)
            try:
                return torch.cat([super(MemorySafeClassifier, self).evaluation_logits(part)
                                  for part in images.split(size)])
            except RuntimeError as error:
                if not is_out_of_memory(error):
                    raise
            _release_memory()
            if size == 1:
                raise DoesNotFit("a single image does not fit in memory for evaluation")
            self.eval_chunk = size // 2
