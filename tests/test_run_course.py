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


def test_runner_writes_copies_html_and_a_summary(tmp_path, capfd):
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
    err = capfd.readouterr().err
    assert "broken cell" in err
    assert "without encryption" not in err  # the kernels' start-up warning is silenced
    assert not list(build.glob(".*headline*"))


def test_executed_notebooks_keep_a_compact_record(tmp_path):
    """A progress bar leaves its last state, not one output per refresh; no empty outputs; a
    styled table keeps its HTML without the '<Styler at 0x...>' text."""
    source = ("import sys, time\n"
              "for step in range(40):\n"
              "    sys.stderr.write(f'\\rtraining {step + 1}/40'); sys.stderr.flush()\n"
              "    time.sleep(0.005)\n"
              "sys.stderr.write('\\n'); print(end='')\n"
              "import pandas as pd\n"
              "display(pd.DataFrame({'a': [0.5]}).style.format('{:.0%}'))")
    notebook = _notebook(tmp_path / "01_bar.ipynb", source)
    assert run_course.main([str(notebook)], build=tmp_path / "build") == 0
    outputs = nbformat.read(tmp_path / "build" / "01_bar.ipynb", as_version=4).cells[0].outputs
    streams = [o for o in outputs if o["output_type"] == "stream"]
    assert len(streams) == 1 and streams[0]["text"] == "training 40/40\n"
    styled = [o for o in outputs if o["output_type"] == "display_data"]
    assert len(styled) == 1 and "text/html" in styled[0]["data"]
    assert "text/plain" not in styled[0]["data"]


def test_compact_merges_only_neighbouring_streams():
    outputs = [{"output_type": "stream", "name": "stdout", "text": "a\n"},
               {"output_type": "stream", "name": "stdout", "text": "\r   \r"},
               {"output_type": "display_data", "data": {"image/png": ""}},
               {"output_type": "stream", "name": "stdout", "text": "b\n"}]
    kept = run_course.compact(outputs)
    assert [o.get("text") for o in kept] == ["a\n", None, "b\n"]
