"""The course's switches and places: mode, offline flag, folders, device.

Every notebook and helper asks this module instead of reading environment variables itself,
so that one variable changes the whole course:

- ``COURSE_MODE``: ``full`` (the papers' data and recipes; the default with a GPU, CUDA or
  MPS), ``cpu`` (every notebook's own runs on the real Fashion-MNIST, sized to minutes on a
  2-core CPU, in fp32 on every CPU so that results agree between machines; the default
  without a GPU) or ``smoke`` (tests and CI: small subsets and one epoch; the only mode with a
  synthetic stand-in for missing data, and never a result).
- ``COURSE_OFFLINE=1`` (or true/yes): no network access at all; downloads are skipped with one
  line. 0/false/no or unset: online. Any other value is an error.
- ``DATA_DIR`` (default ``data/``) and ``SAVED_MODELS_DIR`` (default ``saved_models/``): ``~``
  is expanded, and a relative path is relative to the course checkout.
"""

from __future__ import annotations

import errno
import importlib.metadata
import json
import os
import platform
import sys
from pathlib import Path

import torch


MODES = ("full", "cpu", "smoke")
OFFLINE_VALUES = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False,
                  "": False}  # COURSE_OFFLINE, lower-cased and stripped

# Sizes of the smoke-mode subsets (train, validation, test) and its epoch cap.
SMOKE_SUBSET = (1024, 256, 512)
SMOKE_EPOCHS = 1

_PACKAGE_DIR = Path(__file__).resolve().parents[1]  # helpers/


def project_root() -> Path:
    """The course checkout when helpers is installed from it (editable), else the working dir."""
    root = _PACKAGE_DIR.parent
    return root if (root / "pyproject.toml").exists() else Path.cwd()


def mode() -> str:
    """``full``, ``cpu`` or ``smoke``, from ``COURSE_MODE``; unset means full with a GPU, else
    cpu."""
    value = os.environ.get("COURSE_MODE", "").strip().lower()
    if not value:
        return "full" if device_type() in ("cuda", "mps") else "cpu"
    if value == "quick":
        raise ValueError("COURSE_MODE=quick is now called smoke (tests and CI: a few hundred "
                         "images, one epoch); on a CPU, COURSE_MODE=cpu (the default without a "
                         "GPU) trains on the real Fashion-MNIST in minutes")
    if value not in MODES:
        raise ValueError(f"COURSE_MODE={value!r} is not a mode; valid modes: {', '.join(MODES)}")
    return value


def is_smoke() -> bool:
    """Smoke mode: the tests' few-step runs, whose numbers are never results."""
    return mode() == "smoke"


def offline() -> bool:
    """True when ``COURSE_OFFLINE`` is 1/true/yes, False when 0/false/no/empty/unset (any case);
    anything else is a ValueError, so that a typo never silently picks the other policy."""
    value = os.environ.get("COURSE_OFFLINE", "")
    if (key := value.strip().lower()) not in OFFLINE_VALUES:
        raise ValueError(f"COURSE_OFFLINE={value!r} is not a yes/no value; valid values: 1, true, "
                         f"yes (offline) or 0, false, no, empty (online), in any case")
    return OFFLINE_VALUES[key]


def _folder_setting(variable: str, default: str) -> Path:
    """The folder ``variable`` names, ``~`` expanded; a relative one is relative to the course
    checkout (:func:`project_root`), the same from a notebook (which runs in ``notebooks/``)
    as from a script; unset or empty: ``default`` there."""
    value = os.environ.get(variable, "").strip()
    path = Path(value).expanduser() if value else Path(default)
    return path if path.is_absolute() else project_root() / path


def data_dir() -> Path:
    """Where data sets are found and downloaded: ``DATA_DIR``, default ``data/``. Not checked
    as :func:`saved_models_dir` is: data installed elsewhere (Debian's Fashion-MNIST) is used
    even when this folder cannot exist, and a download into it says why it failed."""
    return _folder_setting("DATA_DIR", "data")


def saved_models_dir() -> Path:
    """Where runs and checkpoints live: ``SAVED_MODELS_DIR``, default ``saved_models/``. A
    setting that cannot be a folder (a file, a symbolic-link loop, a name too long for the file
    system) is an error that says so, before anything is written."""
    path = _folder_setting("SAVED_MODELS_DIR", "saved_models")
    problem = None
    try:
        path.resolve()
        existing = next(p for p in (path, *path.parents) if p.exists())
        if not existing.is_dir():
            problem = f"{'it' if existing == path else existing} is a file, not a folder"
        elif path.is_symlink() and not path.exists():
            problem = "it is a symbolic link to nothing"
    except RuntimeError:  # Python 3.11's "Symlink loop"
        problem = "it is a loop of symbolic links"
    except OSError as error:
        problem = {errno.ELOOP: "it is a loop of symbolic links",
                   errno.ENAMETOOLONG: "a name in it is too long for the file system",
                   errno.ENOTDIR: "a part of it is a file, not a folder"}.get(
            error.errno, error.strerror)
    if problem:
        raise ValueError(f"SAVED_MODELS_DIR={os.environ.get('SAVED_MODELS_DIR')!r} cannot hold the "
                         f"course's runs: {problem} ({path}). Set it to a folder (it is created "
                         f"if missing), or unset it for saved_models/ in the checkout.")
    return path


def runs_dir() -> Path:
    """Where training runs write: each mode but full has a folder of its own under
    ``saved_models/`` (``smoke/``, never loaded as a result; ``cpu/``, the learner's CPU-mode
    runs, kept and resumed), so that a small run is never mistaken for a full one."""
    base = saved_models_dir()
    current = mode()
    return base if current == "full" else base / current


