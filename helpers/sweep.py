"""The feature-amount family of VGG-D variants, and the sweep that trains them.

The family is Mundt et al.'s ("Rethinking Layer-wise Feature Amounts in Convolutional Neural
Network Architectures", NeurIPS 2018 CRACT workshop, arXiv 1812.05836).

A VGG's budget of features (the sum of its layer widths, the two hidden fully connected layers
included: 5,248 for VGG-D) is redistributed over its layers along a skew-normal curve with
location xi (in layers), scale omega and shape alpha. Every (xi, omega, alpha) of a fixed grid
whose curve keeps more than 95 % of its mass inside the network and gives every layer at least
2 features is a variant: 193 for VGG-D.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ._machinery import arguments as _arguments, sweep_runs
from .data import ImageDataModule
from .models import vgg

__all__ = ["Variant", "skew_normal_variants", "curve", "reference_widths", "representatives",
           "scaled", "scaled_to_macs", "vgg_d", "SweepSettings", "run_sweep", "results",
           "trained"]

VALID_DEPTHS = (10, 13, 16, 19)
XI_STEP = 1.0
OMEGAS = np.arange(0.0, 5.5 + 1e-9, 0.5)       # the scale grid: 0, 0.5, ..., 5.5
ALPHAS = np.arange(-40.0, 40.0 + 1e-9, 4.0)    # the shape grid: -40, -36, ..., 40
MIN_AREA = 0.95                                # 1 - eps: mass that must fall inside the layers
MIN_WIDTH = 2
STEP = 0.01                                    # the integration grid, in layers


@dataclass(frozen=True)
class Variant:
    """One member of the family: its place in the ordered list, its curve and its widths
    (the convolutions', then the two hidden layers')."""
    index: int
    xi: float
    omega: float
    alpha: float
    widths: tuple

    @property
    def name(self) -> str:
        return "vgg-d" if self.index < 0 else f"variant-{self.index:03d}"

    @property
    def macs(self) -> int:
        """Multiply-accumulates per 32x32 image."""
        return vgg.macs(self.widths)

    @property
    def parameters(self) -> int:
        """Learnable parameters with 10 classes."""
        return vgg.parameter_count(self.widths)


def reference_widths(depth: int) -> list[int]:
    """The VGG widths whose sum is the budget of a depth: 2, 2, L, L, L convolutions with
    64, 128, 256, 512, 512 features (L = (depth - 7) / 3), then two hidden layers of 512."""
    if not _arguments.is_whole(depth):
        valid = ", ".join(map(str, VALID_DEPTHS))
        raise TypeError(f"depth must be a whole number, one of {valid}; got {depth!r} "
                        f"({type(depth).__name__})")
    if depth not in VALID_DEPTHS:
        raise ValueError(f"depth {depth} is not built by the sweep; valid depths: "
                         f"{', '.join(map(str, VALID_DEPTHS))}")
    per_block = (2, 2, *[(depth - 7) // 3] * 3)
    convs = [w for w, n in zip((64, 128, 256, 512, 512), per_block) for _ in range(n)]
    return convs + [512, 512]


def skew_normal_pdf(x: np.ndarray, xi: float, omega: float, alpha: float) -> np.ndarray:
    """The skew-normal density 2/omega * phi(z) * Phi(alpha z), z = (x - xi) / omega."""
    z = (x - xi) / omega
    phi = np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    cdf = 0.5 * (1 + torch.special.erf(torch.from_numpy(alpha * z / math.sqrt(2))).numpy())
    return 2.0 / omega * phi * cdf


def layer_fractions(layers: int, xi: float, omega: float, alpha: float) -> np.ndarray:
    """The share of the budget for each layer: the density integrated (trapezoid rule, step
    0.01) over the 100 grid points x = k, k + 0.01, ..., k + 0.99 of layer k."""
    x = np.arange(layers * 100) * STEP
    pdf = skew_normal_pdf(x, xi, omega, alpha).reshape(layers, 100)
    return np.trapezoid(pdf, dx=STEP, axis=1)


@dataclass(frozen=True)
class Curve:
    """One skew-normal curve over a depth's layers: the share of its area that falls inside
    the layers, the widths it gives the budget, and why it is not a variant (None: it is)."""
    area: float
    widths: tuple[int, ...]
    rejected: str | None


def curve(depth: int, xi: float, omega: float, alpha: float) -> Curve:
    """The widths of the curve (xi, omega, alpha) over the layers of ``depth``, each its share
    of the budget rounded up, and the original's two tests: at least ``MIN_AREA`` of the
    curve's area inside the layers, and no layer narrower than ``MIN_WIDTH``."""
    reference = reference_widths(depth)
    fractions = layer_fractions(len(reference), xi, omega, alpha)
    widths = tuple(math.ceil(f * sum(reference)) for f in fractions)
    area = float(fractions.sum())
    rejected = (f"only {area:.3f} of its area inside the layers (must exceed {MIN_AREA})"
                if area <= MIN_AREA else
                f"a layer narrower than {MIN_WIDTH}" if min(widths) < MIN_WIDTH else None)
    return Curve(area, widths, rejected)


