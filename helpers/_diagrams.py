"""The architecture diagrams the notebooks show, drawn with matplotlib boxes and arrows.

Each is drawn from the models' own definitions where it can (the AllCNN stack is traced by running
an image through it; the Inception block reads Tutorial 5's channel table), so it cannot go stale.
The functions are :mod:`helpers.plots`'; this module holds how they are drawn."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch


_FILL = {"conv": "#cfe2f3", "norm": "#d9ead3", "act": "#fff2cc", "pool": "#f4cccc",
         "join": "#ead1dc", "io": "#eeeeee"}


def _fill(label: str) -> str:
    text = label.lower()
    if text == "+" or "concat" in text:
        return _FILL["join"]
    for words, kind in ((("pool",), "pool"), (("conv",), "conv"), (("batchnorm",), "norm"),
                        (("relu",), "act")):
        if any(word in text for word in words):
            return _FILL[kind]
    return _FILL["io"]


def _box(ax, x: float, y: float, label: str, width: float = 2.4, height: float = 0.5) -> tuple:
    """A labelled box centred at (x, y), coloured by what it does; returns its centre."""
    from matplotlib.patches import FancyBboxPatch
    ax.add_patch(FancyBboxPatch((x - width / 2, y - height / 2), width, height,
                                boxstyle="round,pad=0.03", facecolor=_fill(label),
                                edgecolor="0.35", linewidth=0.8))
    ax.text(x, y, label, ha="center", va="center", fontsize=8)
    return x, y


def _arrow(ax, start: tuple, end: tuple, gap: float = 0.27, style: str = "arc3") -> None:
    """An arrow from the bottom of the box at ``start`` to the top of the box at ``end``."""
    ax.annotate("", xy=(end[0], end[1] + gap), xytext=(start[0], start[1] - gap),
                arrowprops={"arrowstyle": "->", "color": "0.3", "linewidth": 0.9,
                            "connectionstyle": style})


def _canvas(width: float, height: float, title: str) -> tuple:
    figure, ax = plt.subplots(figsize=(width, height))
    ax.set_axis_off()
    ax.set_title(title, fontsize=10)
    return figure, ax


def allcnn_diagram(c: int = 64, num_classes: int = 100, residual: bool = False) -> plt.Figure:
    """The AllCNN stack with the output size of every unit, traced by running an image through
    the model: each unit is conv, BatchNorm, Dropout2d and ReLU; the two stride-2 convolutions
    halve the size; the last 1x1 convolution makes one map per class, averaged to a logit."""
    from . import measure, models
    model = models.create("allcnn", c=c, num_classes=num_classes, residual=residual)
    trace = measure.summary(model, (3, 32, 32))
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    shapes = trace.loc[trace["type"] == "Conv2d", "output shape"].tolist()
    figure, ax = _canvas(4.6, 0.62 * (len(convs) + 3), f"AllCNN c={c}"
                         + (" (residual)" if residual else ""))
    y = 0.0
    previous = _box(ax, 0, y, "image 3×32×32")
    for conv, shape in zip(convs, shapes):
        y -= 0.8
        size = conv.kernel_size[0]
        stride = ", stride 2" if conv.stride[0] == 2 else ""
        what = (f"{size}×{size} conv{stride}" if conv is not convs[-1]
                else f"1×1 conv to {num_classes} class maps")
        tail = ", BN, ReLU" if conv is not convs[-1] else ""
        current = _box(ax, 0, y, f"{what}{tail} → {'×'.join(map(str, shape))}", width=4.2)
        _arrow(ax, previous, current)
        previous = current
    y -= 0.8
    _arrow(ax, previous, _box(ax, 0, y, f"global average pool → {num_classes} logits",
                              width=4.2))
    ax.set(xlim=(-2.3, 2.3), ylim=(y - 0.5, 0.5))
    return figure


def inception_diagram() -> plt.Figure:
    """The first Inception block of Tutorial 5's GoogleNet: four branches side by side (1x1;
    1x1 then 3x3; 1x1 then 5x5; 3x3 max-pool then 1x1), concatenated along the channels."""
    from .models.inception import TUTORIAL5_BLOCKS
    c_in, (red3, red5), (out1, out3, out5, out_max) = TUTORIAL5_BLOCKS[0]
    figure, ax = _canvas(8.5, 3.6, "an Inception block (channels of Tutorial 5's first block)")
    top = _box(ax, 0, 0, f"input, {c_in} channels", width=3)
    branches = [[f"1×1 conv, {out1}"], [f"1×1 conv, {red3}", f"3×3 conv, {out3}"],
                [f"1×1 conv, {red5}", f"5×5 conv, {out5}"],
                ["3×3 max-pool, stride 1", f"1×1 conv, {out_max}"]]
    bottom = (0, -3.0)
    for column, branch in enumerate(branches):
        x = -4.2 + 2.8 * column
        previous = top
        for row, label in enumerate(branch):
            current = _box(ax, x, -1.0 - 0.9 * row, label)
            _arrow(ax, previous, current)
            previous = current
        _arrow(ax, previous, bottom)
    _box(ax, *bottom, f"concatenate: {out1 + out3 + out5 + out_max} channels", width=3.6)
    ax.text(0, -3.55, "each convolution is followed by BatchNorm and ReLU", ha="center",
            fontsize=7, color="0.35")
    ax.set(xlim=(-5.6, 5.6), ylim=(-3.8, 0.4))
    return figure


def residual_blocks_diagram() -> plt.Figure:
    """The original residual block and the pre-activation block side by side: where BatchNorm
    and the activation sit, and what the identity path carries."""
    columns = {"residual block (He et al. 2016)":
               ["3×3 conv", "BatchNorm", "ReLU", "3×3 conv", "BatchNorm", "+", "ReLU"],
               "pre-activation block (He et al., ECCV 2016)":
               ["BatchNorm", "ReLU", "3×3 conv", "BatchNorm", "ReLU", "3×3 conv", "+"]}
    figure, ax = _canvas(8, 5.4, "two residual blocks: x + F(x)")
    for column, (title, labels) in enumerate(columns.items()):
        x = -2.6 + 5.2 * column
        ax.text(x, 0.55, title, ha="center", fontsize=9, fontweight="bold")
        previous = _box(ax, x, 0, "x")
        for row, label in enumerate(labels):
            current = _box(ax, x, -0.75 * (row + 1), label, width=1.8 if label != "+" else 0.5)
            _arrow(ax, previous, current)
            previous = current
            if label == "+":  # the identity path, from x around the block into the sum
                ax.annotate("", xy=(x + 0.27, current[1]), xytext=(x + 1.2, 0),
                            arrowprops={"arrowstyle": "->", "color": "tab:red",
                                        "linewidth": 1.2, "connectionstyle": "angle,angleA=-90,"
                                        "angleB=180,rad=0"})
        ax.text(x + 1.3, -2.2, "identity", color="tab:red", fontsize=8, rotation=90)
    ax.set(xlim=(-4.5, 4.5), ylim=(-5.8, 0.9))
    return figure


def dense_block_diagram(layers: int = 4, growth_rate: int = 12, c_in: int = 16) -> plt.Figure:
    """A dense block and a transition: every layer reads the concatenation of the block's input
    and all earlier layers' outputs and adds ``growth_rate`` maps; the transition (BatchNorm,
    ReLU, 1x1 conv, 2x2 average pool) halves the size."""
    figure, ax = _canvas(10, 3.4, f"a dense block of {layers} layers (growth rate k = "
                         f"{growth_rate}) and a transition")
    nodes = [_box(ax, 0, 0, f"input\n{c_in} ch", width=1.3, height=0.8)]
    line = {"color": "0.35", "linewidth": 0.7}
    for index in range(1, layers + 1):
        node = _box(ax, 2.0 * index, 0, f"BN, ReLU,\n3×3 conv:\n+{growth_rate} ch", width=1.3,
                    height=0.9)
        for earlier in nodes:  # every earlier output feeds this layer: above the boxes
            if earlier is nodes[-1]:
                ax.annotate("", xy=(node[0] - 0.65, 0), xytext=(earlier[0] + 0.65, 0),
                            arrowprops={"arrowstyle": "->", **line})
            else:
                ax.annotate("", xy=(node[0] - 0.2, 0.45), xytext=(earlier[0] + 0.2, 0.45),
                            arrowprops={"arrowstyle": "->", **line,
                                        "connectionstyle": "arc3,rad=-0.35"})
        nodes.append(node)
    width = c_in + layers * growth_rate
    join = _box(ax, 2.0 * (layers + 1), 0, f"concatenate\n{width} ch", width=1.3, height=0.8)
    for earlier in nodes:  # and the block's output concatenates them all: below the boxes
        ax.annotate("", xy=(join[0] - 0.2, -0.4), xytext=(earlier[0], -0.45),
                    arrowprops={"arrowstyle": "->", "color": "0.6", "linewidth": 0.6,
                                "connectionstyle": "arc3,rad=0.3"})
    transition = _box(ax, 2.0 * (layers + 2.3), 0, "transition:\nBN, ReLU,\n1×1 conv,\n"
                      "2×2 avg-pool", width=1.7, height=1.2)
    ax.annotate("", xy=(transition[0] - 0.85, 0), xytext=(join[0] + 0.65, 0),
                arrowprops={"arrowstyle": "->", "color": "0.3"})
    ax.set(xlim=(-0.9, 2.0 * (layers + 2.3) + 1.0), ylim=(-1.6, 1.3))
    return figure


def checkered_diagram(size: int = 8) -> plt.Figure:
    """What one stride-2 step keeps of a ``size`` x ``size`` map: an ordinary stride-2 layer
    keeps one pixel of each 2x2 window (one map of a quarter of the size); checkered
    subsampling keeps the two on a diagonal, as two submaps, so half the pixels survive."""
    from .models.checkered import sampled_pixels
    ordinary = sampled_pixels(size, 1, "traditional").float()
    checkered = sampled_pixels(size, 1, "naive").float()
    panels = {f"input {size}×{size}": None,
              "ordinary stride 2: 1 of 4 kept": ordinary,
              "checkered: 2 of 4 kept, 2 submaps": checkered}
    figure, axes = plt.subplots(1, 5, figsize=(11, 2.6),
                                gridspec_kw={"width_ratios": [2, 2, 2, 1, 1]})
    for ax, (title, kept) in zip(axes, panels.items()):
        if title.startswith("input"):
            ax.imshow(np.full((size, size), 0.3), cmap="Greys", vmin=0, vmax=1)
        else:
            shown = kept.clone()
            shown[shown < 0] = float("nan")
            ax.imshow(shown.numpy(), cmap="tab10", vmin=0, vmax=9, interpolation="nearest")
        ax.set_title(title, fontsize=8)
    for index, ax in enumerate(axes[3:]):
        submap = torch.full((size // 2, size // 2), float(index))
        ax.imshow(submap.numpy(), cmap="tab10", vmin=0, vmax=9, interpolation="nearest")
        ax.set_title(f"submap {index}: {size // 2}×{size // 2}", fontsize=8)
    for ax in axes:
        ax.set_xticks(np.arange(-0.5, ax.get_xlim()[1], 1), minor=True)
        ax.set_yticks(np.arange(-0.5, ax.get_ylim()[0], 1), minor=True)
        ax.grid(which="minor", color="white", linewidth=0.8)
        ax.tick_params(which="both", length=0, labelbottom=False, labelleft=False)
    figure.suptitle("one subsampling step (colour: the submap a kept pixel goes to; white: "
                    "dropped)", fontsize=9)
    figure.tight_layout()
    return figure
