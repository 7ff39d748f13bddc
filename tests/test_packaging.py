"""The two ways to install the course (pip and conda) must ask for the same packages."""

import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"pytorch": "torch"}  # conda-forge name -> PyPI name


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[]", requirement.strip(), maxsplit=1)[0].lower()


def test_environment_yml_lists_what_pyproject_lists():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + project["optional-dependencies"]["test"]
    pip_names = {_name(r) for r in requirements}
    conda_names = set()
    for line in (ROOT / "environment.yml").read_text().splitlines():
        item = line.strip()
        if item.startswith("- ") and not item.endswith(":"):
            name = _name(item[2:])
            conda_names.add(CONDA_NAMES.get(name, name))
    missing = pip_names - conda_names
    assert not missing, f"environment.yml lacks {sorted(missing)}"
