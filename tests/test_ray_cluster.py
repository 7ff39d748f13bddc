"""The sweep on a real Ray cluster of two nodes on this machine (issue 26, item 10): a worker
killed in the middle of a variant gets the variant retried, and the table equals an undisturbed
sweep's; a killed driver leaves no Ray process behind."""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
psutil = pytest.importorskip("psutil")

from helpers import sweep  # noqa: E402

pytestmark = pytest.mark.slow
RAY = str(Path(sys.executable).with_name("ray"))

DRIVER = """
import sys
from helpers import sweep
variants = [sweep.Variant(i, float(i), 4.0, 0.0, tuple([4] * 13 + [8, 8])) for i in range(3)]
settings = sweep.SweepSettings("CIFAR10", "mundt-sgdr", epochs=int(sys.argv[2]),
                               subset=(128, 64, 64))
sweep.run_sweep(variants, settings, sys.argv[1], workers=int(sys.argv[3]))
"""
TIMINGS = ["train_seconds", "wall_seconds", "hardware", "date"]  # differ between any two runs


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def ray_env(course_env, tmp_path):
    """The course's smoke environment for Ray processes, with a HOME of its own (no token or
    setting of another cluster is read) and a short temporary folder (Ray's socket paths must
    fit in 107 characters)."""
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    env = dict(os.environ, HOME=str(tmp_path / "home"), RAY_TMPDIR=temp, OMP_NUM_THREADS="1",
               RAY_USAGE_STATS_ENABLED="0")
    env.pop("RAY_ADDRESS", None)
    (tmp_path / "home").mkdir()
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent(DRIVER))
    yield env, script, temp
    subprocess.run(["rm", "-rf", temp], check=False)


@pytest.fixture
def cluster(ray_env):
    """A head (1 CPU) and a second node (1 CPU), both on 127.0.0.1; yields RAY_ADDRESS."""
    env, _, temp = ray_env
    port = _free_port()
    common = ["--num-cpus=1", "--disable-usage-stats"]
    try:
        _ray_start(["--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                    "--include-dashboard=false", f"--temp-dir={temp}", *common], env, head=True)
        _ray_start([f"--address=127.0.0.1:{port}", *common], env)
        yield f"127.0.0.1:{port}"
    finally:  # this cluster's processes only (`ray stop` would end every Ray on the machine)
        _end_processes_of(env["HOME"])


def _ray_start(arguments: list[str], env: dict, head: bool = False) -> None:
    """``ray start``, tried a second time when a node does not come up in time (on a loaded
    2-core machine the first try can time out; a head's leftovers are ended first), failing
    with what Ray said."""
    for attempt in (1, 2):
        done = subprocess.run([RAY, "start", *arguments], env=env, capture_output=True, text=True)
        if done.returncode == 0:
            return
        if head and attempt == 1:
            _end_processes_of(env["HOME"])
    raise RuntimeError(f"ray start {' '.join(arguments)} failed twice:\n"
                       f"{done.stdout}\n{done.stderr}")


def _end_processes_of(home: str) -> None:
    """Kill the processes started with HOME=``home``, and every process below them (Ray's
    agents and workers rename themselves, which hides their environment)."""
    ours = []
    for process in psutil.process_iter():
        try:
            if process.pid != os.getpid() and process.environ().get("HOME") == home:
                ours += [process, *process.children(recursive=True)]
        except psutil.Error:
            pass
    for process in ours:
        try:
            process.kill()
        except psutil.Error:
            pass


def _variant_workers(directory: Path) -> list:
    """(process, variant folder) of each Ray worker training a variant into ``directory``: the
    one whose lock it holds open."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if "ray::train_variant" not in " ".join(process.info["cmdline"] or []):
            continue
        try:
            locks = [Path(f.path) for f in process.open_files() if f.path.endswith("/.lock")]
        except psutil.Error:
            continue
        found += [(process, lock.parent) for lock in locks if lock.parent.parent == directory]
    return found


def _comparable(table):
    return table.drop(columns=TIMINGS, errors="ignore").to_dict("records")


def test_a_sweep_on_a_two_node_cluster_survives_a_killed_worker(ray_env, cluster, course_env):
    env, script, _ = ray_env
    env = dict(env, RAY_ADDRESS=cluster)
    undisturbed, disturbed = course_env / "undisturbed", course_env / "disturbed"
    subprocess.run([sys.executable, str(script), str(undisturbed), "8", "2"], env=env,
                   check=True, capture_output=True)
    twin = sweep.results(undisturbed)
    assert len(twin) == 3 and twin["hardware"].str.contains("1 thread").all()

    driver = subprocess.Popen([sys.executable, str(script), str(disturbed), "8", "2"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    killed = None
    while killed is None:
        assert driver.poll() is None and time.time() < deadline, "the sweep ended first"
        for worker, folder in _variant_workers(disturbed):
            if (folder / "last.ckpt").exists() and not (
                    disturbed / "rows" / f"{folder.name}.json").exists():
                worker.send_signal(signal.SIGKILL)  # a Ray worker, in the middle of a variant
                killed = folder.name
                break
        time.sleep(0.05)
    assert driver.wait(300) == 0, driver.stderr.read()[-2000:]
    table = sweep.results(disturbed)
    assert _comparable(table) == _comparable(twin)  # retried: nothing lost, nothing twice
    retried = [folder.name for folder in disturbed.glob("variant-*")
               if (folder / "logs" / "csv-2").is_dir()]
    assert retried == [killed]  # started again, from its last completed epoch
    epochs = json.loads(table.set_index("variant").loc[int(killed[-3:]), "val_acc"])
    assert len(epochs) == 8


def _rays_below(process) -> dict:
    found = {}
    for child in process.children(recursive=True):
        try:
            command = " ".join(child.cmdline())
        except psutil.Error:
            continue
        if "ray::" in command or "/ray/" in command:
            found[child.pid] = child.create_time()
    return found


def _still_running(processes: dict) -> list:
    alive = []
    for pid, started in processes.items():
        try:
            process = psutil.Process(pid)
            if process.create_time() == started and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(" ".join(process.cmdline())[:80])
        except psutil.Error:
            pass
    return alive


def test_a_killed_driver_leaves_no_ray_process(ray_env, course_env):
    """Before: Ray's dashboard and runtime-env agents ran on for 20 to 40 s (2026-12-03)."""
    env, script, _ = ray_env
    driver = subprocess.Popen([sys.executable, str(script), str(course_env / "local"), "60",
                               "1"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    parent = psutil.Process(driver.pid)
    deadline = time.time() + 120
    seen = {}
    while not any("train_variant" in command for command in _still_running(seen)):
        assert driver.poll() is None and time.time() < deadline, "the sweep did not start"
        seen.update(_rays_below(parent))
        time.sleep(0.1)
    seen.update(_rays_below(parent))
    assert len(seen) >= 4  # Ray's servers, agents and the variant's worker
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    deadline = time.time() + 10
    while (alive := _still_running(seen)) and time.time() < deadline:
        time.sleep(0.2)
    assert alive == []
