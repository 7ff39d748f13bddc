import json

import pytest

from helpers import config, course


def test_mode_reads_the_environment(monkeypatch):
    monkeypatch.setenv("COURSE_MODE", "full")
    assert config.mode() == "full" and not config.is_quick()
    monkeypatch.setenv("COURSE_MODE", " Quick ")
    assert config.mode() == "quick" and config.is_quick()


def test_default_mode_is_full_only_with_a_gpu(monkeypatch):
    monkeypatch.delenv("COURSE_MODE")
    expected = "full" if config.device_type() in ("cuda", "mps") else "quick"
    assert config.mode() == expected


def test_unknown_mode_lists_the_valid_ones(monkeypatch):
    monkeypatch.setenv("COURSE_MODE", "fast")
    with pytest.raises(ValueError, match="'fast'.*quick, full"):
        config.mode()


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


def test_quick_runs_never_land_beside_real_checkpoints(monkeypatch, tmp_path):
    assert config.runs_dir() == tmp_path / "saved_models" / "quick"
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
    assert "COURSE_MODE=quick" in out and "NOT results" in out
    assert f"device: {config.device_type()}" in out and "offline: yes" in out
