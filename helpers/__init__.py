"""helpers: the code behind the CNN-architectures course notebooks.

One module per concern: ``config`` (mode, offline flag, folders, device), ``datasets`` (where
data comes from), ``data`` (batches on the training device), ``models`` (the architectures, built
by name), ``recipes`` (how to train, by name), ``classifier`` (the Lightning module: one training
step), ``memory_safe`` (opt-in recovery from running out of memory), ``training`` (the one
training path, ``fit``), ``runs`` (run folders bound to their settings), ``checkpoints`` (load,
download or train), ``checkered`` (checkered subsampling), ``sweep`` (the feature-amount family
and a resumable sweep), ``reference`` (the course's reference runs), ``measure`` (size, memory
and speed of a model), ``plots`` (figures and tables), ``exercises`` (the notebooks' exercises
and their expected results), ``course`` (``make course``), ``files`` (writes that are never
half-done).

Modules are imported on first use (``helpers.models`` works after ``import helpers``), so that a
process needing only one of them does not pay for importing Lightning and matplotlib.
"""

import importlib

_MODULES = ("config", "files", "datasets", "data", "models", "recipes", "classifier",
            "memory_safe", "training", "runs", "checkpoints", "checkered", "sweep", "reference",
            "measure", "plots", "exercises", "course")


def __getattr__(name):
    if name in _MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'helpers' has no attribute {name!r}")


def __dir__():
    return [*globals(), *_MODULES]
