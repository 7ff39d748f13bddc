"""``make course``: every notebook run headlessly, then a summary.

``make course`` executes every notebook headlessly, writes executed copies to build/, and prints
a summary table with each notebook's wall time and the headline result it reported with
:func:`helpers.course.headline`. The mode is COURSE_MODE (default: full with a GPU, cpu
without).

In CPU mode it is also the one way outputs get into notebooks/: each notebook whose every cell
ran, with tidy output, is written back there with its outputs, and its metadata records the run
(:func:`helpers._machinery.config.run_provenance`) and a fingerprint of its code cells
(:func:`code_fingerprint`), so that a test can tell when outputs no longer fit the code.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import sys
import time
from pathlib import Path

from . import config, files


# The committed outputs' mode, and the key of their record in a notebook's metadata.
OUTPUTS_MODE = "cpu"
OUTPUTS_RECORD = "course_outputs"
# The setup cell's REPO line is written from pyproject.toml (scripts/set_address.py); setting
# the course's address changes no output, so the fingerprint leaves that line out.
_ADDRESS_LINE = re.compile(r'^REPO = .*$', re.M)


def code_fingerprint(notebook) -> str:
    """sha256 of a notebook's code cells, in order (the REPO line left out): what its outputs
    depend on. Markdown cells are not in it: editing prose needs no re-run."""
    sources = [_ADDRESS_LINE.sub("REPO = ...", cell.source) for cell in notebook.cells
               if cell.cell_type == "code"]
    return hashlib.sha256(json.dumps(sources).encode()).hexdigest()


def run(notebook: Path, build: Path):
    """Execute one notebook in its own folder; write <build>/<name>.ipynb. Returns its summary
    row and the executed notebook."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    headline_file = build / f".{notebook.stem}.headline.json"
    provenance_file = build / f".{notebook.stem}.provenance.json"
    for stale in (headline_file, provenance_file):
        stale.unlink(missing_ok=True)
    os.environ["COURSE_HEADLINE_FILE"] = str(headline_file)
    os.environ["COURSE_PROVENANCE_FILE"] = str(provenance_file)
    nb = nbformat.read(notebook, as_version=4)
    # The kernel's start-up warning about unencrypted local TCP is noise in make course's output.
    client = NotebookClient(nb, timeout=900 if config.is_smoke() else None, kernel_name="python3",
                            resources={"metadata": {"path": str(notebook.parent)}},
                            extra_arguments=["--IPKernelApp.log_level=ERROR"])
    start = time.perf_counter()
    status = "ok"
    try:
        client.execute()
    except CellExecutionError as error:
        status = "FAILED"
        print(f"{notebook.name} failed:\n{error}", file=sys.stderr)
    seconds = time.perf_counter() - start
    untidy = 0
    for number, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            problems = output_problems(cell.outputs)
            untidy += bool(problems)
            for problem in problems:
                print(f"{notebook.name}, cell {number}: {problem}", file=sys.stderr)
            cell.outputs = compact(cell.outputs)
    if untidy and status == "ok":
        status = f"untidy output in {untidy} cell(s)"
    slowest, longest = max(((number, cell_seconds(cell)) for number, cell in enumerate(nb.cells)
                            if cell.cell_type == "code"),
                           key=lambda item: item[1], default=(None, 0.0))
    files.write_text(build / notebook.name, nbformat.writes(nb))
    headline = json.loads(headline_file.read_text())["headline"] if headline_file.exists() else "-"
    # what the notebook's kernel saw when it printed its banner (the checkout can change while
    # the course runs); the runner's own view for a notebook without one
    provenance = (json.loads(provenance_file.read_text()) if provenance_file.exists()
                  else config.run_provenance())
    for done in (headline_file, provenance_file):
        done.unlink(missing_ok=True)
    nb.metadata[OUTPUTS_RECORD] = provenance
    return {"notebook": notebook.name, "status": status, "wall time": f"{seconds:.0f} s",
            "slowest cell": f"{longest:.0f} s (cell {slowest})", "headline": headline}, nb


def write_back(notebook: Path, executed) -> None:
    """Replace ``notebook`` by its executed copy, bound to the run that made its outputs: the
    provenance (as :func:`run` recorded it) and the code fingerprint in its metadata; no widget
    state and no per-cell timings (they would change every diff)."""
    import nbformat
    executed = copy.deepcopy(executed)
    executed.metadata.pop("widgets", None)
    executed.metadata[OUTPUTS_RECORD] = {**executed.metadata[OUTPUTS_RECORD],
                                         "code_sha256": code_fingerprint(executed)}
    for cell in executed.cells:
        cell.metadata.pop("execution", None)
    files.write_text(notebook, nbformat.writes(executed))


def cell_seconds(cell) -> float:
    """How long a code cell of an executed notebook ran (nbclient's timing metadata), 0 if it
    did not run."""
    from datetime import datetime
    timing = cell.get("metadata", {}).get("execution", {})
    begin, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
    if not (begin and end):
        return 0.0
    parse = lambda stamp: datetime.fromisoformat(stamp.replace("Z", "+00:00"))  # noqa: E731
    return (parse(end) - parse(begin)).total_seconds()


def compact(outputs: list) -> list:
    """A cell's outputs as a reader of build/ should see them: consecutive stream outputs of one
    kind merged, with what a carriage return overwrote removed (a progress bar leaves its last
    state per line, not one output per refresh), empty streams dropped, and a pandas Styler
    table shown by its HTML alone (its '<Styler at 0x…>' text fallback removed)."""
    merged = []
    for output in outputs:
        previous = merged[-1] if merged else None
        if (output.get("output_type") == "stream" and previous is not None
                and previous.get("output_type") == "stream"
                and previous.get("name") == output.get("name")):
            previous["text"] += output["text"]
        else:
            merged.append(output)
    kept = []
    for output in merged:
        if output.get("output_type") == "stream":
            output["text"] = "\n".join(_last_state(line) for line in output["text"].split("\n"))
            if not output["text"].strip():
                continue
        data = output.get("data", {})
        if "text/html" in data and str(data.get("text/plain", "")).startswith(
                "<pandas.io.formats.style.Styler"):
            del data["text/plain"]
        kept.append(output)
    return kept


