"""Run the course notebooks headlessly: executed copies go to build/, then a summary.

The mode is COURSE_MODE (default: full with a GPU, cpu without); in CPU mode each notebook that
runs cleanly is written back with its outputs. Exits 1 if a notebook fails.
The runner itself is helpers._machinery.notebook_runner.
"""

import argparse
import sys

from helpers._machinery import notebook_runner

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split(
        "\n\n", 1)[1])
    parser.add_argument("notebooks", nargs="*", metavar="NOTEBOOK",
                        help="a notebook file, or the start of a course notebook's name (02, "
                             "02_densenet); default: every notebooks/NN_*.ipynb")
    args = parser.parse_args()
    try:
        notebook_runner.find_notebooks(args.notebooks)
    except ValueError as error:
        parser.error(str(error))
    sys.exit(notebook_runner.main(args.notebooks))
