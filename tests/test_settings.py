"""Settings, logging and environment quirks."""

from __future__ import annotations

import logging
import os
from logging.handlers import RotatingFileHandler
from pathlib import Path

from lqmf.base.environment import apply_environment_quirks
from lqmf.base.log import configure_logging
from lqmf.base.settings import PROJECT_ROOT, Settings, load_settings


def test_defaults_live_in_the_project(monkeypatch):
    # The checkout itself, wherever the settings module sits in it (a move once made it lqmf/).
    assert PROJECT_ROOT == Path(__file__).resolve().parents[1] and (PROJECT_ROOT / "pyproject.toml").is_file()
    monkeypatch.delenv("LQMF_HOME", raising=False)
    monkeypatch.delenv("LQMF_MODELS_DIR", raising=False)
    s = Settings()
    assert s.models_dir == PROJECT_ROOT / "quantized-models"
    assert s.logs_dir == PROJECT_ROOT / "logs"
    assert s.db_path.parent == PROJECT_ROOT / "memory"


def test_home_relocates_every_writable_path(home: Path, monkeypatch):
    monkeypatch.delenv("LQMF_TOOLS_DIR", raising=False)
    s = load_settings()
    paths = [s.models_dir, s.logs_dir, s.db_path, s.history_path, s.cache_dir]
    for path in paths:
        assert path.is_relative_to(home.resolve()), path
    assert len(set(paths)) == len(paths)


def test_built_tools_belong_to_the_installation_not_the_home(home: Path, tmp_path, monkeypatch):
    """LQMF_HOME moves a user's data, never the programs `make tools` built; LQMF_TOOLS_DIR still moves them."""
    monkeypatch.delenv("LQMF_TOOLS_DIR", raising=False)
    s = load_settings()
    assert s.tools_dir == PROJECT_ROOT / ".cache" / "tools"
    assert not s.tools_dir.is_relative_to(home.resolve())
    monkeypatch.setenv("LQMF_TOOLS_DIR", str(tmp_path / "elsewhere"))
    assert load_settings().tools_dir == (tmp_path / "elsewhere").resolve()


def test_models_dir_overrides_models_alone(home: Path, tmp_path_factory, monkeypatch):
    other = tmp_path_factory.mktemp("models-elsewhere")
    monkeypatch.setenv("LQMF_MODELS_DIR", str(other))
    s = load_settings()
    assert s.models_dir == other.resolve()
    assert s.logs_dir.is_relative_to(home.resolve())
    assert s.db_path.is_relative_to(home.resolve())


def test_logging_goes_to_a_rotating_file(home: Path):
    s = load_settings()
    handler = configure_logging(s)
    try:
        assert isinstance(handler, RotatingFileHandler) and handler.maxBytes > 0 and handler.backupCount > 0
        assert configure_logging(s) is handler  # idempotent: one handler, not two
        logging.getLogger("lqmf.test").warning("hello from the test")
        handler.flush()
        assert "hello from the test" in (s.logs_dir / "lqmf.log").read_text()
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()


def test_quirks_make_gptqmodel_work_on_two_cores(monkeypatch):
    monkeypatch.delenv("GPTQMODEL_CPU_WORKERS", raising=False)
    apply_environment_quirks()
    assert int(os.environ["GPTQMODEL_CPU_WORKERS"]) >= 2
