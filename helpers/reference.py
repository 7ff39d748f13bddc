"""The course's reference runs: real results for every notebook in every mode.

They are trained on the real Fashion-MNIST by ``make reference`` (sized for a 2-core CPU) and
shipped in ``saved_models/``. :func:`finished` loads a notebook's runs, and each entry of
:data:`RUNS` says in ``departure`` how and why it departs from the paper's recipe. The list and
its bookkeeping live in :mod:`helpers._machinery.reference_runs`.
"""

from ._machinery.reference_runs import (DATA, RUNS, Reference, ReferenceSweep, finished,
                                        finished_sweeps, get, load)

__all__ = ["DATA", "RUNS", "Reference", "ReferenceSweep", "finished", "finished_sweeps", "get",
           "load"]
