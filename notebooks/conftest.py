"""Notebooks under pytest run as a smoke test: smoke mode, no network (unless set otherwise).

Each executed cell's outputs are also read as a reader of ``make course``'s build/ would see them
(:func:`helpers._machinery.notebook_runner.output_problems`): a cell that leaves a line per
progress-bar refresh, a warning, or an object's '<... at 0x…>' text fails, although it ran."""

import os

import pytest

os.environ.setdefault("COURSE_MODE", "smoke")
os.environ.setdefault("COURSE_OFFLINE", "1")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    outputs = getattr(item, "test_outputs", None)  # nbval keeps the cell's executed outputs
    if call.when != "call" or not report.passed or outputs is None:
        return
    from helpers._machinery.notebook_runner import output_problems

    problems = output_problems(outputs)
    if problems:
        report.outcome = "failed"
        report.longrepr = (f"{item.name} ran, but its output is untidy:\n  - "
                           + "\n  - ".join(problems))
