"""The machinery behind the lesson: what no notebook needs to read.

What keeps a learner's runs safe, reproducible and on the right hardware. The notebooks never
import from here; they call the public modules above (``training.fit``,
``checkpoints.load_or_train``, ``reference``), which call in here.

``config`` (mode, offline flag, folders, device, provenance), ``datasets`` (where data comes
from: ``data/``, the Debian package, a checked download, or a labelled stand-in in smoke mode),
``runs`` (run folders bound to their settings, the one-writer lock, records), ``files`` (writes
that are never half-done), ``lightning`` (the Trainer's fixed settings, checkpoints and logs),
``allocator`` (glibc's handling of big blocks), ``arguments`` (one validator for arguments),
``ray_cleanup`` (ends a killed sweep's Ray processes), ``notebook_runner`` (``make course``).
"""
