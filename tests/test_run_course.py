"""`make course` runs helpers._machinery.notebook_runner (scripts/run_course.py): executed copies,
a summary table, and in CPU mode the outputs written back into the notebooks that ran cleanly."""

from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from helpers._machinery import config
from helpers._machinery import notebook_runner as runner


def _notebook(path: Path, source: str) -> Path:
    nbformat.write(new_notebook(cells=[new_code_cell(source)], metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}), path)
    return path


def test_runner_writes_copies_and_a_summary(tmp_path, capfd):
    good = _notebook(tmp_path / "01_good.ipynb",
                     "from helpers import course\ncourse.headline('accuracy 12% (smoke run)')")
    bad = _notebook(tmp_path / "02_bad.ipynb", "raise RuntimeError('broken cell')")
    untidy = _notebook(tmp_path / "03_untidy.ipynb",
                       "import sys, time\ntime.sleep(1.2)\nsys.stderr.write('a warning\\n')")
    build = tmp_path / "build"
    assert runner.main([str(good), str(bad), str(untidy)], build=build) == 1  # fails the run
    for name in ("01_good.ipynb", "02_bad.ipynb", "summary.md"):
        assert (build / name).exists(), name
    assert not list(build.glob("*.html"))  # the course website (make site) is the HTML
    # smoke mode leaves the notebooks as they were
    assert not nbformat.read(good, as_version=4).cells[0].outputs
    rows = [[cell.strip() for cell in line.split("|")[1:-1]]
            for line in (build / "summary.md").read_text().splitlines()]
    assert rows[0] == ["notebook", "status", "wall time", "slowest cell", "headline"]
    assert rows[2][:2] == ["01_good.ipynb", "ok"] and rows[2][4] == "accuracy 12% (smoke run)"
    assert rows[3][:2] == ["02_bad.ipynb", "FAILED"] and rows[3][4] == "-"
    assert rows[4][1] == "untidy output in 1 cell(s)" and rows[4][3] == "1 s (cell 0)"
    err = capfd.readouterr().err
    assert "broken cell" in err
    assert "without encryption" not in err  # the kernels' start-up warning is silenced
    assert not list(build.glob(".*headline*"))


