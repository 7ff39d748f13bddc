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
    extras = project["optional-dependencies"]
    requirements = project["dependencies"] + extras["test"]
    # "cnn-architectures-course[site]" in the test extra stands for the site extra's packages
    pip_names = set()
    for requirement in requirements:
        if _name(requirement) == project["name"]:
            included = re.search(r"\[(.*)\]", requirement).group(1).split(",")
            pip_names |= {_name(r) for extra in included for r in extras[extra.strip()]}
        else:
            pip_names.add(_name(requirement))
    conda_names = set()
    for line in (ROOT / "environment.yml").read_text().splitlines():
        item = line.strip()
        if item.startswith("- ") and not item.endswith(":"):
            name = _name(item[2:])
            conda_names.add(CONDA_NAMES.get(name, name))
    missing = pip_names - conda_names
    assert not missing, f"environment.yml lacks {sorted(missing)}"
