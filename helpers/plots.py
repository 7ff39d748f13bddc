"""Figures and tables the notebooks show: image grids, training curves, confusion, predictions.

Each function returns a matplotlib Figure (or a DataFrame) and draws nothing else, so a notebook
cell that ends with the call displays it, and tests can inspect it.
"""

from __future__ import annotations

import inspect
import math

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator
import numpy as np
import pandas as pd
import seaborn as sns
import torch


def _as_image(image: torch.Tensor) -> np.ndarray:
    """A uint8 C x H x W tensor as something imshow draws (H x W or H x W x 3)."""
    array = image.detach().cpu()
    return array[0].numpy() if array.shape[0] == 1 else array.permute(1, 2, 0).numpy()


def image_grid(images: torch.Tensor, labels=None, classes=None, ncols: int = 8,
               title: str | None = None) -> plt.Figure:
    """Images (uint8, N x C x H x W) in a grid, each titled with its class name."""
    n = len(images)
    nrows = math.ceil(n / ncols)
    figure, axes = plt.subplots(nrows, ncols, figsize=(1.4 * ncols, 1.6 * nrows), squeeze=False)
    for index, ax in enumerate(axes.flat):
        ax.axis("off")
        if index < n:
            ax.imshow(_as_image(images[index]), cmap="gray")
            if labels is not None:
                label = int(labels[index])
                ax.set_title(classes[label] if classes else str(label), fontsize=8)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure


