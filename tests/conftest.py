"""Every test runs offline, in smoke mode, with its own empty data and saved_models folders."""

import http.server
import os
import signal
import socket
import subprocess
import sys
import threading

os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
import pytorch_lightning as pl  # noqa: E402

from doubles import OutOfMemoryAbove  # noqa: E402 (tests/ is on the path, as for conftest)
from loading import load_script  # noqa: E402
from helpers._machinery import config, datasets  # noqa: E402


@pytest.fixture(autouse=True)
def course_env(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_MODE", "smoke")
    monkeypatch.setenv("COURSE_OFFLINE", "1")
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SAVED_MODELS_DIR", str(tmp_path / "saved_models"))
    monkeypatch.delenv("COURSE_HEADLINE_FILE", raising=False)
    monkeypatch.delenv("COURSE_PROVENANCE_FILE", raising=False)
    datasets._loaded.clear()
    yield tmp_path
    datasets._loaded.clear()


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.routes[path] = (body, behaviour)``; behaviour 'ok', 'truncate' (the
    connection is cut half-way through a correctly announced length) or 'slow' (one byte a
    second, until the client hangs up or the server closes)."""

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.server.requests.append(self.path)
        if self.path not in self.server.routes:
            self.send_error(404)
            return
        body, behaviour = self.server.routes[self.path]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if behaviour == "truncate":
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
        elif behaviour == "slow":
            self.close_connection = True
            for byte in body:
                if self.server.closing.wait(1):
                    return
                try:
                    self.wfile.write(bytes([byte]))
                except OSError:  # the client gave up
                    return
        else:
            self.wfile.write(body)

    def log_message(self, *args):
        pass


class LocalServer:
    def __init__(self):
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.routes, self.httpd.requests = {}, []
        self.httpd.closing = threading.Event()  # ends 'slow' answers, so closing never waits
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def serve(self, path: str, body: bytes, behaviour: str = "ok") -> str:
        self.httpd.routes[path] = (body, behaviour)
        return self.url(path)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}{path}"

    @property
    def requests(self) -> list:
        return self.httpd.requests

    def close(self):
        self.httpd.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def measuring_script(monkeypatch):
    """scripts/measure_exercises.py as a module: its ``RUNS`` name every run a notebook makes in
    CPU mode, with the notebook. Importing it sets COURSE_MODE=cpu, undone after the test."""
    monkeypatch.setenv("COURSE_MODE", "cpu")
    return load_script(config.project_root() / "scripts" / "measure_exercises.py")


@pytest.fixture
def server():
    """An HTTP server on 127.0.0.1 standing in for the internet."""
    local = LocalServer()
    yield local
    local.close()


@pytest.fixture
def out_of_memory_above():
    """Wraps a model so that batches above a size fail as on a full GPU: ``wrap(model, limit)``."""
    return OutOfMemoryAbove


class _InterruptAtEpoch(pl.Callback):
    """SIGINT at the start of epoch ``epoch`` (counted from 0): the run stops, resumable, with
    every epoch before it kept."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, module):
        if trainer.current_epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGINT)


@pytest.fixture
def interrupt_at_epoch():
    """A callback class: ``interrupt_at_epoch(1)`` stops a run at the start of its 2nd epoch."""
    return _InterruptAtEpoch


HOLD_LOCK = """
import sys, time
from pathlib import Path
from helpers._machinery import runs
with runs.lock(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def hold_lock():
    """``hold_lock(folder)`` starts a process that holds the folder's run lock, as a training
    run does, and returns it once it holds it; every such process is ended after the test."""
    holders = []

    def start(folder):
        holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(folder)],
                                  stdout=subprocess.PIPE, text=True)
        holders.append(holder)
        assert holder.stdout.readline().strip() == "locked"
        return holder

    yield start
    for holder in holders:
        holder.kill()
        holder.wait()
