"""Downloads that arrive checked, or are not kept.

A sha256 and a size checked while the file arrives, a per-read timeout and an overall deadline,
a temporary file renamed only when complete, and one line instead of a traceback when offline or
without network. Also the reader of the published TensorBoard logs."""

from __future__ import annotations

import hashlib
import os
import http.client
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from . import config, files
from ..models import weights


class DownloadError(RuntimeError):
    """A download that failed or arrived wrong; nothing was saved."""


class NoNetworkError(DownloadError):
    """The server could not be reached at all (no network, DNS, refused, timed out)."""


class ConfigurationError(ValueError):
    """A setting (an environment variable or an argument) that cannot work; the message names
    it, its value and the remedy."""


def _url_problem(url: str) -> str | None:
    """What makes ``url`` unusable for a download, or None: it must be http(s) with a host, or
    file on this machine."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError as error:  # e.g. an unclosed IPv6 bracket
        return str(error)
    if parts.scheme in ("http", "https"):
        return None if parts.hostname else "it has no host"
    if parts.scheme == "file":
        return (None if parts.netloc in ("", "localhost")
                else f"it names another machine, {parts.netloc!r}")
    return f"its scheme {parts.scheme!r} is not http, https or file"


def is_local(url: str) -> bool:
    """A file:// URL: copying from it needs no network, so ``COURSE_OFFLINE`` allows it."""
    return urllib.parse.urlsplit(url).scheme == "file"


def check_url(url: str, setting: str | None = None) -> str:
    """``url``, if it can be downloaded from; else a :class:`ConfigurationError` naming it and
    the ``setting`` (environment variable) it came from, so that a typo is not mistaken for a
    missing network."""
    if problem := _url_problem(url):
        where = f"{setting}={url!r}" if setting else f"the URL {url!r}"
        raise ConfigurationError(f"{where} is not a URL to download from: {problem}. Use an "
                                 f"http(s)://host/... URL or a file:///folder/... URL.")
    return url


def download(url: str, destination: str | Path, sha256: str | None = None,
             timeout: float = 30, deadline: float | None = 30 * 60,
             what: str | None = None) -> Path:
    """Download ``url`` to ``destination`` with a progress bar that names ``what`` (default:
    the file's name); check its length and sha256.

    The bytes go to a temporary file beside the destination, renamed only when complete and
    correct, so a failed or interrupted download leaves nothing behind. ``timeout`` bounds each
    wait for bytes, ``deadline`` (seconds, None for none) the whole download, so that a server
    trickling bytes cannot hold a run forever; it is checked between reads, so it can be overrun
    by one wait (at most ``min(timeout, deadline)``). A malformed URL raises
    :class:`ConfigurationError`; a server that cannot be reached at all, :class:`NoNetworkError`;
    anything else that goes wrong, a :class:`DownloadError`."""
    check_url(url)
    if config.offline() and not is_local(url):
        raise DownloadError(f"COURSE_OFFLINE is set: not downloading {url}")
    destination = Path(destination)
    digest, received, started = hashlib.sha256(), 0, time.monotonic()

    def overdue() -> bool:
        return deadline is not None and time.monotonic() - started > deadline

    with files.atomic_path(destination) as temporary:
        try:  # no single wait may outlast the deadline
            response = urllib.request.urlopen(
                url, timeout=timeout if deadline is None else min(timeout, deadline))
        except urllib.error.HTTPError as error:
            raise DownloadError(f"{url} answered {error.code} {error.reason}; nothing was saved. "
                                f"The published file may have moved: check the URL.") from error
        except (OSError, http.client.HTTPException) as error:  # DNS, refused, timed out
            reason = getattr(error, "reason", error)
            if urllib.parse.urlsplit(url).scheme == "file":  # no network involved
                raise DownloadError(f"cannot read {url} ({reason}); nothing was saved. Check the "
                                    f"URL, or put the file there.") from error
            raise NoNetworkError(f"could not reach {url} ({reason})") from error
        with response, open(temporary, "wb") as out:
            expected = int(response.headers.get("Content-Length") or 0) or None
            try:
                with tqdm(total=expected, unit="B", unit_scale=True,
                          desc=f"downloading {what or destination.name}") as progress:
                    while not overdue() and (chunk := response.read1(1 << 16)):
                        out.write(chunk)
                        digest.update(chunk)
                        received += len(chunk)
                        progress.update(len(chunk))
            except (OSError, http.client.HTTPException) as error:
                if not overdue():
                    raise DownloadError(f"the download of {url} broke off after {received:,} "
                                        f"bytes ({type(error).__name__}); nothing was saved. "
                                        f"Run again.") from error
        if overdue():
            raise DownloadError(f"the download of {url} exceeded its deadline of {deadline:g} s "
                                f"after {received:,} bytes; nothing was saved. The server or the "
                                f"connection is too slow: run again later, or download the file "
                                f"yourself to {destination}.")
        if expected is not None and received != expected:
            raise DownloadError(f"the download of {url} was truncated ({received:,} of "
                                f"{expected:,} bytes); nothing was saved. Run again.")
        if sha256 and digest.hexdigest() != sha256:
            raise DownloadError(f"{url} arrived with sha256 {digest.hexdigest()}, expected "
                                f"{sha256}; nothing was saved. Run again; if this persists, "
                                f"the published file has changed.")
    return destination