def test_cpu_mode_writes_back_only_the_notebooks_that_ran_cleanly(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_MODE", "cpu")
    good = _notebook(tmp_path / "01_good.ipynb",
                     "REPO = \"x\"\nfrom helpers import course\ncourse.banner()\nprint('fine')")
    bad = _notebook(tmp_path / "02_bad.ipynb", "print('half')\nraise RuntimeError('broken')")
    untidy = _notebook(tmp_path / "03_untidy.ipynb", "import sys\nsys.stderr.write('warn\\n')")
    before = {path: path.read_text() for path in (bad, untidy)}
    assert runner.main([str(good), str(bad), str(untidy)], build=tmp_path / "build") == 1
    for path, text in before.items():
        assert path.read_text() == text, path.name  # failed runs never replace outputs
    written = nbformat.read(good, as_version=4)
    printed = written.cells[0].outputs[0]["text"]
    assert printed.endswith("fine\n")
    assert "execution" not in written.cells[0].metadata and "widgets" not in written.metadata
    record = written.metadata[runner.OUTPUTS_RECORD]
    assert record["mode"] == "cpu" and record["hardware"] == config.hardware()
    assert record["date"] and record["commit"] and record["versions"].startswith("torch ")
    assert record["code_sha256"] == runner.code_fingerprint(written)
    # the metadata is what the notebook's own kernel printed in its one line
    assert config.provenance_line(record) in printed


def test_the_code_fingerprint_follows_code_cells_but_not_prose_or_the_address():
    notebook = new_notebook(cells=[new_markdown_cell("# prose"),
                                   new_code_cell('REPO = "https://github.com/a/b"\nx = 1')])
    fingerprint = runner.code_fingerprint(notebook)
    notebook.cells[0].source = "# other prose"
    notebook.cells[1].source = 'REPO = "https://github.com/c/d"\nx = 1'
    assert runner.code_fingerprint(notebook) == fingerprint
    notebook.cells[1].source = 'REPO = "https://github.com/c/d"\nx = 2'
    assert runner.code_fingerprint(notebook) != fingerprint


def test_notebooks_are_named_by_path_or_by_the_start_of_their_name(tmp_path):
    """`make course` / scripts/run_course.py NOTEBOOK: "02" is notebook 02; a name that fits no
    notebook, or several, lists the course's notebooks; no name means all five."""
    course_notebooks = runner.find_notebooks([])
    assert [nb.name[:2] for nb in course_notebooks] == ["01", "02", "03", "04", "05"]
    assert runner.find_notebooks(["02"]) == [course_notebooks[1]]
    other = _notebook(tmp_path / "mine.ipynb", "1 + 1")
    assert runner.find_notebooks([str(other), "05_feature"]) == [other, course_notebooks[4]]
    for name, problem in (("07", "matches none"), ("0", "matches several"),
                          ("--help", "matches none")):
        with pytest.raises(ValueError, match=f"{problem} of the course's notebooks: "
                                             f"01_allconv_baseline.ipynb, 02_"):
            runner.find_notebooks([name])


def test_executed_notebooks_keep_a_compact_record(tmp_path):
    """A progress bar leaves its last state, not one output per refresh; no empty outputs; a
    styled table keeps its HTML without the '<Styler at 0x...>' text."""
    source = ("import sys, time\n"
              "for step in range(40):\n"
              "    sys.stderr.write(f'\\rtraining {step + 1}/40 [00:00<00:00')\n"
              "    sys.stderr.flush()\n"
              "    time.sleep(0.005)\n"
              "sys.stderr.write('\\n'); print(end='')\n"
              "import pandas as pd\n"
              "display(pd.DataFrame({'a': [0.5]}).style.format('{:.0%}'))")
    notebook = _notebook(tmp_path / "01_bar.ipynb", source)
    assert runner.main([str(notebook)], build=tmp_path / "build") == 0
    outputs = nbformat.read(tmp_path / "build" / "01_bar.ipynb", as_version=4).cells[0].outputs
    streams = [o for o in outputs if o["output_type"] == "stream"]
    assert len(streams) == 1 and streams[0]["text"] == "training 40/40 [00:00<00:00\n"
    styled = [o for o in outputs if o["output_type"] == "display_data"]
    assert len(styled) == 1 and "text/html" in styled[0]["data"]
    assert "text/plain" not in styled[0]["data"]


def test_compact_merges_only_neighbouring_streams():
    outputs = [{"output_type": "stream", "name": "stdout", "text": "a\n"},
               {"output_type": "stream", "name": "stdout", "text": "\r   \r"},
               {"output_type": "display_data", "data": {"image/png": ""}},
               {"output_type": "stream", "name": "stdout", "text": "b\n"}]
    kept = runner.compact(outputs)
    assert [o.get("text") for o in kept] == ["a\n", None, "b\n"]


def _stream(text, name="stdout"):
    return {"output_type": "stream", "name": name, "text": text}


def test_output_problems_names_each_kind_of_untidy_output():
    bar = "".join(f"\rEpoch 0: {i}/312 [00:{i:02d}<04:57, 1.00it/s]" for i in range(1, 40))
    assert runner.output_problems([_stream(bar + "\n", "stderr")]) == []  # rewrites one line
    per_refresh = "".join(f"Epoch 0: {i}/312 [00:{i:02d}<04:57, 1.00it/s]\n" for i in range(1, 6))
    assert "progress bar left 5 lines" in runner.output_problems(
        [_stream(per_refresh, "stderr")])[0]
    downloads = "".join(f"\rdownloading {name}: 100%|██████████| 1.13M/1.13M [00:00<00:00, "
                        "406MB/s]\n" for name in ["googlenet", "resnet", "preact", "densenet"])
    assert runner.output_problems([_stream(downloads, "stderr")]) == []  # one line each
    mixed = _stream(downloads + "/x.py:3: UserWarning: something is deprecated\n", "stderr")
    assert runner.output_problems([mixed]) == [
        "stderr output (a warning?): '/x.py:3: UserWarning: something is deprecated'"]
    warning = _stream("/x.py:3: UserWarning: something is deprecated\n", "stderr")
    assert "UserWarning" in runner.output_problems([warning])[0]
    tcp = _stream("Kernel is running over TCP without encryption\n", "stderr")
    assert "TCP warning" in runner.output_problems([tcp])[0]
    fallback = {"output_type": "execute_result", "execution_count": 1, "metadata": {},
                "data": {"text/plain": "<helpers._machinery.runs.Record object at 0x7f3a2c1d9e50>"}}
    assert "text fallback" in runner.output_problems([fallback])[0]
    styled = {"output_type": "display_data", "metadata": {}, "data": {
        "text/html": "<table></table>",
        "text/plain": "<pandas.io.formats.style.Styler at 0x7f3a2c1d9e50>"}}
    figure = {"output_type": "display_data", "metadata": {}, "data": {
        "image/png": "", "text/plain": "<Figure size 640x480 with 1 Axes>"}}
    clean = [_stream("accuracy 12%\n"), _stream("\n"), styled, figure,
             {"output_type": "execute_result", "execution_count": 2, "metadata": {},
              "data": {"text/plain": "0.5"}}]
    assert runner.output_problems(clean) == []
    assert clean[0]["text"] == "accuracy 12%\n"  # the cell's outputs are not changed


def test_notebook_tests_fail_a_cell_with_untidy_output(tmp_path):
    """make test's notebook run (nbval, with notebooks/conftest.py) fails a cell that ran but
    left a warning, and passes a tidy one."""
    import shutil
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    shutil.copy(root / "notebooks" / "conftest.py", tmp_path / "conftest.py")
    notebook = tmp_path / "untidy.ipynb"
    nbformat.write(new_notebook(cells=[
        new_code_cell("print('tidy')"),
        new_code_cell("import warnings\nwarnings.warn('an untidy warning')")], metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}),
        notebook)
    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                             "--nbval-lax", "--nbval-current-env", "-q", str(notebook)],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert "1 failed, 1 passed" in result.stdout, result.stdout + result.stderr
    assert "untidy warning" in result.stdout and "output is untidy" in result.stdout
