import json

import pytest
import torch

from helpers import course
from helpers._machinery import config


def test_mode_reads_the_environment(monkeypatch):
    monkeypatch.setenv("COURSE_MODE", "full")
    assert config.mode() == "full" and not config.is_smoke()
    monkeypatch.setenv("COURSE_MODE", " Smoke ")
    assert config.mode() == "smoke" and config.is_smoke()
    monkeypatch.setenv("COURSE_MODE", "CPU")
    assert config.mode() == "cpu" and not config.is_smoke()


@pytest.mark.parametrize("device, expected", [("cuda", "full"), ("mps", "full"), ("cpu", "cpu")])
def test_the_default_mode_is_full_with_a_gpu_and_cpu_without(monkeypatch, device, expected):
    monkeypatch.delenv("COURSE_MODE")
    monkeypatch.setattr(config, "device_type", lambda: device)
    assert config.mode() == expected


def test_unknown_mode_lists_the_valid_ones(monkeypatch):
    monkeypatch.setenv("COURSE_MODE", "fast")
    with pytest.raises(ValueError, match="'fast'.*full, cpu, smoke"):
        config.mode()


def test_the_old_quick_mode_names_its_successors(monkeypatch):
    monkeypatch.setenv("COURSE_MODE", "quick")
    with pytest.raises(ValueError, match="now called smoke.*COURSE_MODE=cpu"):
        config.mode()


@pytest.mark.parametrize("cpu_has_bf16", [True, False])
def test_cpu_mode_computes_in_fp32_on_every_cpu(monkeypatch, cpu_has_bf16):
    """So that a CPU-mode run, and the exercises' ranges, agree between the course's CPUs."""
    monkeypatch.setattr(config, "device_type", lambda: "cpu")
    monkeypatch.setattr(config, "cpu_has_bf16", lambda: cpu_has_bf16)
    monkeypatch.setenv("COURSE_MODE", "full")
    assert config.precision() == ("bf16-mixed" if cpu_has_bf16 else "32-true")
    monkeypatch.setenv("COURSE_MODE", "cpu")
    assert config.precision() == "32-true"


@pytest.mark.parametrize("value, expected", [("1", True), ("yes", True), ("true", True),
                                             (" TRUE ", True), ("Yes", True), ("0", False),
                                             ("", False), ("no", False), (" False ", False)])
def test_offline_flag(monkeypatch, value, expected):
    monkeypatch.setenv("COURSE_OFFLINE", value)
    assert config.offline() is expected


def test_offline_flag_unset_means_online(monkeypatch):
    monkeypatch.delenv("COURSE_OFFLINE")
    assert config.offline() is False


@pytest.mark.parametrize("value", ["off", "2", "on", "y", "1 0"])
def test_offline_flag_rejects_anything_else(monkeypatch, value):
    monkeypatch.setenv("COURSE_OFFLINE", value)
    with pytest.raises(ValueError, match=f"COURSE_OFFLINE='{value}'.*valid values: 1, true, yes"):
        config.offline()


def test_smoke_and_cpu_runs_never_land_beside_real_checkpoints(monkeypatch, tmp_path):
    assert config.runs_dir() == tmp_path / "saved_models" / "smoke"
    monkeypatch.setenv("COURSE_MODE", "cpu")
    assert config.runs_dir() == tmp_path / "saved_models" / "cpu"
    monkeypatch.setenv("COURSE_MODE", "full")
    assert config.runs_dir() == tmp_path / "saved_models"


def test_headline_is_printed_and_recorded(monkeypatch, tmp_path, capsys):
    target = tmp_path / "headline.json"
    monkeypatch.setenv("COURSE_HEADLINE_FILE", str(target))
    course.headline("test accuracy 12.3% (smoke run)")
    assert "Headline: test accuracy 12.3% (smoke run)" in capsys.readouterr().out
    assert json.loads(target.read_text()) == {"headline": "test accuracy 12.3% (smoke run)"}


def test_banner_names_mode_and_device(capsys):
    config.banner()
    out = capsys.readouterr().out
    assert "COURSE_MODE=smoke" in out and "NOT results" in out
    assert f"device: {config.device_type()}" in out and "offline: yes" in out
    assert f"This run: smoke mode on {config.hardware()}, commit " in out


# --- precision: reduced only where the hardware computes it natively ------------------------

