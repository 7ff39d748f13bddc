"""The course website (`make site`) in a real browser with no network: every page loads, its
math is typeset, its figures show, notebook 05's plotly figure draws, and the console stays
clean. Debian's chromium, headless, driven by Playwright; every request that leaves the machine
fails (and the test lists it)."""

from __future__ import annotations

import functools
import http.server
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import nbformat
import pytest

from loading import load_script

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site") / "site"
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_site.py"), "--out",
                           str(out)], capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


@pytest.fixture(scope="module")
def pages(site) -> dict:
    """What the browser saw on every page: text, typeset math, images, plotly plots, console
    errors and requests to outside the machine."""
    if not Path(CHROMIUM).exists():
        pytest.fail("the site's browser test needs Debian's chromium: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    seen, outside = {}, []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
                "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})

            def route(request_route):
                if request_route.request.url.startswith(base):
                    request_route.continue_()
                else:
                    outside.append(request_route.request.url)
                    request_route.abort()

            page.route("**/*", route)
            errors: list = []
            page.on("console", lambda message: message.type == "error" and errors.append(
                message.text))
            page.on("pageerror", lambda error: errors.append(str(error)))
            for name in _page_names(site):
                errors.clear()
                page.goto(base + name, wait_until="load")
                if page.query_selector("script[src*='mathjax']"):  # pages with math
                    page.wait_for_function("window.MathJax && MathJax.startup && "
                                           "MathJax.startup.promise", timeout=30_000)
                    page.evaluate("MathJax.startup.promise")
                page.wait_for_timeout(300)
                seen[name] = page.evaluate(_READ_PAGE) | {"errors": list(errors)}
                # for a look by hand: pytest --basetemp=DIR keeps them in DIR/site0/
                page.screenshot(path=str(site.parent / f"{name.replace('/', '_')}.png"))
            browser.close()
    finally:
        server.shutdown()
    return {"pages": seen, "outside": outside}


def _comment_lines(text: str) -> list[str]:
    """Lines MyST reads as comments and drops from the page: those that begin with %, outside
    fenced code."""
    fenced, found = False, []
    for line in text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        elif not fenced and line.startswith("%"):
            found.append(line)
    return found


def test_no_line_of_the_pages_vanishes_as_a_comment():
    """A wrapped paragraph whose line begins with "%" ("... Python 2\n%. The second ...") loses
    that line on the site without a word."""
    pages = load_script(ROOT / "scripts" / "build_site.py").PAGES
    sources = {name: (ROOT / name).read_text() for name in pages}
    sources.update({f"{path.name} cell {index}": "".join(cell.source)
                    for path in NOTEBOOKS
                    for index, cell in enumerate(nbformat.read(path, as_version=4).cells)
                    if cell.cell_type == "markdown"})
    assert {name: lines for name, text in sources.items()
            if (lines := _comment_lines(text))} == {}
    assert _comment_lines("a\n% gone\n```\n% kept\n```") == ["% gone"]


def test_every_page_loads_offline_without_console_errors(site, pages):
    names = _page_names(site)
    assert {"index.html", "measurements.html", "saved_models.html"} <= set(names)
    assert {f"notebooks/{path.stem}.html" for path in NOTEBOOKS} <= set(names)
    assert pages["outside"] == []  # nothing was fetched from outside the machine
    for name, seen in pages["pages"].items():
        assert seen["errors"] == [], name
        assert len(seen["text"]) > 1000, name
        assert seen["broken images"] == [], name


def test_math_is_typeset_on_every_page_that_has_math(pages):
    with_math = 0
    for name, seen in pages["pages"].items():
        assert "$$" not in seen["text"], f"{name}: raw $$ left"
        with_math += seen["math"] > 0
    for path in NOTEBOOKS:
        markdown = "".join(cell.source for cell in nbformat.read(path, as_version=4).cells
                           if cell.cell_type == "markdown")
        if "$" in markdown:
            assert pages["pages"][f"notebooks/{path.stem}.html"]["math"] > 0, path.name
    assert with_math >= 3


def test_every_figure_of_the_executed_notebooks_is_on_its_page(pages):
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        figures = sum("image/png" in output.get("data", {}) for cell in notebook.cells
                      if cell.cell_type == "code" for output in cell.outputs)
        assert figures > 0, f"{path.name} has no figures: run `make course`"
        seen = pages["pages"][f"notebooks/{path.stem}.html"]
        assert seen["output images"] == figures, path.name


def test_the_plotly_figure_draws(pages):
    assert pages["pages"]["notebooks/05_feature_amount_sweep.html"]["plotly"] >= 1


def test_the_front_page_is_the_readme_with_the_notebooks_and_the_results_table(pages):
    front = pages["pages"]["index.html"]
    assert "Start here" in front["text"] and "Results of real training runs" in front["text"]
    for path in NOTEBOOKS:
        assert f"notebooks/{path.stem}.html" in front["links"], path.name
    assert front["tables"] >= 3


def _page_names(site: Path) -> list[str]:
    return sorted(path.relative_to(site).as_posix() for path in site.rglob("*.html")
                  if path.parent.name != "_static"
                  and path.name not in ("genindex.html", "search.html"))


_READ_PAGE = """() => {
  const main = document.querySelector('main') || document.body;
  const images = [...main.querySelectorAll('img')];
  return {
    text: main.innerText,
    math: main.querySelectorAll('mjx-container').length,
    'broken images': images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src),
    'output images': main.querySelectorAll('.cell_output img').length,
    plotly: main.querySelectorAll('.js-plotly-plot .main-svg').length,
    tables: main.querySelectorAll('table').length,
    links: [...main.querySelectorAll('a')].map(a => a.getAttribute('href')),
  };
}"""


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass

