"""How glibc's malloc treats the big blocks that training allocates, on a Linux CPU.

By default glibc maps every block above a threshold (at most 32 MiB) fresh from the kernel and
unmaps it when it is freed, and it returns the top of its heap to the kernel once more than a
threshold is free there. A training step on a CPU frees and allocates the same activations every
step, so by default the kernel zeroes and maps their pages again every step: DenseNet-BC-100 (batch
64, 32 x 32) takes about 139,000 page faults a step that way in bf16 (333,000 in fp32) and next to
none with freed blocks kept, which trains it 1.19x (1.45x) as fast (2026-12-03,
``benchmarks/allocator.py`` times every model both ways). Keeping them changes where tensors live,
never what is computed; the process keeps its peak memory for reuse until it ends.

Measuring peak memory needs the opposite (every block returned at once, so that the resident
peak is what was really held): :func:`track_peaks`, which wins over :func:`keep_freed_blocks`.
"""

from __future__ import annotations

import ctypes
import functools
import sys

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4

_state = {"mode": None}  # None (glibc's defaults), "keep" or "track"


@functools.cache
def _glibc():
    """glibc's C library, or None (another system, or another C library such as musl)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "gnu_get_libc_version") else None


def keep_freed_blocks() -> bool:
    """From now on, let glibc serve big blocks from its heap and keep freed ones for reuse (no
    fresh mapping per allocation, nothing returned to the kernel below 2 GiB free). Returns
    whether that is in force: False off glibc, and after :func:`track_peaks`."""
    if _state["mode"] is None and (libc := _glibc()) is not None:
        if libc.mallopt(_M_MMAP_MAX, 0) and libc.mallopt(_M_TRIM_THRESHOLD, 2 ** 31 - 1):
            _state["mode"] = "keep"
    return _state["mode"] == "keep"


def track_peaks() -> None:
    """From now on, let glibc map and unmap every block of 64 KiB or more directly, so that
    freed memory leaves the process at once (for processes that measure peak memory; it makes
    allocation slower)."""
    libc = _glibc()
    if libc is None:
        return
    libc.mallopt(_M_MMAP_MAX, 65536)  # glibc's default, in case keep_freed_blocks set it to 0
    libc.mallopt(_M_TRIM_THRESHOLD, 128 * 1024)
    libc.mallopt(_M_MMAP_THRESHOLD, 64 * 1024)
    _state["mode"] = "track"


def mode() -> str:
    """``"glibc defaults"``, ``"freed blocks kept"`` or ``"every block mapped"``: for records."""
    return {None: "glibc defaults", "keep": "freed blocks kept",
            "track": "every block mapped"}[_state["mode"]]


def release_free_memory() -> None:
    """Return the memory glibc holds free to the kernel now (before a peak is measured)."""
    if (libc := _glibc()) is not None:
        libc.malloc_trim(0)
