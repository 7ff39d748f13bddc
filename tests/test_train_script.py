"""scripts/train.py: one run from the command line, with its note in the run record."""

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "train.py"


def test_train_script_records_a_run(course_env):
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "cnn-toy", "CIFAR10", "sgd-cosine", "--name", "scripted",
         "--epochs", "1", "--augment", "rotate-crop", "--seed", "3", "--note", "a smoke test"],
        capture_output=True, text=True, env={**os.environ}, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "scripted: test accuracy" in done.stdout
    info = json.loads((course_env / "saved_models" / "smoke" / "scripted" / "run.json").read_text())
    assert info["note"] == "a smoke test" and info["seed"] == 3 and info["epochs"] == 1
    assert info["model"] == {"name": "cnn-toy", "hparams": {"num_classes": 10, "in_channels": 3}}


def test_train_script_rejects_unknown_names():
    done = subprocess.run([sys.executable, str(SCRIPT), "vgg-z", "CIFAR10", "sgd-cosine",
                           "--name", "x"], capture_output=True, text=True, check=False)
    assert done.returncode == 2 and "invalid choice: 'vgg-z'" in done.stderr
