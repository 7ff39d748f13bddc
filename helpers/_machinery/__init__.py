"""The machinery behind the lesson: what no notebook needs to read.

What keeps a learner's runs safe, reproducible and on the right hardware. The notebooks never
import from here; they call the public modules above (``training.fit``,
``checkpoints.load_or_train``, ``reference``), which call in here. Beside it, a public module's
own private parts are modules whose names start with an underscore: ``helpers._diagrams`` (how
the architecture diagrams are drawn), ``helpers._display`` (the tables of runs, and how figures
are shown), ``helpers.models._registry`` (building models by name) and
``helpers.models._checkered_support`` (the checkered layers' checks, the conversion's probe, the
faster stride-2 convolution).

``config`` (mode, offline flag, folders, device, provenance), ``datasets`` (where data comes from:
``data/``, the Debian package, a checked download, or a labelled stand-in in smoke mode),
``fitting`` (what ``fit`` does around the training itself), ``runs`` (run folders bound to their
settings, the one check of "same run", the one-writer lock, records bound to their files),
``downloads`` (checked downloads), ``reference_runs`` (the list of reference runs, their status,
``make reference``), ``sweep_runs`` (what ``run_sweep`` does around each variant, and its settings'
checks), ``memory`` (a training step's peak memory, and telling an out-of-memory error), ``timing``
(timing forward passes and training steps), ``exercise_records`` (the exercises' measured ranges),
``files`` (writes that are never half-done), ``lightning`` (the Trainer's fixed settings,
checkpoints and logs), ``allocator`` (glibc's handling of big blocks), ``arguments`` (the one check
of an argument, a recipe's and a data module's), ``ray_cleanup`` (ends a killed sweep's Ray
processes), ``notebook_runner`` (``make course``), ``layout`` (batches handed over in the
strides of the run's memory layout).
"""
