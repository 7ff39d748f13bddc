"""Writing files so that nothing is ever half-written.

Every result, cache and download goes to a temporary name in the target's folder and is renamed
over the target only when complete; an interrupted write leaves the old file (or nothing).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
from pathlib import Path
from collections.abc import Iterator

import torch

_FULL = (errno.ENOSPC, errno.EDQUOT)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` if the block succeeds."""
    target = Path(target)
    created = [p for p in (target.parent, *target.parent.parents) if not p.exists()]
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        yield temporary
        os.replace(temporary, target)
    except BaseException as error:
        temporary.unlink(missing_ok=True)
        for folder in created:  # innermost first; only the empty ones we made
            with contextlib.suppress(OSError):
                folder.rmdir()
        if isinstance(error, OSError) and error.errno in _FULL:
            raise OSError(error.errno, f"no space left on device for {target.name} in "
                          f"{target.parent}: make room on that disk (or point SAVED_MODELS_DIR "
                          f"or DATA_DIR at one with room) and start again. Nothing was "
                          f"half-written: {target.name} is as it was before") from None
        raise


def write_text(target: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``target`` atomically."""
    with atomic_path(target) as temporary:
        temporary.write_text(text)


def save_torch(value, target: str | os.PathLike) -> None:
    """``torch.save(value)`` to ``target`` atomically. It is serialised in memory and written by
    Python, so that a full disk is an OSError that says so (torch's own writer reports it as
    'unexpected pos ...')."""
    buffer = io.BytesIO()
    torch.save(value, buffer)
    with atomic_path(target) as temporary:
        temporary.write_bytes(buffer.getbuffer())


def sha256(path: str | os.PathLike) -> str:
    """The hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
