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
import zipfile
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
        raise_if_disk_full(error, target, f"Nothing was half-written: {target.name} is as it "
                                          f"was before")
        raise


def raise_if_disk_full(error: BaseException, target: Path, consequence: str) -> None:
    """If ``error`` says the disk (or the quota) is full, raise an OSError that says so, names
    ``target``'s folder and the remedy, and adds ``consequence`` (e.g. that nothing changed)."""
    if isinstance(error, OSError) and error.errno in _FULL:
        raise OSError(error.errno, f"no space left on device for {target.name} in "
                      f"{target.parent}: make room on that disk (or point SAVED_MODELS_DIR or "
                      f"DATA_DIR at one with room) and start again. {consequence}") from None


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


def load_torch(path: str | os.PathLike, **options):
    """``torch.load(path, weights_only=True)`` (nothing is ever unpickled), after checking the
    checksums of the file's zip archive: torch itself loads garbled tensor bytes silently."""
    path = Path(path)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if (bad := archive.testzip()) is not None:
                raise ValueError(f"the bytes of {bad} in it do not match their checksum: the "
                                 f"file is garbled")
    return torch.load(path, map_location="cpu", weights_only=True, **options)


def sha256(path: str | os.PathLike) -> str:
    """The hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
