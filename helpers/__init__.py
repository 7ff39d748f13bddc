"""helpers: the code behind the CNN-architectures course notebooks.

One module per concern: ``config`` (mode, offline flag, folders, device), ``data`` (data sets and
on-device batches), ``models`` (the architectures, built by name), ``runs`` (run folders bound
to their settings), ``training`` (the one training path), ``checkpoints`` (load, download or
train), ``checkered`` (checkered subsampling), ``sweep`` (the feature-amount family and a
resumable sweep), ``reference`` (the course's reference runs), ``measure`` (peak memory of a
training step, inference throughput), ``plots`` (figures and tables), ``files`` (writes that
are never half-done).

Modules are imported on first use (``helpers.models`` works after ``import helpers``), so that a
process needing only one of them does not pay for importing Lightning and matplotlib.
"""

import importlib

_MODULES = ("config", "files", "data", "models", "runs", "training", "checkpoints", "checkered",
            "sweep", "reference", "measure", "plots")


def __getattr__(name):
    if name in _MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'helpers' has no attribute {name!r}")


def __dir__():
    return [*globals(), *_MODULES]
