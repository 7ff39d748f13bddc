"""How the training path asks glibc to treat big blocks (helpers._machinery.allocator)."""

import subprocess
import sys
import textwrap

import pytest

from helpers._machinery import allocator as _allocator
from helpers import training

pytestmark = pytest.mark.skipif(_allocator._glibc() is None, reason="glibc's malloc only")

# In a fresh process (the setting is the whole process's): the page faults of a step that fills and
# frees tensors of 36 to 64 MiB, as a training step does with its activations: the fewest of three
# steps after three others (a step may still grow the heap once by a block). The blocks are above
# the largest threshold to which glibc's defaults raise their mapping threshold by themselves (32
# MiB), so that with the defaults each is mapped afresh whatever the steps before did.
_STEP = textwrap.dedent("""
    import resource, sys, torch
    from helpers._machinery import allocator as _allocator
    from helpers._machinery import memory
    {setting}
    def faults_of_a_step():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        held = [torch.ones(mib * 2 ** 18) for mib in (40, 48, 36, 64, 40, 48)]
        del held
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    faults_of_a_step(), faults_of_a_step(), faults_of_a_step()
    print(_allocator.mode(), min(faults_of_a_step() for _ in range(3)), sep=",")
""")


def _step(setting: str) -> tuple[str, int]:
    done = subprocess.run([sys.executable, "-c", _STEP.format(setting=setting)], check=True,
                          capture_output=True, text=True)
    mode, faults = done.stdout.strip().splitlines()[-1].split(",")
    return mode, int(faults)


def test_kept_blocks_are_reused_without_mapping_their_pages_again():
    mode, default_faults = _step("")
    assert mode == "glibc defaults"
    if default_faults < 1000:
        pytest.skip(f"glibc's defaults cost only {default_faults} page faults a step here "
                    f"(huge pages?), so there is nothing to compare")
    mode, kept_faults = _step("assert _allocator.keep_freed_blocks()")
    assert mode == "freed blocks kept"
    assert kept_faults < default_faults / 4, (kept_faults, default_faults)


def test_measuring_peak_memory_wins_over_keeping_blocks():
    """A process that measures peaks needs every block returned; the training path's setting,
    asked for later (a throughput timing in the measuring process), must not undo that."""
    mode, faults = _step("memory.track_cpu_peaks()\nassert not _allocator.keep_freed_blocks()")
    assert mode == "every block mapped"
    assert faults > 1000  # 276 MiB of 4 KiB pages mapped afresh


def test_fit_keeps_freed_blocks(monkeypatch, tmp_path):
    from helpers import data, models, recipes
    asked = []
    monkeypatch.setattr(_allocator, "keep_freed_blocks", lambda: asked.append(True) or True)
    training.fit(models.create("cnn-toy"), data.ImageDataModule("FashionMNIST", smoke=True,
                                                               subset=(64, 32, 32)),
                 recipes.get_recipe("sgd-cosine", batch_size=32, epochs=1), name="allocator",
                 directory=tmp_path, precision="32-true", enable_progress_bar=False)
    assert asked
