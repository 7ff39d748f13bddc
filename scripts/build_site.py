"""Build the course website from the executed notebooks: ``make site`` writes build/site/.

Sphinx with MyST-NB and the Sphinx Book Theme (Jupyter Book's stack) turns the README into the
front page and each committed notebook, with its outputs, into a page; nothing is re-executed.
The site works with no network at all: MathJax (from npm's ``mathjax`` package) and plotly.js
(from the installed ``plotly`` package) are copied into it, and links to files of the repository
that are not pages go to the course's public address (pyproject.toml, ``[tool.course]``).
"""

from __future__ import annotations

import argparse
import posixpath
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat

from helpers._machinery import config

ROOT = config.project_root()
MATHJAX = "mathjax@3.2.2"
# The repository's files that become pages, and their place in the site.
PAGES = {"README.md": "index.md", "docs/measurements.md": "measurements.md",
         "saved_models/README.md": "saved_models.md"}
COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
# a Markdown link or image target: ](target) or ](target "title")
LINK = re.compile(r"\]\((?!https?:|mailto:|#)([^)\s]+)((?:\s+\"[^\"]*\")?)\)")


PLOTLY_JSON = "application/vnd.plotly.v1+json"


def notebooks() -> list[Path]:
    return sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def site_path(repository_path: str) -> str | None:
    """Where a file of the repository is in the site, or None if it is not a page."""
    if repository_path in PAGES:
        return PAGES[repository_path]
    if re.fullmatch(r"notebooks/\d\d_[\w-]+\.ipynb", repository_path):
        return repository_path
    return None


def relinked(markdown: str, source: str, repository: str) -> str:
    """``markdown`` (of the repository file ``source``) as its site page needs it: links to files
    that are pages point to those pages, links to other files of the repository to their
    address on GitHub, and the Colab badge image is the site's own copy (a page fetches
    nothing from outside)."""
    folder = Path(source).parent

    here = Path(site_path(source) or source).parent
    up = "../" * len(here.parts)

    def target(match: re.Match) -> str:
        link, title = match[1], match[2]
        path, hash_, anchor = link.partition("#")
        normal = posixpath.normpath((folder / path).as_posix())
        page = site_path(normal)
        if page is None:
            return f"]({repository.rstrip('/')}/blob/main/{normal}{hash_}{anchor}{title})"
        return f"]({up}{page}{hash_}{anchor}{title})"

    return LINK.sub(target, markdown).replace(COLAB_BADGE, f"{up}_static/open-in-colab.svg")


def mathjax(cache: Path) -> Path:
    """MathJax's browser files, from npm (once; kept in ``cache``)."""
    es5 = cache / "node_modules" / "mathjax" / "es5"
    if not (es5 / "tex-chtml-full.js").exists():
        if shutil.which("npm") is None:
            raise SystemExit("make site needs npm (Node.js) to install MathJax, which the site "
                             "ships so that it works offline: apt-get install npm")
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--prefix", str(cache), "--no-save", "--no-audit",
                        "--no-fund", "--loglevel=error", MATHJAX], check=True)
    return es5


def stage(source: Path, repository: str, cache: Path) -> None:
    """Write the site's sources into ``source``: conf.py, static files, the pages."""
    import plotly
    shutil.rmtree(source, ignore_errors=True)
    shutil.copytree(ROOT / "site", source)
    static = source / "_static"
    (static / "mathjax").mkdir(parents=True, exist_ok=True)
    es5 = mathjax(cache)
    shutil.copy2(es5 / "tex-chtml-full.js", static / "mathjax" / "tex-chtml-full.js")
    shutil.copytree(es5 / "output" / "chtml" / "fonts" / "woff-v2",
                    static / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2")
    shutil.copy2(Path(plotly.__file__).parent / "package_data" / "plotly.min.js", static)
    for original, page in PAGES.items():
        text = relinked((ROOT / original).read_text(), original, repository)
        if original == "README.md":
            toc = "\n".join(path.relative_to(ROOT).with_suffix("").as_posix()
                            for path in notebooks())
            text += ("\n```{toctree}\n:hidden:\n:caption: Notebooks\n\n" + toc +
                     "\n```\n\n```{toctree}\n:hidden:\n:caption: More\n\nmeasurements\n"
                     "saved_models\n```\n")
        (source / page).write_text(text)
    (source / "notebooks").mkdir()
    for path in notebooks():
        notebook = nbformat.read(path, as_version=4)
        if not any(cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"):
            print(f"warning: {path.name} has no outputs (run `make course`)", file=sys.stderr)
        relative = path.relative_to(ROOT).as_posix()
        for cell in notebook.cells:
            if cell.cell_type == "markdown":
                cell.source = relinked(cell.source, relative, repository)
            for output in cell.get("outputs", []):
                # the page draws a plotly figure from its HTML, with the plotly.js the site
                # ships; its JSON (for JupyterLab) is a mime type Sphinx would warn about
                if "text/html" in output.get("data", {}):
                    output["data"].pop(PLOTLY_JSON, None)
        nbformat.write(notebook, source / relative)


def build(out: Path) -> None:
    start = time.perf_counter()
    repository = config.repository()
    source = out.parent / f"{out.name}-source"
    stage(source, repository, ROOT / "build" / "npm")
    shutil.rmtree(out, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "sphinx", "-b", "html", "-q", "-W", "--keep-going",
                    str(source), str(out)], check=True)
    pages = sorted(path.relative_to(out).as_posix() for path in out.rglob("*.html")
                   if not path.name.startswith(("genindex", "search")))
    size = sum(path.stat().st_size for path in out.rglob("*") if path.is_file())
    print(f"Site in {out}/ ({time.perf_counter() - start:.0f} s, {size / 1e6:.1f} MB): "
          f"{', '.join(pages)}; open {out / 'index.html'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "site",
                        help="where the site goes (default: build/site)")
    build(parser.parse_args().out.resolve())
