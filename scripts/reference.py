"""Train the course's reference runs that are missing (``make reference``).

Reads the one list of reference runs (``helpers.reference.RUNS``), prints each run's status,
measures this machine's speed with a few training steps per missing run and prints the
estimate of what remains, then trains the missing runs one after the other: finished runs are
skipped, interrupted ones resume from their last epoch, and a run whose record disagrees with
the list is reported, never trained over. Runs land in saved_models/ (see its README).

    COURSE_MODE=full python scripts/reference.py [--only NAME ...] [--dry-run]
    python scripts/reference.py --table     # the README's results table, from the run records
    python scripts/reference.py --readme    # ... written into README.md
"""

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

from helpers._machinery import config, files, reference_runs, runs
from helpers import training


README = Path(__file__).resolve().parents[1] / "README.md"


def write_readme_table(table: str) -> None:
    """Put ``table`` between README's two markers, replacing what was there."""
    text = README.read_text()
    start, end = reference_runs.README_MARKERS
    if text.count(start) != 1 or text.count(end) != 1:
        sys.exit(f"{README} must hold each of these lines once: {start} {end}")
    head, rest = text.split(start)
    files.write_text(README, f"{head}{start}\n{table}\n{end}{rest.split(end)[1]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="train only these runs")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the status and the estimate, train nothing")
    parser.add_argument("--table", action="store_true",
                        help="print the README's results table from the run records, and exit")
    parser.add_argument("--readme", action="store_true",
                        help="write that table into README.md (between its markers), and exit")
    args = parser.parse_args()
    if args.table or args.readme:
        table = reference_runs.results_markdown()
        if args.readme:
            write_readme_table(table)
        print(table)
        return
    if config.mode() != "full":
        parser.error("reference runs are results: run with COURSE_MODE=full (make reference)")
    try:
        entries = ([reference_runs.get(name) for name in args.only] if args.only
                   else reference_runs.RUNS)
    except ValueError as error:
        parser.error(str(error))
    pd.set_option("display.width", 200, "display.max_colwidth", 60)
    print(f"device: {config.device_type()} ({config.hardware()}), precision "
          f"{config.precision()}")
    status = {entry.name: entry.status() for entry in entries}
    print(pd.Series({name: "damaged (said below)" if state.state == "damaged" else str(state)
                     for name, state in status.items()}, name="status").to_string())
    disagreeing = [name for name, state in status.items() if state.state == "disagrees"]
    damaged = {name: str(state) for name, state in status.items() if state.state == "damaged"}
    busy = [name for name, state in status.items() if state.state == "in use"]
    todo = [entry for entry in entries if status[entry.name].state in ("interrupted", "missing")]
    if busy:
        print(f"Left to the process that is training them: {', '.join(busy)}.")
    if not todo:
        print("Nothing to train.")
    else:
        print(f"Measuring this machine's speed for the {len(todo)} run(s) to train ...")
        estimates = {}
        for entry in todo:
            estimates[entry.name] = entry.estimate_seconds()
            print(f"  {entry.name}: about {estimates[entry.name] / 60:.0f} min", flush=True)
        print(f"Estimated total: {sum(estimates.values()) / 3600:.1f} h on this machine "
              f"(a few timed training steps per run, plus the images each epoch evaluates).")
    if not args.dry_run:
        for entry in todo:
            start = time.perf_counter()
            print(f"\n=== {entry.name} (notebook {entry.notebook}) ===", flush=True)
            try:
                entry.train()
            except training.RunInterrupted as stop:
                stop.exit()  # its line is printed already
            except runs.RunInUse as error:  # another process started it since the status
                print(f"{entry.name}: skipped, {error}")
                continue
            except (runs.CheckpointError, runs.DefinitionMismatch, OSError) as error:
                damaged[entry.name] = f"damaged: {error}"  # reported below; the others go on
                print(f"{entry.name}: not trained, {error}")
                continue
            print(f"{entry.name}: done in {(time.perf_counter() - start) / 60:.1f} min")
    if disagreeing:
        print(f"\n{len(disagreeing)} run(s) disagree with the list and were not trained: "
              f"{', '.join(disagreeing)}. Retrain them under their names with overwrite, or "
              f"correct the list.", file=sys.stderr)
    for name, state in damaged.items():
        print(f"\n{name} was not trained: {state}", file=sys.stderr)
    if disagreeing or damaged:
        sys.exit(1)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # Ctrl+C outside training (which stops with RunInterrupted)
        print("\nStopped (Ctrl+C). Finished runs are kept, and an interrupted one resumes when "
              "make reference runs again.", file=sys.stderr)
        sys.exit(130)
