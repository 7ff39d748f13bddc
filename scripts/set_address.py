"""Write the course's public address into the places a learner meets it: the Open-in-Colab badge
of the README and of every notebook, and the REPO line of every notebook's setup cell.

The address is set in one place, ``[tool.course] repository`` in pyproject.toml (a GitHub
address: Colab opens notebooks from GitHub). ``--check`` changes nothing and exits 1, naming the
files, where one does not follow the setting. Only the badge line and the REPO line change; no
output and no other line is touched, so committed outputs stay fresh (``make course``'s code
fingerprint leaves the REPO line out).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

from helpers._machinery import config

BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"
BADGE = re.compile(r"^\[!\[Open In Colab\]\(.*\)\]\(.*\)$")
REPO_LINE = re.compile(r'^REPO = ".*"')


def colab_url(repository: str, path: str) -> str:
    """Colab's address for a file of the repository's main branch."""
    match = re.fullmatch(r"https://github\.com/([\w.-]+)/([\w.-]+?)(\.git)?/?", repository)
    if not match:
        raise ValueError(f"[tool.course] repository in pyproject.toml is {repository!r}: set it to "
                         "the course's GitHub address, https://github.com/<owner>/<name> (Colab "
                         "opens notebooks from GitHub)")
    return f"https://colab.research.google.com/github/{match[1]}/{match[2]}/blob/main/{path}"


def badge(repository: str, path: str) -> str:
    return f"[![Open In Colab]({BADGE_IMAGE})]({colab_url(repository, path)})"


def with_badge(markdown: str, line: str) -> str:
    """``markdown`` with ``line`` as its badge: in place of an existing badge line, else after
    the title (the first line) and a blank line."""
    lines = markdown.split("\n")
    for number, text in enumerate(lines):
        if BADGE.match(text):
            lines[number] = line
            return "\n".join(lines)
    return "\n".join([lines[0], "", line, *lines[1:]])


def repo_line(repository: str) -> str:
    return f'REPO = "{repository}"  # the course\'s git address (set in pyproject.toml)'


def updated_readme(text: str, repository: str) -> str:
    return with_badge(text, badge(repository, "notebooks/01_allconv_baseline.ipynb"))


def updated_notebook(notebook, path: str, repository: str) -> None:
    """Set the badge of the notebook's first (title) cell and the REPO line of its setup cell."""
    title = notebook.cells[0]
    title.source = with_badge(title.source, badge(repository, path))
    setup = [cell for cell in notebook.cells
             if cell.cell_type == "code" and any(REPO_LINE.match(line)
                                                 for line in cell.source.split("\n"))]
    if len(setup) != 1:
        raise ValueError(f"{path}: expected one setup cell with a REPO = \"...\" line, found "
                         f"{len(setup)}")
    setup[0].source = "\n".join(repo_line(repository) if REPO_LINE.match(line) else line
                                for line in setup[0].source.split("\n"))


def main(check: bool, root: Path) -> int:
    repository = config.repository(root)
    stale = []
    readme = root / "README.md"
    text = readme.read_text()
    if updated_readme(text, repository) != text:
        stale.append(readme)
        if not check:
            readme.write_text(updated_readme(text, repository))
    for path in sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        raw = path.read_text()
        notebook = nbformat.reads(raw, as_version=4)
        before = [cell.source for cell in notebook.cells]
        updated_notebook(notebook, path.relative_to(root).as_posix(), repository)
        if [cell.source for cell in notebook.cells] != before:
            stale.append(path)
            if not check:
                nbformat.write(notebook, path)
    names = ", ".join(path.relative_to(root).as_posix() for path in stale)
    if check:
        if stale:
            print(f"Not written from [tool.course] repository ({repository}): {names}. Run "
                  "`make address`.", file=sys.stderr)
        return 1 if stale else 0
    print(f"Address {repository}: " + (f"updated {names}" if stale else "every file follows it"))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 where a file does not follow the setting")
    parser.add_argument("--root", type=Path, default=config.project_root(),
                        help="the copy of the course to work on (default: this checkout)")
    arguments = parser.parse_args()
    try:
        sys.exit(main(arguments.check, arguments.root.resolve()))
    except ValueError as error:
        sys.exit(f"error: {error}")
