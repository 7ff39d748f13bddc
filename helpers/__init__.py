"""helpers: the code behind the CNN-architectures course notebooks.

One module per concern: ``config`` (mode, offline flag, folders, device), ``data`` (data sets and
on-device batches), ``models`` (the architectures, built by name), ``training`` (the one training
path), ``checkpoints`` (load, download or train), ``plots`` (figures and tables), ``files``
(writes that are never half-done).
"""

from . import config, files, data, models, training, checkpoints, plots  # noqa: F401