def training_curves(histories: pd.DataFrame | dict, title: str | None = None) -> plt.Figure:
    """Loss, accuracy and learning rate per epoch; train solid, validation dashed.

    ``histories`` is one history table (``Run.history``) or a dict of them, one line per run."""
    if isinstance(histories, pd.DataFrame):
        histories = {"": histories}
    figure, (loss_ax, acc_ax, lr_ax) = plt.subplots(1, 3, figsize=(14, 3.8))
    colours = sns.color_palette(n_colors=max(len(histories), 1))
    for colour, (label, history) in zip(colours, histories.items()):
        prefix = f"{label} " if label else ""
        for split, style in (("train", "-"), ("val", "--")):
            loss_ax.plot(history["epoch"], history[f"{split}_loss"], style, color=colour,
                         marker=".", label=f"{prefix}{split}")
            acc_ax.plot(history["epoch"], 100 * history[f"{split}_acc"], style, color=colour,
                        marker=".", label=f"{prefix}{split}")
        lr_ax.plot(history["epoch"], history["lr"], color=colour, marker=".", label=label or None)
    for ax in (loss_ax, acc_ax, lr_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    loss_ax.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    acc_ax.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    lr_ax.set(xlabel="epoch", ylabel="learning rate", title="learning rate (epoch start)")
    loss_ax.legend(fontsize=8)
    acc_ax.legend(fontsize=8)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure


LOGGED = {"val_acc": "validation accuracy", "train_loss": "training loss",
          "lr": "learning rate"}


def logged_curves(logs: dict, tags: dict = LOGGED, title: str | None = None) -> plt.Figure:
    """One panel per logged quantity (``tags``: tag -> panel title) against training epochs, one
    line per run; ``logs`` maps a run's name to a table with columns tag, epoch, value (as
    ``checkpoints.tutorial5_log`` returns)."""
    figure, axes = plt.subplots(1, len(tags), figsize=(4.7 * len(tags), 3.6), squeeze=False)
    for ax, (tag, panel_title) in zip(axes[0], tags.items()):
        for label, log in logs.items():
            rows = log[log["tag"] == tag]
            ax.plot(rows["epoch"], rows["value"], label=label, linewidth=1)
        ax.set(xlabel="epoch", title=panel_title)
        if tag in ("lr", "train_loss"):
            ax.set_yscale("log")
    axes[0][0].legend(fontsize=8)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure


def confusion_matrix(labels: torch.Tensor, predictions: torch.Tensor, classes: list,
                     title: str | None = None) -> plt.Figure:
    """Row-normalised confusion matrix (rows: true class); class names shown up to 20 classes."""
    k = len(classes)
    counts = torch.bincount(labels * k + predictions, minlength=k * k).reshape(k, k).double()
    rates = (counts / counts.sum(dim=1, keepdim=True).clamp(min=1)).numpy()
    names = classes if k <= 20 else False
    size = 6 if k <= 20 else 9
    figure, ax = plt.subplots(figsize=(size + 1, size))
    sns.heatmap(rates, ax=ax, cmap="viridis", vmin=0, vmax=1, square=True,
                xticklabels=names, yticklabels=names, cbar_kws={"label": "fraction of true class"})
    ax.set(xlabel="predicted class", ylabel="true class",
           title=title or f"confusion matrix ({k} classes)")
    figure.tight_layout()
    return figure


def most_confused(labels: torch.Tensor, predictions: torch.Tensor, classes: list,
                  top: int = 10) -> pd.DataFrame:
    """The ``top`` most frequent (true, predicted) mistakes, with counts."""
    k = len(classes)
    wrong = labels != predictions
    pairs = torch.bincount(labels[wrong] * k + predictions[wrong], minlength=k * k)
    counts, index = pairs.topk(min(top, int((pairs > 0).sum())))
    return pd.DataFrame({"true": [classes[i // k] for i in index.tolist()],
                         "predicted as": [classes[i % k] for i in index.tolist()],
                         "count": counts.tolist()})


def predictions_gallery(images: torch.Tensor, labels: torch.Tensor, probabilities: torch.Tensor,
                        classes: list, top: int = 3, title: str | None = None) -> plt.Figure:
    """Each image beside its ``top`` predicted classes and their probabilities; the true class's
    bar is green, others red."""
    n = len(images)
    figure, axes = plt.subplots(n, 2, figsize=(6.5, 1.3 * n), squeeze=False,
                                gridspec_kw={"width_ratios": [1, 2.2]})
    for row, (image_ax, bar_ax) in enumerate(axes):
        image_ax.imshow(_as_image(images[row]), cmap="gray")
        image_ax.axis("off")
        image_ax.set_title(f"true: {classes[int(labels[row])]}", fontsize=8)
        values, index = probabilities[row].topk(top)
        colours = ["tab:green" if i == int(labels[row]) else "tab:red" for i in index.tolist()]
        bar_ax.barh(range(top), values.tolist(), color=colours)
        bar_ax.set_yticks(range(top), [classes[i] for i in index.tolist()], fontsize=8)
        bar_ax.invert_yaxis()
        bar_ax.set_xlim(0, 1)
        bar_ax.tick_params(axis="x", labelsize=7)
    axes[-1][1].set_xlabel("predicted probability")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure


def predictions_report(images: torch.Tensor, labels: torch.Tensor, probabilities: torch.Tensor,
                       classes: list, title: str, count: int = 8, seed: int = 0) -> pd.DataFrame:
    """What a classifier does on its test set, from its predicted probabilities: a gallery of
    ``count`` test images drawn at random (seeded, so every run shows the same ones), the
    confusion matrix, and the table of its most frequent mistakes, which it returns."""
    pick = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))[:count]
    _show_now(predictions_gallery(images[pick], labels[pick], probabilities[pick], classes,
                                  title=f"{title}: {count} random test images"))
    predicted = probabilities.argmax(1)
    _show_now(confusion_matrix(labels, predicted, classes, title=f"{title}: confusion matrix"))
    return most_confused(labels, predicted, classes, top=8)


def _show_now(figure: plt.Figure) -> None:
    """Display ``figure`` at this point of a cell's output (not after it) and close it."""
    from IPython.display import display
    display(figure)
    plt.close(figure)


def channel_growth(networks: dict, title: str | None = None) -> plt.Figure:
    """Input channels of every dense layer, in order, for DenseNets: the width grows by the
    growth rate with each layer and drops at each transition (with compression)."""
    from .models.densenet import DenseLayer
    figure, ax = plt.subplots(figsize=(9, 3.8))
    for label, network in networks.items():
        widths = [m.net[0].num_features for m in network.modules() if isinstance(m, DenseLayer)]
        ax.plot(range(1, len(widths) + 1), widths, marker=".", markersize=3, label=label)
    ax.set(xlabel="dense layer (in order through the network)",
           ylabel="input channels of the layer", title=title or "channel growth in DenseNets")
    ax.legend()
    figure.tight_layout()
    return figure


def sampled_pixels_figure(size: int = 16, steps: int = 3,
                          methods=("traditional", "naive", "lattice", "random")) -> plt.Figure:
    """Which input pixels are still sampled after 1..steps stride-2 subsamplings, per method
    (rows) and step (columns); each colour is one submap, white is not sampled."""
    from .checkered import sampled_pixels
    figure, axes = plt.subplots(len(methods), steps, figsize=(2.3 * steps, 2.4 * len(methods)),
                                squeeze=False)
    for row, method in enumerate(methods):
        for column in range(steps):
            kept = sampled_pixels(size, column + 1, method).float()
            kept[kept < 0] = float("nan")
            ax = axes[row][column]
            ax.imshow(kept.numpy(), cmap="tab20", interpolation="nearest", vmin=0, vmax=19)
            ax.set_xticks([])
            ax.set_yticks([])
            submaps = int(kept.nan_to_num(-1).max()) + 1
            ax.set_title(f"{column + 1} step{'s' * (column > 0)}: {submaps} submap"
                         f"{'s' * (submaps > 1)}", fontsize=8)
            if column == 0:
                ax.set_ylabel(method)
    figure.suptitle(f"pixels of a {size}x{size} input still sampled (colour: submap)")
    figure.tight_layout()
    return figure


def width_profiles(profiles: dict, title: str | None = None) -> plt.Figure:
    """Layer widths (the convolutions', then the hidden layers') of several networks, one
    line each, on a log scale."""
    figure, ax = plt.subplots(figsize=(9, 3.8))
    for label, widths in profiles.items():
        ax.plot(range(1, len(widths) + 1), widths, marker="o", markersize=3, label=label)
    ax.set_yscale("log")
    ax.set(xlabel="layer (13 convolutions, then 2 hidden linear layers)", ylabel="width",
           title=title or "feature amounts per layer")
    ax.set_xticks(range(1, len(next(iter(profiles.values()))) + 1))
    ax.legend(fontsize=8)
    figure.tight_layout()
    return figure


def show_source(obj) -> None:
    """Display the source code of a class or function from helpers, syntax-highlighted."""
    from IPython.display import Code, display
    display(Code(inspect.getsource(obj), language="python"))
