"""The package in two layers: the public modules hold what the notebooks teach, the private
subpackage helpers/_machinery what keeps runs safe; the notebooks see only the first."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]
HELPERS = ROOT / "helpers"
MODULES = sorted(HELPERS.rglob("*.py"))
# Private: the subpackage helpers/_machinery, and a module whose name starts with an underscore
# (the checks behind a public module, beside it, as timm's models/_builder.py).
PRIVATE = [path for path in MODULES
           if "_machinery" in path.parts or path.stem.startswith("_") and path.stem != "__init__"]
PUBLIC = [path for path in MODULES if path not in PRIVATE]
# The public modules' lines: 4,083 on 2026-12-04, when the machinery moved out (7,293 lines in
# all before), 3,221 on 2026-12-05 (the checks, probes, timing, diagrams and the registry behind
# them moved out too), 3,042 on 2026-12-06 (the tables of runs and the display calls, the rest
# of the checkered layers' checks, the sweep's and the data's machinery, out-of-memory detection).
# The aim is about 3,000; lower this as more of the machinery leaves them.
PUBLIC_LINES = 3_050


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The helpers modules ``path`` imports, anywhere in it, as absolute names."""
    package = _module(path) if path.name == "__init__.py" else _module(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([base] if base else [])])
            found |= {base} | {f"{base}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return {name for name in found if name.startswith("helpers")}


def test_no_notebook_imports_a_private_module():
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            source = "".join(cell["source"])
            if cell["cell_type"] == "code":
                assert not re.search(r"helpers(\.\w+)*\._|_machinery", source), (path.name, source)


def test_every_package_folder_is_installed():
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {_module(init) for init in HELPERS.rglob("__init__.py")}
    assert set(packages["packages"]) == folders


def test_run_folders_do_not_depend_on_the_models():
    """A run's definition holds what it needs: the run folders know no model."""
    imported = _imports(HELPERS / "_machinery" / "runs.py")
    assert not {name for name in imported if name.startswith(("helpers.models", "helpers.measure"))}


def test_the_models_import_nothing_above_them_but_the_argument_check():
    for path in sorted((HELPERS / "models").glob("*.py")):
        above = {name for name in _imports(path) if not name.startswith("helpers.models")}
        assert above <= {"helpers._machinery", "helpers._machinery.arguments"}, (path.name, above)


@pytest.mark.parametrize("path", MODULES, ids=lambda path: _module(path))
def test_every_module_says_in_one_line_what_it_is_for(path):
    docstring = ast.get_docstring(ast.parse(path.read_text()), clean=False)
    assert docstring, f"{path.relative_to(ROOT)} has no docstring"
    summary, _, rest = docstring.partition("\n")
    assert summary.strip().endswith("."), f"{path.relative_to(ROOT)}: {summary!r}"
    assert not rest or rest.startswith("\n"), \
        f"{path.relative_to(ROOT)}: its first line runs on into a second"


def test_the_public_modules_stay_thin():
    lines = sum(len(path.read_text().splitlines()) for path in PUBLIC)
    assert lines <= PUBLIC_LINES, f"the public modules hold {lines:,} lines"


def _calls(path: Path) -> set[str]:
    """The names of the functions ``path`` calls (``runs.mismatch(...)`` -> 'mismatch')."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            func = node.func
            found.add(func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", ""))
    return found


def test_one_check_says_whether_a_folder_holds_the_same_run():
    """runs.mismatch is the one comparison of a folder's settings with the ones asked for: no
    other module compares them itself (exercises compares a learner's run with the measured
    one, which is no folder)."""
    comparing = {_module(path) for path in MODULES if "differences" in _calls(path)}
    assert comparing == {"helpers._machinery.runs", "helpers.exercises"}
    for name in ("fitting.py", "sweep_runs.py", "reference_runs.py"):
        assert _calls(HELPERS / "_machinery" / name) & {"mismatch", "check_same_run"}, name
    assert "check_same_run" in _calls(HELPERS / "checkpoints.py")


@pytest.mark.parametrize("name", ["recipes.py", "data.py", "_machinery/datasets.py"])
def test_the_lesson_is_told_the_mode_and_does_not_read_it(name):
    assert not _calls(HELPERS / name) & {"mode", "is_smoke"}
