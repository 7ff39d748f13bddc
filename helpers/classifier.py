"""The course's image classifier as a Lightning module: what one training step is.

It reads like Lightning's own image-classifier example: the training step is forward, loss, log,
and Lightning does the backward pass, the optimizer step and the learning-rate schedule
(automatic optimisation). The network itself is any ``nn.Module`` from :mod:`helpers.models`;
the :class:`~helpers.recipes.Recipe` says how to optimise it. Runs whose batches may not fit in
memory use :class:`helpers.memory_safe.MemorySafeClassifier`, which redoes such a batch in
smaller pieces.
"""

from __future__ import annotations

import dataclasses

import pytorch_lightning as pl
import torch
from torch import nn
from torch.nn import functional as F

from ._machinery import dense_kernels
from ._machinery.lightning import gathered_in_order
from ._machinery.layout import images_in_layout
from .models.layers import to_channels_last
from .recipes import Recipe, lr_factor


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The fraction of images whose highest score is their label's."""
    return (logits.argmax(dim=1) == labels).float().mean()


class Classifier(pl.LightningModule):
    """Image classification: cross-entropy (with the recipe's label smoothing) and accuracy.

    Epoch metrics are means weighted by batch size, so validation and test accuracy cover every
    image, the last batch included. ``channels_last`` stores weights and inputs channels-last
    (faster convolutions on most hardware); ``tta`` evaluates each image together with its
    mirror image.
    """

    def __init__(self, model: nn.Module, recipe: Recipe | None = None, seed: int = 0,
                 channels_last: bool = False, tta: bool = False):
        super().__init__()
        self.model = to_channels_last(model) if channels_last else model
        self.recipe = recipe
        self.seed = seed
        self.channels_last = channels_last
        self.tta = tta
        self.test_probabilities = None  # a list to collect them in, when wanted
        self.run_definition = None  # the run's definition, kept in its checkpoints by fit
        self.save_hyperparameters({
            "model": getattr(model, "blueprint", None), "seed": seed,
            "recipe": dataclasses.asdict(recipe) if recipe else None})

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # binds a checkpoint to its run: one copied from another run's folder is refused
        checkpoint["run_definition"] = self.run_definition
        checkpoint["channels_last"] = self.channels_last  # a resumed run keeps its layout
        checkpoint["dense_kernels"] = dense_kernels.in_use(self.model)  # and its DenseNet kernels

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images_in_layout(images, self.channels_last))

    def training_step(self, batch, batch_idx):
        images, labels = batch
        logits = self(images)
        loss = F.cross_entropy(logits, labels, label_smoothing=self.recipe.label_smoothing)
        self.log_metrics("train", loss, accuracy(logits, labels), len(labels))
        return loss

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        # A data module that tests every epoch serves the test set as a second loader.
        self.evaluation_step(batch, "val" if dataloader_idx == 0 else "test")

    def test_step(self, batch, batch_idx):
        probabilities = self.evaluation_step(batch, "test")
        if self.test_probabilities is not None:  # kept by fit: notebooks plot from them
            self.test_probabilities.append(probabilities.to(torch.float16).cpu())

    def on_test_epoch_end(self):
        # Several processes each tested every n-th image (see DeviceLoader): their
        # probabilities are gathered back into the test split's order, on every process.
        if self.test_probabilities is not None and self.trainer.world_size > 1:
            self.test_probabilities = [gathered_in_order(self, self.test_probabilities)]

    def predict_step(self, batch, batch_idx):
        images, labels = batch
        return self.evaluation_logits(images).float().softmax(dim=1), labels

    def evaluation_step(self, batch, stage: str) -> torch.Tensor:
        """Log the batch's loss and accuracy; return its class probabilities."""
        images, labels = batch
        logits = self.evaluation_logits(images)
        self.log_metrics(stage, F.cross_entropy(logits, labels), accuracy(logits, labels),
                         len(labels))
        return logits.float().softmax(dim=1)

    def evaluation_logits(self, images: torch.Tensor) -> torch.Tensor:
        """Logits of an evaluation batch; with ``tta``, the log of the mean of the probabilities
        for each image and its mirror image (whose cross-entropy is their NLL)."""
        if not self.tta:
            return self(images)
        return ((self(images).float().softmax(1) + self(images.flip(3)).float().softmax(1))
                / 2).log()

    def log_metrics(self, stage: str, loss: torch.Tensor, accuracy: torch.Tensor,
                    images: int) -> None:
        """Log ``<stage>_loss`` and ``<stage>_acc`` of a batch of ``images``, for the epoch's
        means weighted by batch size (summed over devices when several train one run)."""
        # The count is given as a float: Lightning averages the sums and the counts over the
        # processes, and an integer count of an uneven split (151 + 150 images) would average
        # to 150, not 150.5. With one process the result is the same either way.
        for name, value in (("loss", loss), ("acc", accuracy)):
            self.log(f"{stage}_{name}", value, on_step=False, on_epoch=True,
                     batch_size=float(images),
                     sync_dist=True, add_dataloader_idx=False,
                     prog_bar=name == "acc" and stage != "test")

    def on_train_epoch_start(self):
        # Shuffling, augmentation and dropout are seeded per epoch, so that a resumed run
        # continues exactly as an uninterrupted one would have.
        loader = self.trainer.train_dataloader
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(self.current_epoch)
        torch.manual_seed(self.seed * 7919 + self.current_epoch + 1_000_003 * self.global_rank)

    def configure_optimizers(self):
        recipe = self.recipe
        fused = {"fused": True} if self.device.type == "cuda" else {}
        if recipe.optimizer == "sgd":
            optimizer = torch.optim.SGD(self.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                                        nesterov=recipe.nesterov,
                                        weight_decay=recipe.weight_decay, **fused)
        else:  # "adamw": the recipe has checked its optimizer's name
            optimizer = torch.optim.AdamW(self.parameters(), lr=recipe.lr,
                                          weight_decay=recipe.weight_decay, **fused)
        epochs = self.trainer.max_epochs
        steps_per_epoch = self.trainer.estimated_stepping_batches / epochs
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_factor(recipe, (step + 0.5) / steps_per_epoch, epochs))
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
