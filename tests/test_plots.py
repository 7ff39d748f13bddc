import matplotlib
import pandas as pd
import pytest
import torch

from helpers import plots, training

matplotlib.use("Agg")
CLASSES = ["cat", "dog", "bird"]


@pytest.fixture(autouse=True)
def close_figures():
    yield
    matplotlib.pyplot.close("all")


def test_image_grid_titles_each_image_with_its_class():
    images = torch.randint(0, 256, (10, 3, 8, 8), dtype=torch.uint8)
    figure = plots.image_grid(images, torch.tensor([0, 1, 2] * 3 + [0]), CLASSES, ncols=4)
    shown = [ax for ax in figure.axes if ax.images]
    assert len(figure.axes) == 12 and len(shown) == 10
    assert [ax.get_title() for ax in shown[:4]] == ["cat", "dog", "bird", "cat"]


def test_image_grid_draws_grey_images():
    figure = plots.image_grid(torch.zeros(2, 1, 28, 28, dtype=torch.uint8), ncols=2)
    assert figure.axes[0].images[0].get_array().shape == (28, 28)


def _history(epochs: int) -> pd.DataFrame:
    return pd.DataFrame({"epoch": range(1, epochs + 1), "lr": [0.1] * epochs,
                         "train_loss": [2.0 / e for e in range(1, epochs + 1)],
                         "val_loss": [2.1 / e for e in range(1, epochs + 1)],
                         "train_acc": [0.3 * e for e in range(1, epochs + 1)],
                         "val_acc": [0.25 * e for e in range(1, epochs + 1)]})


def test_training_curves_one_line_per_split_and_run():
    figure = plots.training_curves({"plain": _history(3), "residual": _history(3)})
    loss, accuracy, lr = figure.axes
    assert len(loss.lines) == len(accuracy.lines) == 4 and len(lr.lines) == 2
    assert list(accuracy.lines[1].get_ydata()) == [25.0, 50.0, 75.0]  # plain val, in percent


def test_the_legend_stands_beside_the_data_and_rates_far_apart_are_on_a_log_axis():
    adam = _history(3).assign(lr=[1e-3] * 3)
    figure = plots.training_curves({"sgd": _history(3), "adamw": adam})
    loss, accuracy, lr = figure.axes
    assert loss.get_legend() is None and accuracy.get_legend() is None
    assert len(figure.legends) == 1 and lr.get_yscale() == "log"
    figure.canvas.draw()
    legend_box = figure.legends[0].get_window_extent()
    assert all(legend_box.x0 >= ax.get_window_extent().x1 for ax in figure.axes)
    assert plots.training_curves({"a": _history(3), "b": _history(3)}).axes[2].get_yscale() \
        == "linear"


def _run(history, train_images, accuracy=0.8):
    info = {"images": {"train": train_images}, "epochs": len(history), "test_acc": accuracy,
            "parameters": 1000, "precision": "32-true", "hardware": "CPU test"}
    return training.Run("run", None, history, info, None)


def test_your_runs_beside_the_reference_runs_on_images_seen():
    yours = {"ResNet": _run(_history(3), 5_000, 0.75)}
    theirs = {"ResNet": _run(_history(10), 20_000, 0.90)}
    figure = plots.against_reference(yours, theirs)
    accuracy, loss = figure.axes
    assert accuracy.get_xscale() == "log" and len(accuracy.lines) == 2
    reference, mine = accuracy.lines
    assert list(mine.get_xdata()) == [5_000, 10_000, 15_000] and mine.get_linestyle() == "-"
    assert reference.get_xdata()[-1] == 200_000 and reference.get_linestyle() == "--"
    assert mine.get_color() == reference.get_color()  # one colour per model
    table = plots.against_reference_table(yours, theirs).data
    assert table.loc[("ResNet", "yours"), "reference saw"] == "13x yours"
    assert table.loc[("ResNet", "reference"), "images seen"] == 200_000
    assert plots.against_reference({}, {}) is None
    assert plots.against_reference_table({}, {}) is None


def test_a_smoke_run_is_text_not_a_curve(capsys):
    """One or two epochs are no curve: their numbers are printed, the longer runs are drawn."""
    assert plots.training_curves({"smoke": _history(2)}, title="SMOKE RUN") is None
    printed = capsys.readouterr().out
    assert "SMOKE RUN: too few epochs" in printed
    assert "epoch 2: train 60.0% (loss 1.000), val 50.0% (loss 1.050)" in printed
    figure = plots.training_curves({"smoke": _history(1), "reference": _history(10)})
    assert len(figure.axes[0].lines) == 2  # the reference run's train and val loss only
    assert "smoke: epoch 1:" in capsys.readouterr().out


def test_confusion_matrix_rows_are_fractions_of_the_true_class():
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 2])
    predictions = torch.tensor([0, 0, 0, 1, 1, 1, 0])
    figure = plots.confusion_matrix(labels, predictions, CLASSES)
    values = figure.axes[0].collections[0].get_array().reshape(3, 3)
    assert values[0].tolist() == [0.75, 0.25, 0.0] and values[2].tolist() == [1.0, 0.0, 0.0]


def test_most_confused_counts_the_mistakes():
    labels = torch.tensor([0, 0, 0, 1, 2, 2])
    predictions = torch.tensor([1, 1, 0, 1, 0, 2])
    table = plots.most_confused(labels, predictions, CLASSES)
    assert table.values.tolist() == [["cat", "dog", 2], ["bird", "cat", 1]]


