"""Figures and tables the notebooks show: image grids, training curves, confusion, predictions.

Each function returns a matplotlib Figure (or a DataFrame) and draws nothing else, so a notebook
cell that ends with the call displays it, and tests can inspect it. The architecture diagrams
(``allcnn_diagram`` and the others) are drawn in :mod:`helpers._diagrams`, and the tables of runs
(``show_results`` and the others) are formatted in :mod:`helpers._display`.
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

from ._diagrams import (allcnn_diagram, checkered_diagram, dense_block_diagram,  # noqa: F401
                        inception_diagram, residual_blocks_diagram)
from ._display import (against_reference_table, interactive, last_batch_table,  # noqa: F401
                       results_table, show_now, show_results)


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


MIN_CURVE_EPOCHS = 3


def training_curves(histories: pd.DataFrame | dict, title: str | None = None) -> plt.Figure | None:
    """Loss, accuracy and learning rate per epoch; train solid, validation dashed.

    ``histories`` is one history table (``Run.history``) or a dict of them, one line per run.
    A run of fewer than MIN_CURVE_EPOCHS epochs (a smoke run) is no curve: its numbers are printed
    as text instead, and without a longer run there is no figure (None)."""
    if isinstance(histories, pd.DataFrame):
        histories = {"": histories}
    short = {label: h for label, h in histories.items() if len(h) < MIN_CURVE_EPOCHS}
    if short:
        print(f"{title or 'training'}: too few epochs to draw as curves")
        for label, history in short.items():
            print(f"  {label or 'run'}: " + "; ".join(
                f"epoch {row.epoch}: train {row.train_acc:.1%} (loss {row.train_loss:.3f}),"
                f" val {row.val_acc:.1%} (loss {row.val_loss:.3f})"
                for row in history.itertuples()))
    histories = {label: h for label, h in histories.items() if label not in short}
    if not histories:
        return None
    figure, (loss_ax, acc_ax, lr_ax) = plt.subplots(1, 3, figsize=(15, 3.8), layout="constrained")
    colours = sns.color_palette(n_colors=max(len(histories), 1))
    for colour, (label, history) in zip(colours, histories.items()):
        prefix = f"{label} " if label else ""
        for split, style in (("train", "-"), ("val", "--")):
            loss_ax.plot(history["epoch"], history[f"{split}_loss"], style, color=colour,
                         marker=".", label=f"{prefix}{split}")
            acc_ax.plot(history["epoch"], 100 * history[f"{split}_acc"], style, color=colour,
                        marker=".", label=f"{prefix}{split}")
        lr_ax.plot(history["epoch"], history["lr"], color=colour, marker=".")
    for ax in (loss_ax, acc_ax, lr_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    loss_ax.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    acc_ax.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    lr_ax.set(xlabel="epoch", ylabel="learning rate", title="learning rate (epoch start)")
    rates = pd.concat([history["lr"] for history in histories.values()])
    if (rates > 0).all() and rates.max() / rates.min() > 20:  # recipes orders of magnitude apart
        lr_ax.set(yscale="log", ylabel="learning rate (log scale)")
    figure.legend(*acc_ax.get_legend_handles_labels(), loc="outside right upper", fontsize=8,
                  title="train solid,\nvalidation dashed", title_fontsize=8)  # beside the data
    if title:
        figure.suptitle(title)
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
    show_now(predictions_gallery(images[pick], labels[pick], probabilities[pick], classes,
                                  title=f"{title}: {count} random test images"))
    predicted = probabilities.argmax(1)
    show_now(confusion_matrix(labels, predicted, classes, title=f"{title}: confusion matrix"))
    return most_confused(labels, predicted, classes, top=8)


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
    from .models.checkered import sampled_pixels
    side = 2.3 if size <= 16 else 2.8  # larger maps need larger squares to show their pixels
    figure, axes = plt.subplots(len(methods), steps, squeeze=False, layout="constrained",
                                figsize=(side * steps, (side + 0.4) * len(methods)))
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


def feature_maps(model: torch.nn.Module, image: torch.Tensor, layers: dict,
                 channels: int = 8, title: str | None = None) -> plt.Figure:
    """What ``model`` computes for one normalised ``image`` (C x H x W): the input, then the
    first ``channels`` output maps of each module in ``layers`` ({label: module}), one row each,
    recorded with forward hooks."""
    outputs, hooks = {}, []
    for label, module in layers.items():
        hooks.append(module.register_forward_hook(
            lambda _module, _inputs, output, label=label: outputs.__setitem__(label, output)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(image.unsqueeze(0))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    figure, axes = plt.subplots(len(layers) + 1, channels, squeeze=False,
                                figsize=(1.3 * channels, 1.45 * (len(layers) + 1)))
    for ax in axes.flat:
        ax.set_axis_off()
    axes[0][0].imshow(image[0].cpu().numpy(), cmap="gray")
    axes[0][0].set_title("input", fontsize=8)
    for row, (label, output) in enumerate(outputs.items(), start=1):
        maps = output[0].float().cpu()
        for column in range(min(channels, len(maps))):
            axes[row][column].imshow(maps[column].numpy(), cmap="viridis")
        axes[row][0].set_title(f"{label}: {tuple(maps.shape)}", fontsize=8, loc="left")
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure


def against_reference(yours: dict, reference: dict, title: str | None = None) -> plt.Figure | None:
    """Your runs beside the course's reference runs of the same models, on one plot each for
    validation accuracy and training loss, against the training images seen (log axis: the
    reference runs see many times more). ``yours`` and ``reference`` map a model's label to
    its run; one colour per label, yours solid, the reference dashed. A run of one epoch (a
    smoke run) is a single point."""
    labels = list(dict.fromkeys([*yours, *reference]))
    colours = dict(zip(labels, sns.color_palette(n_colors=max(len(labels), 1))))
    figure, (acc_ax, loss_ax) = plt.subplots(1, 2, figsize=(13, 3.8), layout="constrained")
    drawn = False
    for runs, style, whose in ((reference, "--", "reference"), (yours, "-", "yours")):
        for label, run in runs.items():
            if run is None or run.history is None:
                continue
            seen = run.history["epoch"] * run.info["images"]["train"]
            for ax, column, scale in ((acc_ax, "val_acc", 100), (loss_ax, "train_loss", 1)):
                ax.plot(seen, scale * run.history[column], style, color=colours[label],
                        marker="o", markersize=4, label=f"{label} ({whose})")
            drawn = True
    if not drawn:
        plt.close(figure)
        return None
    for ax in (acc_ax, loss_ax):
        ax.set_xscale("log")
        ax.set_xlabel("training images seen (log scale)")
    acc_ax.set(ylabel="validation accuracy (%)", title="validation accuracy")
    loss_ax.set(ylabel="cross-entropy", title="training loss")
    # below the plots: beside them, a long title would run into it
    handles, labels = acc_ax.get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 4),
                  fontsize=8)
    if title:
        figure.suptitle(title)
    return figure
