"""Notebooks under pytest run as a smoke test: quick mode, no network (unless set otherwise)."""

import os

os.environ.setdefault("COURSE_MODE", "quick")
os.environ.setdefault("COURSE_OFFLINE", "1")