def test_predictions_gallery_marks_the_true_class_green():
    images = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
    probabilities = torch.tensor([[0.7, 0.2, 0.1], [0.6, 0.3, 0.1]])
    figure = plots.predictions_gallery(images, torch.tensor([0, 1]), probabilities, CLASSES,
                                       top=2)
    first_bars, second_bars = figure.axes[1].patches, figure.axes[3].patches
    green, red = matplotlib.colors.to_rgba("tab:green"), matplotlib.colors.to_rgba("tab:red")
    assert [bar.get_facecolor() for bar in first_bars] == [green, red]
    assert [bar.get_facecolor() for bar in second_bars] == [red, green]
    assert [bar.get_width() for bar in first_bars] == pytest.approx([0.7, 0.2])


def test_channel_growth_plots_each_dense_layers_input_width():
    from helpers import models
    figure = plots.channel_growth({"L=40": models.create("densenet-40-k12")})
    widths = list(figure.axes[0].lines[0].get_ydata())
    assert len(widths) == 36 and widths[:3] == [16, 28, 40]
    assert widths[11] == 148 and widths[12] == 160 and widths[-1] == 436  # after a transition


def test_logged_curves_one_panel_per_tag_one_line_per_run():
    log = pd.DataFrame({"tag": ["val_acc", "val_acc", "lr", "lr", "train_loss"],
                        "epoch": [1, 2, 0, 1, 0.5], "value": [0.5, 0.6, 0.1, 0.01, 2.0]})
    figure = plots.logged_curves({"a": log, "b": log})
    assert [ax.get_title() for ax in figure.axes] == ["validation accuracy", "training loss",
                                                      "learning rate"]
    assert all(len(ax.lines) == 2 for ax in figure.axes)
    assert list(figure.axes[0].lines[0].get_ydata()) == [0.5, 0.6]
    assert figure.axes[2].get_yscale() == "log"


def test_width_profiles_one_line_per_network():
    figure = plots.width_profiles({"a": [64] * 15, "b": list(range(2, 17))})
    ax = figure.axes[0]
    assert len(ax.lines) == 2 and list(ax.lines[1].get_ydata())[:3] == [2, 3, 4]
    assert ax.get_yscale() == "log"


def test_predictions_report_shows_two_figures_and_returns_the_mistakes(monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", shown.append)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 1])
    probabilities = torch.nn.functional.one_hot(labels, 3).float()
    probabilities[:3] = torch.tensor([0.1, 0.1, 0.8])  # the first three say "bird"
    images = torch.randint(0, 256, (10, 1, 8, 8), dtype=torch.uint8)
    mistakes = plots.predictions_report(images, labels, probabilities, CLASSES, "m", count=4)
    assert [len(figure.axes) for figure in shown] == [8, 2]  # 4 images + bars; matrix + colour bar
    assert shown[0].texts[0].get_text() == "m: 4 random test images"
    assert sorted(map(tuple, mistakes.values.tolist())) == [("cat", "bird", 1), ("dog", "bird", 1)]


def _texts(figure) -> list[str]:
    """The labels of a diagram (its arrows are annotations without text)."""
    return [text.get_text() for ax in figure.axes for text in ax.texts if text.get_text()]


def test_the_allcnn_diagram_is_traced_from_the_model():
    figure = plots.allcnn_diagram(c=64, num_classes=100)
    texts = _texts(figure)
    assert len(texts) == 9 + 2  # the image, nine convolutions, the average pool
    assert any("stride 2" in t and t.endswith("128×16×16") for t in texts)
    assert any("stride 2" in t and t.endswith("256×8×8") for t in texts)
    assert texts[-2].endswith("100×8×8") and texts[-1].endswith("100 logits")
    assert any(t.endswith("32×16×16") for t in _texts(plots.allcnn_diagram(c=16)))


def test_the_block_diagrams_name_their_parts():
    inception = _texts(plots.inception_diagram())
    assert "concatenate: 64 channels" in inception and "5×5 conv, 8" in inception
    residual = _texts(plots.residual_blocks_diagram())
    assert residual.count("identity") == 2 and residual.count("+") == 2
    dense = plots.dense_block_diagram(layers=4, growth_rate=12, c_in=16)
    assert "concatenate\n64 ch" in _texts(dense)
    arrows = [child for child in dense.axes[0].texts
              if isinstance(child, matplotlib.text.Annotation) and not child.get_text()]
    assert len(arrows) == (1 + 2 + 3 + 4) + 5 + 1  # into each layer, into the concat, onward
    assert len(plots.checkered_diagram().axes) == 5


def test_feature_maps_shows_each_layers_first_maps():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.Conv2d(4, 6, 3, stride=2, padding=1))
    layers = {"conv 1": model[0], "conv 2": model[2]}
    figure = plots.feature_maps(model, torch.randn(1, 8, 8), layers, channels=5)
    assert len(figure.axes) == 3 * 5
    titles = [ax.get_title(loc="left") for ax in figure.axes if ax.get_title(loc="left")]
    assert titles == ["conv 1: (4, 8, 8)", "conv 2: (6, 4, 4)"]
    assert sum(bool(ax.images) for ax in figure.axes) == 1 + 4 + 5  # the input, 4 maps, 5 maps
    assert model.training  # left as it was
