"""Ends the Ray processes of a sweep whose process was killed.

Ray stops its local cluster when its driver exits, but a driver killed outright (SIGKILL, a
notebook kernel that dies) leaves the cluster's agents running for a minute or more.

``python -m helpers._machinery.ray_cleanup PID`` watches process PID: while it lives, it notes every
process below it (Ray's servers, agents and workers); once it is gone, it kills those that are
still running (matched by start time, so that a reused process id is left alone), then exits.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

POLL_SECONDS = 0.5


def start_for_this_process() -> subprocess.Popen:
    """Start a watcher for this process (call after ``ray.init`` started a local cluster)."""
    return subprocess.Popen([sys.executable, "-m", __name__, str(os.getpid())],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def _is_ray(process) -> bool:
    """Whether a process is one of Ray's (its servers and agents run from Ray's package; its
    workers are named ``ray::...``)."""
    try:
        command = " ".join(process.cmdline())
    except Exception:  # ended meanwhile, or not ours to read
        return False
    return "ray::" in command or f"{os.sep}ray{os.sep}" in command


def watch(pid: int) -> None:
    import psutil  # installed with Ray

    try:
        driver = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    seen: dict[int, float] = {}
    me = os.getpid()
    while True:
        try:
            if driver.status() == psutil.STATUS_ZOMBIE:
                break
            for child in driver.children(recursive=True):
                if child.pid != me and child.pid not in seen and _is_ray(child):
                    seen[child.pid] = child.create_time()
        except psutil.NoSuchProcess:
            break
        time.sleep(POLL_SECONDS)
    for child_pid, started in seen.items():
        try:
            child = psutil.Process(child_pid)
            if child.create_time() == started:
                child.kill()
        except psutil.Error:
            pass


if __name__ == "__main__":
    watch(int(sys.argv[1]))