# tqdm's "12/312 [00:15<04:57" or, with units, "1.13M/1.13M [00:00<00:00"
PROGRESS_LINE = re.compile(r"([\d.]+[kMGTP]?)/([\d.]+[kMGTP]?) \[[\d:<?]+")
OBJECT_FALLBACK = re.compile(r"^<[\w.]+ (object )?at 0x[0-9a-f]+>$")


def output_problems(outputs: list) -> list[str]:
    """What is wrong with a cell's outputs as a reader sees them (after :func:`compact`): a
    progress bar that left a line per refresh, a warning or other stderr text, an object shown by
    its '<... at 0x…>' fallback, the kernel's TCP warning. Empty when the record is clean."""
    problems = []
    for output in compact(copy.deepcopy(outputs)):
        text = output.get("text", "")
        if output.get("output_type") == "stream":
            bars = [PROGRESS_LINE.search(line) for line in text.splitlines()]
            # a finished bar per item (one line per download) is tidy; a bar that left its
            # intermediate states behind printed a line per refresh
            unfinished = sum(1 for bar in bars if bar and bar[1] != bar[2])
            if unfinished > 3:
                problems.append(f"a progress bar left {unfinished} lines of intermediate states "
                                "(it should rewrite one line)")
            if "without encryption" in text:
                problems.append("the kernel's TCP warning is in the output")
            elif output.get("name") == "stderr":
                other = [line for line, bar in zip(text.splitlines(), bars)
                         if line.strip() and not bar]
                if other:
                    problems.append(f"stderr output (a warning?): {chr(10).join(other)[:200]!r}")
        plain = str(output.get("data", {}).get("text/plain", ""))
        if OBJECT_FALLBACK.match(plain.strip()) and len(output.get("data", {})) == 1:
            problems.append(f"an object shown by its text fallback {plain.strip()!r}: display "
                            "it (a figure, a table or its HTML) or end the line with ';'")
    return problems


def _last_state(line: str) -> str:
    """What a terminal shows of a line that carriage returns rewrote: its last part with text
    (a bar that clears itself writes blanks over it)."""
    parts = [part for part in line.split("\r") if part.strip()]
    return parts[-1] if parts else ""


def table(rows: list[dict]) -> str:
    """A Markdown table (readable as plain text too)."""
    columns = list(rows[0])
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in columns]

    def line(cells):
        return "| " + " | ".join(str(x).ljust(w) for x, w in zip(cells, widths)) + " |"

    return "\n".join([line(columns), line("-" * w for w in widths),
                      *(line(r.values()) for r in rows)])


def find_notebooks(names: list[str]) -> list[Path]:
    """The notebooks ``names`` stand for: a path to a notebook, or the start of a course
    notebook's name ("02", "02_densenet"); every course notebook when ``names`` is empty. A name
    that matches none, or several, is a ValueError that lists the course's notebooks."""
    course_notebooks = sorted((config.project_root() / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if not names:
        return course_notebooks
    found = []
    for name in names:
        path = Path(name)
        if path.suffix == ".ipynb" and path.is_file():
            found.append(path.resolve())
            continue
        matches = [nb for nb in course_notebooks if nb.name.startswith(path.name)]
        if len(matches) != 1:
            problem = "matches several" if matches else "is not a notebook file and matches none"
            raise ValueError(
                f"{name!r} {problem} of the course's notebooks: "
                f"{', '.join(nb.name for nb in course_notebooks)}. Give a path to a notebook, or "
                f"the start of one of these names (e.g. 02).")
        found.append(matches[0])
    return found


def main(arguments: list[str], build: Path | None = None) -> int:
    """Run the given notebooks (see :func:`find_notebooks`; default: every course notebook)
    into ``build`` (default: build/); in CPU mode, write each one whose cells all ran cleanly
    back into its file (:func:`write_back`), after all have run (a notebook written back earlier
    would make the later ones' checkout look changed). 1 if any failed."""
    build = build or config.project_root() / "build"
    notebooks = find_notebooks(arguments)
    os.environ["COURSE_MODE"] = config.mode()  # the kernels inherit the same mode
    writes_back = config.mode() == OUTPUTS_MODE
    build.mkdir(exist_ok=True)
    print(f"Running {len(notebooks)} notebook(s) in COURSE_MODE={config.mode()} "
          f"on {config.hardware()}; executed copies go to {build}/"
          + ("; each notebook that runs cleanly is written back with its outputs" if writes_back
             else f"; notebooks/ is left as it is (its outputs come from "
                  f"COURSE_MODE={OUTPUTS_MODE})"))
    rows, executed = [], []
    for notebook in notebooks:
        print(f"  {notebook.name} ...", flush=True)
        row, nb = run(notebook, build)
        rows.append(row)
        executed.append((notebook, nb, row["status"] == "ok"))
    if writes_back:
        for notebook, nb, ok in executed:
            if ok:
                write_back(notebook, nb)
        kept = [notebook.name for notebook, _, ok in executed if not ok]
        if kept:
            print(f"Kept the earlier outputs of {', '.join(kept)}: not every cell ran cleanly.")
    summary = table(rows)
    files.write_text(build / "summary.md", summary + "\n")
    print(f"\n{summary}")
    return 0 if all(r["status"] == "ok" for r in rows) else 1
