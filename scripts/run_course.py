"""Run every course notebook headlessly: executed copies and HTML go to build/, then a summary.

Usage: python scripts/run_course.py [notebook ...]   (default: every notebooks/NN_*.ipynb)
The mode is COURSE_MODE (default: full with a GPU, quick without). Exits 1 if a notebook fails.
The runner itself is helpers.course.
"""

import sys

from helpers import course

if __name__ == "__main__":
    sys.exit(course.main(sys.argv[1:]))
