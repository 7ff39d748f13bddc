"""How ``plots`` puts tables and figures into a notebook: pandas Stylers, display, plotly.

The tables of runs (:func:`results_table`, :func:`show_results`, :func:`against_reference_table`,
:func:`last_batch_table`) and the display calls are formatting, not the lesson; :mod:`helpers.plots`
re-exports them, so a notebook calls ``plots.show_results`` and never imports this module."""

from __future__ import annotations

from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import pandas as pd
import torch

if TYPE_CHECKING:
    from ._machinery.runs import Run


def show_now(figure: plt.Figure) -> None:
    """Display ``figure`` at this point of a cell's output (not after it) and close it."""
    from IPython.display import display
    display(figure)
    plt.close(figure)


def interactive(figure) -> None:
    """Show a plotly figure so that it draws wherever the course is read, offline too: JupyterLab
    draws its JSON (plotly's extension), the course website its HTML with the plotly.js the site
    ships, and Colab its own renderer (plotly.js from the web). No script is fetched from a CDN."""
    import json
    import sys
    from IPython.display import display
    if "google.colab" in sys.modules:
        figure.show(renderer="colab")
        return
    html = figure.to_html(full_html=False, include_plotlyjs=False, include_mathjax=False)
    display({"application/vnd.plotly.v1+json": json.loads(figure.to_json()), "text/html": html},
            raw=True)


def against_reference_table(yours: dict, reference: dict):
    """One row per run, yours and the reference's: what each trained on and for how long, and
    what it reached, with how many times more training images the reference run saw."""
    rows = []
    for whose, runs in (("yours", yours), ("reference", reference)):
        for label, run in runs.items():
            info = run.info
            train = info["images"]["train"]
            rows.append({"model": label, "run": whose, "parameters": info.get("parameters"),
                         "training images": train, "epochs": info["epochs"],
                         "images seen": train * info["epochs"], "test accuracy": info["test_acc"],
                         "minutes": run.wall_minutes, "precision": info.get("precision"),
                         "hardware": info.get("hardware")})
    if not rows:
        print("no runs to compare: no reference runs here, and no runs of yours on their data")
        return None
    table = pd.DataFrame(rows)
    seen = table.groupby("model")["images seen"]
    table["reference saw"] = [
        f"{seen.max()[model] / images:.0f}x yours" if whose == "yours" and images else ""
        for model, whose, images in zip(table["model"], table["run"], table["images seen"])]
    return (table.set_index(["model", "run"]).sort_index(level=0, sort_remaining=False)
            .style.format({"test accuracy": "{:.2%}", "parameters": "{:,}", "minutes": "{:.1f}",
                           "training images": "{:,}", "images seen": "{:,}"}, na_rep="-"))


def results_table(runs: dict[str, Run]) -> pd.DataFrame:
    """One row per run: parameters, best epoch, validation and test accuracy, provenance."""
    return pd.DataFrame([{
        "model": name, "parameters": run.info.get("parameters"),
        "best epoch": run.info.get("best_epoch"), "val accuracy": run.info.get("best_val_acc"),
        "test accuracy": run.info.get("test_acc"),
        "test images": run.info.get("images", {}).get("test"),
        "train minutes": run.wall_minutes,
        "provenance": run.provenance} for name, run in runs.items()]).set_index("model")


def show_results(runs: dict[str, Run], caption: str = ""):
    """:func:`results_table` as a notebook shows it: accuracies in percent, parameters with
    thousands separators, minutes to a tenth, and a caption that warns when a row is a smoke
    run."""
    if any(run.info.is_smoke_run for run in runs.values()):
        caption = f"{caption} (SMOKE RUN rows are not results: see provenance)".strip()
    return (results_table(runs).style
            .format({"val accuracy": "{:.2%}", "test accuracy": "{:.2%}", "parameters": "{:,}",
                     "test images": "{:,}", "train minutes": "{:.1f}"}, na_rep="-")
            .set_caption(caption))


def last_batch_table(probabilities: torch.Tensor, labels: torch.Tensor, batch_size: int = 64,
                     caption: str = ""):
    """The original notebook's evaluation bug on real predictions: the accuracy of the last
    batch alone (what it reported) beside the accuracy over every image, as a notebook shows
    it."""
    correct = (probabilities.argmax(1) == labels).float()
    last = len(correct) % batch_size or batch_size
    return (pd.DataFrame({"images counted": [last, len(correct)],
                          "test accuracy": [correct[-last:].mean().item(), correct.mean().item()]},
                         index=["seed: the last batch only", "course: every test image"])
            .style.format({"test accuracy": "{:.2%}", "images counted": "{:,}"})
            .set_caption(caption))
