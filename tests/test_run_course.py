"""`make course` runs helpers.course (scripts/run_course.py): executed copies, HTML and a
summary table."""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from helpers import course as run_course


def _notebook(path: Path, source: str) -> Path:
    nbformat.write(new_notebook(cells=[new_code_cell(source)], metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}), path)
    return path


def test_runner_writes_copies_html_and_a_summary(tmp_path, capsys):
    good = _notebook(tmp_path / "01_good.ipynb",
                     "from helpers import course\ncourse.headline('accuracy 12% (smoke run)')")
    bad = _notebook(tmp_path / "02_bad.ipynb", "raise RuntimeError('broken cell')")
    build = tmp_path / "build"
    assert run_course.main([str(good), str(bad)], build=build) == 1  # a failure fails the run
    for name in ("01_good.ipynb", "01_good.html", "02_bad.ipynb", "02_bad.html", "summary.md"):
        assert (build / name).exists(), name
    rows = [[cell.strip() for cell in line.split("|")[1:-1]]
            for line in (build / "summary.md").read_text().splitlines()]
    assert rows[0] == ["notebook", "status", "wall time", "headline"]
    assert rows[2][:2] == ["01_good.ipynb", "ok"] and rows[2][3] == "accuracy 12% (smoke run)"
    assert rows[3][:2] == ["02_bad.ipynb", "FAILED"] and rows[3][3] == "-"
    assert "broken cell" in capsys.readouterr().err
    assert not list(build.glob(".*headline*"))
