"""Sphinx configuration of the course website (``make site``; scripts/build_site.py stages the
pages next to a copy of this file). Nothing is executed and nothing is fetched from a CDN."""

from helpers._machinery import config

project = "Convolutional network architectures"
author = "the course's authors"
extensions = ["myst_nb"]
exclude_patterns = ["_build"]

# The notebooks are committed with the outputs of `make course`: show those, never re-run.
nb_execution_mode = "off"
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3
suppress_warnings = ["myst.header"]  # notebooks number their sections from one ## heading

# Offline: MathJax and plotly.js come with the site (scripts/build_site.py copies them in).
mathjax_path = "mathjax/tex-chtml-full.js"
html_static_path = ["_static"]
html_js_files = ["plotly.min.js"]
html_css_files = ["course.css"]

html_title = "CNN architectures: a course in notebooks"
html_theme = "sphinx_book_theme"
html_theme_options = {
    "repository_url": config.repository(),
    "repository_branch": "main",
    "use_repository_button": True,
    "launch_buttons": {"colab_url": "https://colab.research.google.com"},
    "show_toc_level": 2,
}
html_show_sourcelink = False
html_context = {"default_mode": "light"}  # the theme's mode switch starts from a valid mode
html_favicon = "_static/favicon.svg"