def download_unless_offline(url: str, path: Path, sha256: str | None, what: str) -> bool:
    """Download ``url`` to ``path`` and return True. Offline, or with no network, say so in one
    line and return False; a wrong or broken download is an error (DownloadError), and so is a
    malformed URL, also offline (ConfigurationError)."""
    check_url(url)
    if config.offline() and not is_local(url):
        print(f"COURSE_OFFLINE is set: skipped downloading {what} from {url}.")
        return False
    try:
        download(url, path, sha256, what=what)
    except NoNetworkError as error:
        print(f"No network: {error}; skipped downloading {what} "
              f"(set COURSE_OFFLINE=1 to skip without trying).")
        return False
    return True


def tensorboard_scalars(path: str | Path) -> pd.DataFrame:
    """Every scalar in a TensorBoard event file (or a folder of them), read with TensorBoard's
    own event reader: columns tag, step, value, wall_time."""
    from tensorboard.backend.event_processing import event_accumulator
    reader = event_accumulator.EventAccumulator(str(path),
                                                size_guidance={event_accumulator.SCALARS: 0})
    tensorboard_logger = logging.getLogger("tensorboard")
    level = tensorboard_logger.level
    tensorboard_logger.setLevel(logging.ERROR)  # it warns about graph events we do not read
    try:
        reader.Reload()
    finally:
        tensorboard_logger.setLevel(level)
    return pd.DataFrame([{"tag": tag, "step": event.step, "value": event.value,
                          "wall_time": event.wall_time}
                         for tag in reader.Tags()["scalars"] for event in reader.Scalars(tag)])


def tutorial5_url(file: str) -> str:
    """Where a published file lives (``COURSE_TUTORIAL5_URL`` overrides the base, e.g. for a
    mirror, a local folder as a file:// URL, or a test server). A malformed base, or a file://
    folder that does not exist, is a :class:`ConfigurationError` naming the variable."""
    base = os.environ.get("COURSE_TUTORIAL5_URL") or weights.TUTORIAL5_URL
    parts = urllib.parse.urlsplit(check_url(base, "COURSE_TUTORIAL5_URL"))
    folder = Path(urllib.request.url2pathname(parts.path))
    if parts.scheme == "file" and not folder.is_dir():
        raise ConfigurationError(f"COURSE_TUTORIAL5_URL={base!r} names the folder {folder}, which "
                                 f"does not exist. Point it at the folder that holds the published "
                                 f"files, or unset it to download them from "
                                 f"{weights.TUTORIAL5_URL}.")
    return base.rstrip("/") + "/" + file
