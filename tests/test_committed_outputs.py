"""The notebooks are committed executed, so that GitHub's viewer, Colab and the website show what
a learner will get before anything runs. Their outputs must fit their code (a code cell changed
since means `make course` must run again; prose may change freely), come from CPU mode on the
real data (never the smoke mode's stand-in), say in one line what made them, and stay compact.
The Colab badges and the setup cells' REPO line follow the course's one address setting."""

from __future__ import annotations

import functools
import importlib
import inspect
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from helpers._machinery import config, notebook_runner

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
MEGABYTE = 1_000_000


def _outputs(notebook) -> list:
    return [output for cell in notebook.cells if cell.cell_type == "code"
            for output in cell.outputs]


def _text(output) -> str:
    return output.get("text", "") + "".join(
        str(value) for key, value in output.get("data", {}).items() if key.startswith("text/"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem[:2])
def test_outputs_fit_the_code_and_come_from_cpu_mode(path):
    notebook = nbformat.read(path, as_version=4)
    record = notebook.metadata.get(notebook_runner.OUTPUTS_RECORD)
    assert record, f"{path.name} has no recorded outputs: run `make course` (CPU mode)"
    assert record["code_sha256"] == notebook_runner.code_fingerprint(notebook), (
        f"{path.name}: code cells changed since its outputs were made ({record['date']}); run "
        "`make course` (CPU mode) and commit the notebooks it writes")
    assert record["mode"] == notebook_runner.OUTPUTS_MODE
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.execution_count for cell in code), "every code cell ran"
    texts = [_text(output) for output in _outputs(notebook)]
    # the one line that says what made the outputs, as the setup cells print it
    assert config.provenance_line(record) in "".join(texts)
    assert not [text for text in texts if "smoke" in text.lower() or "stand-in" in text.lower()]
    assert not any(output.get("output_type") == "error" for output in _outputs(notebook))


def test_outputs_are_compact():
    total = sum(path.stat().st_size for path in NOTEBOOKS)
    assert total <= 15 * MEGABYTE, f"the five notebooks hold {total / MEGABYTE:.1f} MB"
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        assert "widgets" not in notebook.metadata, path.name
        for output in _outputs(notebook):
            data = output.get("data", {})
            assert not any("widget" in key for key in data), path.name
            assert len(data.get("image/png", "")) <= 600_000, f"{path.name}: a PNG over 450 kB"
            assert "image/svg+xml" not in data and "image/jpeg" not in data, path.name
            assert len(output.get("text", "")) <= 20_000, f"{path.name}: a long stream output"


def test_badges_and_repo_lines_follow_the_one_address_setting():
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "set_address.py"), "--check"],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    repository = config.repository()
    readme = (ROOT / "README.md").read_text()
    assert f"colab.research.google.com/github/{repository.removeprefix('https://github.com/')}" \
           "/blob/main/notebooks/01_allconv_baseline.ipynb" in readme
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        assert f"/blob/main/notebooks/{path.name})" in notebook.cells[0].source, path.name
        assert f'REPO = "{repository}"' in "".join(cell.source for cell in notebook.cells), \
            path.name


def test_the_address_check_names_a_file_that_does_not_follow(tmp_path):
    """--check on a copy of the course whose setting changed: every file is named, and the
    rewrite then makes them follow without touching an output."""
    for part in ("README.md", "pyproject.toml"):
        (tmp_path / part).write_text((ROOT / part).read_text())
    (tmp_path / "notebooks").mkdir()
    for path in NOTEBOOKS:
        (tmp_path / "notebooks" / path.name).write_text(path.read_text())
    setting = (tmp_path / "pyproject.toml").read_text().replace(
        config.repository(), "https://github.com/someone/cnn-course")
    (tmp_path / "pyproject.toml").write_text(setting)
    script = [sys.executable, str(ROOT / "scripts" / "set_address.py"), "--root", str(tmp_path)]
    check = subprocess.run([*script, "--check"], capture_output=True, text=True)
    assert check.returncode == 1
    assert "README.md" in check.stderr and "05_feature_amount_sweep.ipynb" in check.stderr
    assert subprocess.run(script, capture_output=True).returncode == 0
    assert subprocess.run([*script, "--check"]).returncode == 0
    for path in NOTEBOOKS:
        before = nbformat.read(path, as_version=4)
        after = nbformat.read(tmp_path / "notebooks" / path.name, as_version=4)
        assert [c.get("outputs") for c in after.cells] == [c.get("outputs") for c in before.cells]
        assert notebook_runner.code_fingerprint(after) == notebook_runner.code_fingerprint(before)
        assert 'REPO = "https://github.com/someone/cnn-course"' in "".join(
            cell.source for cell in after.cells)


_SHOWN = re.compile(r"show_source\(([\w.]+)\)")


def _shown_object(expression: str):
    """What ``plots.show_source(expression)`` shows, resolved from the helpers modules the
    notebooks import (``checkered`` and ``vgg`` are ``helpers.models``' modules)."""
    head, *rest = expression.split(".")
    module = importlib.import_module(
        f"helpers.models.{head}" if head in ("checkered", "vgg") else f"helpers.{head}")
    return functools.reduce(getattr, rest, module)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem[:2])
def test_the_source_a_notebook_shows_is_the_source_of_today(path):
    """A cell that shows helpers' code (``plots.show_source``) was executed with that code as it
    is now: the fingerprint of the code cells cannot see a change inside helpers, and a learner
    reading the committed notebook would read stale code."""
    notebook = nbformat.read(path, as_version=4)
    shown = 0
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        expressions = _SHOWN.findall(cell.source)
        # show_source displays an IPython Code object: HTML, LaTeX and the plain source
        displayed = [output["data"]["text/plain"] for output in cell.outputs
                     if {"text/latex", "text/plain"} <= set(output.get("data", {}))]
        for expression, text in zip(expressions, displayed):
            source = inspect.getsource(_shown_object(expression))
            assert text.strip() == source.strip(), (
                f"{path.name}: the source of {expression} shown in its outputs is not today's; "
                f"run `make course` (CPU mode) and commit the notebooks it writes")
            shown += 1
        assert len(displayed) == len(expressions), (path.name, cell.source)
    assert shown == len(_SHOWN.findall("".join(cell.source for cell in notebook.cells
                                               if cell.cell_type == "code")))