def skew_normal_variants(depth: int = 16) -> list[Variant]:
    """The valid variants of a depth (see :func:`curve`), ordered as the original (xi outer,
    then omega, then alpha): 153, 194, 193 and 139 for depths 10, 13, 16 and 19. Computed once
    per process and depth (4,032 curves take seconds); each call returns a list of its own."""
    layers = len(reference_widths(depth))  # a wrong depth gets its error here
    if depth not in _FOUND:
        variants = []
        for xi in np.arange(0.0, layers + 1e-9, XI_STEP):
            for omega in OMEGAS[OMEGAS > 0]:
                for alpha in ALPHAS:
                    found = curve(depth, xi, omega, alpha)
                    if found.rejected is None:
                        variants.append(Variant(len(variants), float(xi), float(omega),
                                                float(alpha), found.widths))
        _FOUND[depth] = tuple(variants)
    return list(_FOUND[depth])


_FOUND: dict[int, tuple[Variant, ...]] = {}  # skew_normal_variants' results, by depth


# --- running a sweep -------------------------------------------------------------------------

@dataclass(frozen=True)
class SweepSettings:
    """What every variant of a sweep is trained on and with (picklable, for remote workers).
    ``epochs`` shortens the recipe (None: the recipe's); ``augment`` None follows the original,
    which augmented only CIFAR; ``width_scale`` multiplies every width of every variant (a
    scaled replication that keeps the profiles, for a smaller budget)."""
    data: str
    recipe: str
    epochs: int | None = None
    seed: int = 0
    val_size: int = 5000
    augment: str | None = None
    abandon_after: int = 10
    subset: tuple | str | None = "auto"
    width_scale: float = 1.0

    def __post_init__(self):  # bad settings fail here, before any training starts
        sweep_runs.check_settings(self)

    def data_module(self, smoke: bool = False) -> ImageDataModule:
        """The data as the sweep's VGGs see it: 32x32 with 3 channels (``smoke``: a smoke run's,
        see :class:`~helpers.data.ImageDataModule`)."""
        return ImageDataModule(self.data, val_size=self.val_size, seed=self.seed,
                               augment=self.augment, subset=self.subset, test_every_epoch=True,
                               size=32, channels=3, smoke=smoke)


def results(directory: str | Path) -> pd.DataFrame:
    """The results table of a sweep: one row per finished variant, ordered by variant."""
    rows = [json.loads(p.read_text()) for p in sorted(Path(directory).glob("rows/*.json"))]
    table = pd.DataFrame(rows)
    return table.sort_values("variant").reset_index(drop=True) if rows else table


def trained(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of a results table that trained to a test accuracy: 'done', and 'abandoned'
    (below twice chance after the first SGDR cycle: the original stopped such a variant there,
    so its accuracy is the first cycle's). Left out: 'does not fit' and 'diverged'."""
    return table[table["status"].isin(["done", "abandoned"])]


def run_sweep(variants: list[Variant], settings: SweepSettings, directory: str | Path,
              workers: int | None = None) -> pd.DataFrame:
    """Train ``variants`` (any subset of the family, VGG-D's widths as a Variant too) and
    return the results table, also kept in ``<directory>/results.csv``.

    Resumable: variants with a results row are skipped, and an interrupted one continues from
    its last epoch's checkpoint, so a sweep killed at any moment is finished by running the
    same call again. The folder is bound to ``settings`` (``sweep.json``): running other settings
    into it is an error naming the differences, and one process at a time runs a sweep in it.
    ``workers`` > 0 spreads the variants over a Ray cluster (a local one, or the one
    ``RAY_ADDRESS`` names), one variant per worker at a time; ``None`` trains them here, one
    after the other."""
    return sweep_runs.run(variants, settings, directory, workers)


def scaled(variant: Variant, factor: float) -> Variant:
    """``variant`` with every width multiplied by ``factor`` (rounded; at least 2): the same
    profile on a smaller budget, e.g. a quarter of VGG-D's 5,248 features is 1,312."""
    if factor == 1:
        return variant
    widths = tuple(max(MIN_WIDTH, round(width * factor)) for width in variant.widths)
    return dataclasses.replace(variant, widths=widths)


def scaled_to_macs(variant: Variant, macs: int) -> Variant:
    """``variant`` scaled (:func:`scaled`) so that its MACs come as close to ``macs`` as whole
    widths allow: the same profile at an equal compute budget."""
    low, high = 1e-3, 1e3
    for _ in range(60):  # bisection on the factor; MACs grow with it
        middle = math.sqrt(low * high)
        low, high = (middle, high) if scaled(variant, middle).macs < macs else (low, middle)
    return min((scaled(variant, low), scaled(variant, high)), key=lambda v: abs(v.macs - macs))


def representatives(variants: list[Variant]) -> list[Variant]:
    """One variant per location xi (the middle one of its group in the family's order): a
    subset that spans early-heavy to late-heavy profiles for a sweep on a budget."""
    groups: dict[float, list[Variant]] = {}
    for variant in variants:
        groups.setdefault(variant.xi, []).append(variant)
    return [group[len(group) // 2] for group in groups.values()]


def vgg_d() -> Variant:
    """VGG-D's standard widths as a variant (index -1): the sweep's baseline, which is not a
    member of the skew-normal family."""
    return Variant(-1, math.nan, math.nan, math.nan, vgg.STANDARD_WIDTHS["D"])
