"""The notebooks' setup cell installs the course as on a fresh Colab machine, and the reference
runs come with it: a new virtual environment without the course, the cell run with REPO set to
this repository (a local path standing in for its URL, offline), then the reference results of
notebooks 03 and 04 load from the clone without training."""

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

from helpers._machinery import config

ROOT = Path(__file__).resolve().parents[1]


def _setup_cell() -> str:
    cells = json.loads((ROOT / "notebooks" / "01_allconv_baseline.ipynb").read_text())["cells"]
    return next("".join(c["source"]) for c in cells
                if c["cell_type"] == "code" and "REPO = " in "".join(c["source"]))


def test_every_notebook_has_the_same_setup_cell_with_one_repo_line():
    first = _setup_cell()
    assert first.count("REPO = ") == 1 and first.splitlines()[2].startswith("REPO = ")
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        assert any("".join(c["source"]) == first for c in cells), path.name


def test_with_the_placeholder_address_the_cell_says_what_to_set(tmp_path):
    python = _fresh_venv(tmp_path)
    cell = _with_repo(_setup_cell(), config.PLACEHOLDER_REPOSITORY)
    done = subprocess.run([str(python), "-c", cell], capture_output=True, text=True,
                          cwd=tmp_path, env=_env())
    assert done.returncode != 0
    assert "does not know its public address yet: put its git URL in REPO" in done.stderr
    assert "ModuleNotFoundError" not in done.stderr


@pytest.mark.slow
def test_the_setup_cell_installs_the_course_and_its_reference_runs(tmp_path):
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("needs the course as a git checkout")
    python = _fresh_venv(tmp_path)
    cell = _with_repo(_setup_cell(), ROOT.as_uri())
    check = textwrap.dedent("""
        import helpers
        from helpers._machinery import config
        from helpers import reference
        print("installed at", helpers.__file__)
        print("saved models in", config.saved_models_dir())
        for notebook in ("03", "04"):
            runs = reference.finished(notebook)
            print(notebook, len(runs), "reference runs")
            assert runs and all(run.info.is_result for run in runs.values()), notebook
    """)
    done = subprocess.run([str(python), "-c", cell + "\n" + check], capture_output=True,
                          text=True, cwd=tmp_path, env=_env(), timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    clone = tmp_path / ROOT.name
    assert f"installed at {clone / 'helpers'}" in done.stdout
    assert f"saved models in {clone / 'saved_models'}" in done.stdout
    assert "03 4 reference runs" in done.stdout
    assert "Epoch" not in done.stdout + done.stderr  # nothing was trained


def _with_repo(cell: str, repository: str) -> str:
    """The setup cell with ``repository`` on its REPO line."""
    changed, count = re.subn(r'^REPO = ".*"', f'REPO = "{repository}"', cell, flags=re.M)
    assert count == 1
    return changed


def _fresh_venv(tmp_path: Path) -> Path:
    """A virtual environment without the course, seeing this environment's packages (torch and
    the rest, as Colab has them preinstalled, and pip) through a .pth file."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   capture_output=True)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                           "['purelib'])"], check=True, capture_output=True, text=True)
    ours = sysconfig.get_paths()["purelib"]
    (Path(site.stdout.strip()) / "preinstalled.pth").write_text(ours + "\n")
    return python


def _env() -> dict:
    """Offline, smoke mode, with the course's own folders (not the tests' empty ones), and pip
    told to build without downloading (Colab's pip is online; this machine's is not)."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("SAVED_MODELS_DIR", "DATA_DIR", "PYTHONPATH", "VIRTUAL_ENV")}
    env.update(COURSE_MODE="smoke", COURSE_OFFLINE="1", PIP_NO_INDEX="1",
               PIP_NO_BUILD_ISOLATION="0", PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env