def device_type() -> str:
    """``cuda``, ``mps`` or ``cpu``: the best accelerator present."""
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX); elsewhere bf16 is slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


# The first CUDA compute capability with native bf16 (Ampere: A100, RTX 30xx), and the first with
# fp16 tensor cores (Volta: V100; Turing 7.5: T4, RTX 20xx).
NATIVE_BF16_CAPABILITY = (8, 0)
FAST_FP16_CAPABILITY = (7, 0)


def precision() -> str:
    """Lightning's precision for this machine, reduced only where the hardware computes it
    natively: bf16 autocast on GPUs of compute capability 8.0 and newer and on CPUs with
    AVX512-BF16 or AMX; fp16 autocast with gradient scaling on GPUs of capability 7.x, which
    have fp16 tensor cores but only emulate bf16 (``torch.cuda.is_bf16_supported()`` says True
    there too); fp32 everywhere else, Apple MPS included. CPU mode computes in fp32 on every
    machine, so that its runs (and the exercises' expected ranges) agree between the course's
    CPUs."""
    if mode() == "cpu":
        return "32-true"
    kind = device_type()
    if kind == "cuda":
        capability = torch.cuda.get_device_capability()
        if capability >= NATIVE_BF16_CAPABILITY:
            return "bf16-mixed"
        return "16-mixed" if capability >= FAST_FP16_CAPABILITY else "32-true"
    if kind == "cpu" and cpu_has_bf16():
        return "bf16-mixed"
    return "32-true"


def autocast_dtype(precision_name: str | None = None) -> torch.dtype | None:
    """The dtype a Lightning precision (default: this machine's, :func:`precision`) autocasts
    to, None for fp32, for code that runs a model outside Lightning, such as the speed
    measurements."""
    return {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(
        precision_name or precision())


def hardware() -> str:
    """A short description of the compute device, for provenance records."""
    kind = device_type()
    if kind == "cuda":
        return torch.cuda.get_device_name(0)
    if kind == "mps":
        return f"Apple MPS ({platform.machine()})"
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    threads = torch.get_num_threads()
    # the vector instructions PyTorch's kernels use (AVX512, AVX2, ...): fp32 sums, and so the
    # results, differ between them
    kernels = torch.backends.cpu.get_cpu_capability()
    return f"CPU {name} ({kernels}), {threads} thread{'' if threads == 1 else 's'}"


PLACEHOLDER_REPOSITORY = "https://github.com/OWNER/cnn-architectures-course"


def repository(root: Path | None = None) -> str:
    """The course's public git address: ``[tool.course] repository`` in pyproject.toml, the one
    place it is set (the Colab badges and the setup cells' REPO line are written from it by
    ``make address``). :data:`PLACEHOLDER_REPOSITORY` until the course is published."""
    import tomllib
    settings = tomllib.loads(((root or project_root()) / "pyproject.toml").read_text())
    return settings["tool"]["course"]["repository"]


def commit() -> str | None:
    """The course's git commit (with '+changes' if the checkout has uncommitted changes), for
    provenance records; None outside a git checkout."""
    import subprocess
    root = project_root()
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        changes = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                 cwd=root, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+changes" if changes.strip() else "")


def run_provenance() -> dict:
    """What made this run's outputs: mode, hardware, precision, commit, date and versions.
    ``make course`` stores it in each notebook it writes back; :func:`banner` prints it."""
    import datetime
    return {"mode": mode(), "hardware": hardware(), "precision": precision(),
            "commit": commit() or "not a git checkout",
            "date": datetime.date.today().isoformat(), "versions": versions()}


def banner() -> None:
    """Print the mode, the run's provenance (one line) and the network policy at the top of a
    notebook."""
    current = mode()
    what = {"smoke": "smoke run: small subsets and one epoch; its numbers are NOT results",
            "cpu": "real Fashion-MNIST, runs sized to minutes on a CPU, fp32",
            "full": "the papers' data and recipes"}[current]
    print(f"COURSE_MODE={current} ({what})")
    provenance = run_provenance()
    print(provenance_line(provenance))
    target = os.environ.get("COURSE_PROVENANCE_FILE")  # make course records what the kernel saw
    if target:
        from . import files
        files.write_text(target, json.dumps(provenance))
    print(f"device: {device_type()}, precision {precision()} | offline: "
          f"{'yes' if offline() else 'no'}")
    if "google.colab" in sys.modules and device_type() == "cpu":
        print("No GPU is attached: Runtime > Change runtime type > T4 GPU gives one (then run "
              "the notebook from the top); without one, CPU mode trains on Fashion-MNIST in "
              "minutes.")


def provenance_line(provenance: dict) -> str:
    """'This run: cpu mode on CPU AMD EPYC (AVX512), 2 threads, commit 1a2b3c4, 2026-12-02,
    torch ...'."""
    sha, plus, changes = provenance["commit"].partition("+")
    short = (sha[:7] if len(sha) == 40 else sha) + plus + changes
    return (f"This run: {provenance['mode']} mode on {provenance['hardware']}, commit {short}, "
            f"{provenance['date']}, {provenance['versions']}")


def versions() -> str:
    """The versions of the packages that decide the numbers: torch, torchvision, Lightning."""
    found = []
    for package in ("torch", "torchvision", "pytorch-lightning"):
        try:
            found.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{package} not installed")
    return ", ".join(found)
