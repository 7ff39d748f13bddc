"""The course's scripts (``benchmarks/``, ``scripts/``) as modules, for tests that call their
functions."""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_script(path: Path):
    """The script at ``path`` imported as a module named after its file. Its folder goes on
    ``sys.path``, as when it runs as a script, so that its siblings import; at the end, so that
    a script named like a module (``scripts/train.py``) hides nothing from the other tests."""
    if str(path.parent) not in sys.path:
        sys.path.append(str(path.parent))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
