"""Finding, downloading and loading checkpoints: ``load_or_train``.

A model's checkpoint is looked for in ``saved_models/<name>/best.ckpt``; else downloaded from
its published URL (sha256-checked, with a timeout, into a temporary file renamed when complete);
else the model is trained. With ``COURSE_OFFLINE`` set the download is skipped with one line.
A corrupt, mismatching or wrong-hash file raises :class:`CheckpointError`, naming the file and
what to do, instead of failing deep inside torch.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from . import config, files, training


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be used; the message names it and the remedy."""


class DownloadError(RuntimeError):
    """A download that failed or arrived wrong; nothing was saved."""


def download(url: str, destination: str | Path, sha256: str | None = None,
             timeout: float = 30) -> Path:
    """Download ``url`` to ``destination`` with a progress bar; check its length and sha256.

    The bytes go to a temporary file beside the destination, renamed only when complete and
    correct, so a failed or interrupted download leaves nothing behind."""
    if config.offline():
        raise DownloadError(f"COURSE_OFFLINE is set: not downloading {url}")
    destination = Path(destination)
    digest, received = hashlib.sha256(), 0
    with files.atomic_path(destination) as temporary:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, \
                    open(temporary, "wb") as out:
                expected = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(total=expected, unit="B", unit_scale=True,
                          desc=f"downloading {destination.name}") as progress:
                    while chunk := response.read(1 << 16):
                        out.write(chunk)
                        digest.update(chunk)
                        received += len(chunk)
                        progress.update(len(chunk))
        except (OSError, http.client.HTTPException) as error:  # URLError, timeouts, cut-offs
            raise DownloadError(f"downloading {url} failed ({type(error).__name__}: {error}); "
                                f"nothing was saved. Check the connection and run again, or set "
                                f"COURSE_OFFLINE=1 to skip downloads.") from error
        if expected is not None and received != expected:
            raise DownloadError(f"the download of {url} was truncated ({received:,} of "
                                f"{expected:,} bytes); nothing was saved. Run again.")
        if sha256 and digest.hexdigest() != sha256:
            raise DownloadError(f"{url} arrived with sha256 {digest.hexdigest()}, expected "
                                f"{sha256}; nothing was saved. Run again; if this persists, "
                                f"the published file has changed.")
    return destination


def load_weights(path: str | Path, model: nn.Module, sha256: str | None = None) -> dict:
    """Load a checkpoint's weights into ``model`` (strictly) and return the checkpoint.

    Accepts a plain state dict or a Lightning checkpoint (whose ``state_dict`` keys start with
    ``model.``)."""
    path = Path(path)
    remedy = f"Delete {path} and run again to download or train it afresh."
    if sha256 and (actual := files.sha256(path)) != sha256:
        raise CheckpointError(f"{path} has sha256 {actual}, expected {sha256}: it is corrupt or "
                              f"not the published file. {remedy}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a damaged file
        raise CheckpointError(f"{path} is not a readable checkpoint "
                              f"({type(error).__name__}: {error}). {remedy}") from error
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds no state dict. {remedy}")
    if state and all(key.startswith("model.") for key in state):
        state = {key[len("model."):]: value for key, value in state.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"{path} does not fit this model ({error}). Check the model's "
                              f"hyper-parameters, or {remedy[0].lower()}{remedy[1:]}") from error
    return checkpoint


def load_or_train(name: str, model: nn.Module, data=None, recipe=None, *, url: str | None = None,
                  sha256: str | None = None, **fit_options) -> training.Run:
    """The model ``name`` ready for use: loaded, else downloaded, else trained.

    1. ``saved_models/<name>/best.ckpt`` if it exists (and its run is complete);
    2. else ``url`` (if given and not offline) downloaded and checked against ``sha256``;
    3. else ``training.fit(model, data, recipe, name=name, **fit_options)``.
    Quick-mode training writes to ``saved_models/quick/``, which is never loaded from here.
    """
    folder = config.saved_models_dir() / name
    path = folder / "best.ckpt"
    interrupted = (folder / "last.ckpt").exists() and not (folder / "run.json").exists()
    if path.exists() and not interrupted:
        return _loaded_run(name, model, path, sha256)
    if url:
        if config.offline():
            print(f"COURSE_OFFLINE is set: skipped downloading {name} from {url}.")
        else:
            download(url, path, sha256)
            return _loaded_run(name, model, path, sha256=None)  # checked while downloading
    if data is None or recipe is None:
        raise CheckpointError(f"no checkpoint for {name} at {path}, and no data and recipe to "
                              f"train it with.")
    return training.fit(model, data, recipe, name=name, **fit_options)


def _loaded_run(name: str, model: nn.Module, path: Path, sha256: str | None) -> training.Run:
    load_weights(path, model, sha256)
    model.eval()
    print(f"Loaded {name} from {path}.")
    info_file, history_file = path.parent / "run.json", path.parent / "history.csv"
    info = json.loads(info_file.read_text()) if info_file.exists() else {"checkpoint": str(path)}
    history = pd.read_csv(history_file) if history_file.exists() else None
    return training.Run(name, model, history, info, path.parent)
