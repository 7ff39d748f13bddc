"""The course a notebook runs in: its mode, its banner and its headline result.

The mode says what a notebook's runs train on; the banner at its top prints the mode and the
run's provenance; the headline at its end is what ``make course`` collects for its summary."""

from __future__ import annotations

import json
import os

from ._machinery import files
from ._machinery.config import banner, hardware, is_smoke, mode, precision, runs_dir

__all__ = ["banner", "hardware", "headline", "is_smoke", "mode", "precision", "runs_dir"]


def headline(text: str) -> None:
    """Print a notebook's headline result; ``make course`` collects it for its summary table."""
    print(f"Headline: {text}")
    target = os.environ.get("COURSE_HEADLINE_FILE")
    if target:
        files.write_text(target, json.dumps({"headline": text}))