def _machine(monkeypatch, cuda=None, mps=False, cpu_bf16=False):
    """Pretend to be a machine: a CUDA GPU of compute capability ``cuda`` (None: no GPU), Apple
    MPS, or a CPU with or without native bf16."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda is not None)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)  # emulated
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    monkeypatch.setattr(config, "cpu_has_bf16", lambda: cpu_bf16)


@pytest.mark.parametrize("gpu, capability, expected", [
    ("P100", (6, 0), "32-true"), ("V100", (7, 0), "16-mixed"), ("T4", (7, 5), "16-mixed"),
    ("A100", (8, 0), "bf16-mixed"), ("RTX 4090", (8, 9), "bf16-mixed"),
    ("H100", (9, 0), "bf16-mixed")])
def test_a_gpu_gets_bf16_only_where_it_is_native(monkeypatch, gpu, capability, expected):
    _machine(monkeypatch, cuda=capability)
    assert config.precision() == expected, gpu
    assert config.autocast_dtype() == {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16,
                                       "32-true": None}[expected]


@pytest.mark.parametrize("cpu_bf16, expected", [(True, "bf16-mixed"), (False, "32-true")])
def test_a_cpu_gets_bf16_only_with_avx512_bf16_or_amx(monkeypatch, cpu_bf16, expected):
    _machine(monkeypatch, cpu_bf16=cpu_bf16)
    assert config.device_type() == "cpu" and config.precision() == expected


def test_apple_mps_trains_in_fp32(monkeypatch):
    _machine(monkeypatch, mps=True, cpu_bf16=True)
    assert config.device_type() == "mps" and config.precision() == "32-true"
    assert config.autocast_dtype() is None


def test_cpu_bf16_is_read_from_the_cpu_flags(monkeypatch, tmp_path):
    flags = tmp_path / "cpuinfo"
    original = config.Path

    def fake_path(path):
        return flags if str(path) == "/proc/cpuinfo" else original(path)

    monkeypatch.setattr(config, "Path", fake_path)
    flags.write_text("flags\t\t: fpu avx2 avx512f\n")
    assert not config.cpu_has_bf16()
    flags.write_text("flags\t\t: fpu avx2 avx512f avx512_bf16\n")
    assert config.cpu_has_bf16()
    flags.write_text("flags\t\t: fpu avx2 amx_bf16 amx_tile\n")
    assert config.cpu_has_bf16()


def test_folder_settings_expand_home_and_resolve_against_the_checkout(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("SAVED_MODELS_DIR", "~/runs")
    monkeypatch.setenv("DATA_DIR", "~/data")
    assert config.saved_models_dir() == tmp_path / "runs"
    assert config.data_dir() == tmp_path / "data"
    monkeypatch.setenv("SAVED_MODELS_DIR", "elsewhere/runs")
    monkeypatch.chdir(tmp_path)  # a notebook runs in notebooks/, a script in the checkout
    assert config.saved_models_dir() == config.project_root() / "elsewhere" / "runs"
    monkeypatch.setenv("SAVED_MODELS_DIR", "")
    assert config.saved_models_dir() == config.project_root() / "saved_models"


@pytest.mark.parametrize("make, problem", [
    (lambda path: path.write_text("a file"), "it is a file, not a folder"),
    (lambda path: (path.parent / "loop").symlink_to(path) or path.symlink_to(path.parent / "loop"),
     "a loop of symbolic links"),
    (lambda path: path.symlink_to(path.parent / "nothing"), "a symbolic link to nothing"),
])
def test_a_saved_models_dir_that_cannot_be_a_folder_is_named(monkeypatch, tmp_path, make,
                                                            problem):
    setting = tmp_path / "runs"
    make(setting)
    monkeypatch.setenv("SAVED_MODELS_DIR", str(setting))
    with pytest.raises(ValueError, match=f"SAVED_MODELS_DIR=.*{problem}.*Set it to a folder"):
        config.saved_models_dir()


def test_a_saved_models_dir_inside_a_file_or_with_an_overlong_name_is_named(monkeypatch,
                                                                          tmp_path):
    (tmp_path / "afile").write_text("a file")
    monkeypatch.setenv("SAVED_MODELS_DIR", str(tmp_path / "afile" / "runs"))
    with pytest.raises(ValueError, match="afile is a file, not a folder"):
        config.saved_models_dir()
    monkeypatch.setenv("SAVED_MODELS_DIR", str(tmp_path / ("x" * 300)))
    with pytest.raises(ValueError, match="too long for the file system"):
        config.saved_models_dir()
