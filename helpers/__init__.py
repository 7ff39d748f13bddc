"""helpers: the code behind the CNN-architectures course notebooks.

Two layers. The public modules hold what the notebooks teach: ``models`` (the architectures,
built by name, with the checkered layers in ``models.checkered``), ``classifier`` (the Lightning
module: one training step), ``recipes`` (how to train, by name), ``data`` (batches on the
training device, and the augmentations), ``training`` (the one training path, ``fit``),
``checkpoints`` (load, download or train), ``memory_safe`` (opt-in recovery from running out of
memory), ``sweep`` (the feature-amount family and a resumable sweep), ``measure`` (size, memory
and speed of a model), ``plots`` (figures and tables), ``exercises`` (the notebooks' exercises
and their expected results), ``reference`` (the course's reference runs), ``modes`` (what each
mode trains) and ``course`` (the mode, the banner, a notebook's headline).

The machinery that keeps runs safe, reproducible and on the right hardware lives in the private
subpackage ``helpers._machinery``; the notebooks never import it.

Modules are imported on first use (``helpers.models`` works after ``import helpers``), so that a
process needing only one of them does not pay for importing Lightning and matplotlib.
"""

import importlib

_MODULES = ("course", "modes", "data", "models", "recipes", "classifier", "memory_safe",
            "training", "checkpoints", "sweep", "reference", "measure", "plots", "exercises")


def __getattr__(name):
    if name in _MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'helpers' has no attribute {name!r}")


def __dir__():
    return [*globals(), *_MODULES]
