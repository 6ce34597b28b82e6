"""The project is installed (`make install`: `pip install --no-deps -e .`): the `lqmf` console script is the
shell, `lqmf serve` is `python -m server`, and no module patches sys.path to find the packages."""

from __future__ import annotations

import ast
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import REPO

LQMF = Path(sys.executable).parent / "lqmf"
DEMO_NAMES = ("demo-f16", "demo-q8_0", "demo-q4_k_m", "demo-gptq-4bit", "demo-bnb-nf4", "demo-bnb-int8", "demo-hf")
# Product code and the benchmark scripts: each must import the packages through the install.
SOURCE_DIRS = ("agents", "server", "memory", "lqmf", "cli", "benchmarks")


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    return env


def _run(cmd: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120, env=_env(COLUMNS="200", **env))


def test_the_console_script_is_installed():
    assert LQMF.is_file() and os.access(LQMF, os.X_OK), f"{LQMF} is missing: run `make install`"
    (entry,) = importlib.metadata.entry_points(group="console_scripts", name="lqmf")
    assert entry.value == "cli.api_cli:main"
    assert entry.dist is not None and entry.dist.name == "lqmf"


def test_pyproject_builds_an_installable_package():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert project["build-system"]["build-backend"] == "setuptools.build_meta"
    assert project["project"]["scripts"] == {"lqmf": "cli.api_cli:main"}
    include = project["tool"]["setuptools"]["packages"]["find"]["include"]
    assert {"agents*", "cli*", "server*", "memory*", "lqmf*"} <= set(include)
    assert not {"tests", "tests*", "benchmarks", "benchmarks*"} & set(include)


def test_the_packages_import_from_anywhere_through_the_install(tmp_path):
    """No PYTHONPATH, no current folder (-P), no user site (-s): only site-packages (the editable install)."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-P", "-s", "-B", "-c", "import agents, cli, lqmf, memory, server; print(cli.__file__)"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()).resolve() == REPO / "cli" / "__init__.py"


def test_lqmf_lists_the_demo_models_like_the_script(demo_dir, home, tmp_path):
    env = {"LQMF_HOME": str(home), "LQMF_MODELS_DIR": str(demo_dir)}
    console_script = _run([str(LQMF), "-c", "list models"], tmp_path, **env)
    assert console_script.returncode == 0, console_script.stderr
    for name in DEMO_NAMES:
        assert name in console_script.stdout
    script = _run([sys.executable, "cli/api_cli.py", "-c", "list models"], REPO, **env)
    assert script.returncode == 0, script.stderr
    assert script.stdout == console_script.stdout
    # The script by its path from another folder: nothing depends on the current folder.
    elsewhere = _run([sys.executable, str(REPO / "cli" / "api_cli.py"), "-c", "list models"], tmp_path, **env)
    assert elsewhere.returncode == 0, elsewhere.stderr
    assert elsewhere.stdout == console_script.stdout


@pytest.mark.parametrize("cmd, prog", [
    ([str(LQMF), "serve", "--help"], "lqmf serve"),
    ([sys.executable, "-m", "server", "--help"], "python -m server"),
])
def test_lqmf_serve_is_python_m_server(cmd, prog, home, tmp_path):
    proc = _run(cmd, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: {prog} ")
    for option in ("--host HOST", "--port PORT", "--allow-insecure-bind"):
        assert option in proc.stdout
    # The same parser: everything after the usage lines is identical.
    reference = _run([sys.executable, "-m", "server", "--help"], tmp_path)
    assert proc.stdout.split("\n\n", 1)[1] == reference.stdout.split("\n\n", 1)[1]


def test_lqmf_help_names_serve_and_demo(home, tmp_path):
    proc = _run([str(LQMF), "--help"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: lqmf ")
    assert "lqmf serve" in proc.stdout and "lqmf demo" in proc.stdout
    demo = _run([str(LQMF), "demo", "--help"], tmp_path)
    assert demo.returncode == 0, demo.stderr
    assert demo.stdout.startswith("usage: lqmf demo")


def _sys_path_patches(path: Path) -> list[str]:
    """Lines that add to sys.path: sys.path.insert/append/extend(...) or sys.path += ... (removing is fine)."""

    def is_sys_path(node: ast.AST) -> bool:
        return (isinstance(node, ast.Attribute) and node.attr == "path"
                and isinstance(node.value, ast.Name) and node.value.id == "sys")

    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("insert", "append", "extend") and is_sys_path(node.func.value)):
            found.append(f"{path.relative_to(REPO)}:{node.lineno}")
        elif isinstance(node, ast.AugAssign) and is_sys_path(node.target):
            found.append(f"{path.relative_to(REPO)}:{node.lineno}")
    return found


def test_no_module_patches_sys_path():
    files = [path for folder in SOURCE_DIRS for path in sorted((REPO / folder).rglob("*.py"))]
    assert len(files) > 50
    patches = [line for path in files for line in _sys_path_patches(path)]
    assert not patches, f"these add to sys.path; the packages come from `pip install -e .`: {patches}"


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_install_redoes_the_editable_install_when_pyproject_changes():
    """After `make install`, a dry run plans nothing; another pyproject.toml hash plans `pip install -e .` only."""
    stamps = list((REPO / ".venv").glob(".editable-*"))
    current = subprocess.run(["make", "-n", "install"], cwd=REPO, capture_output=True, text=True)
    if not stamps or "pip install" in current.stdout:
        pytest.skip("run through `make test` (pyproject.toml or requirements.txt changed since the last install)")
    changed = subprocess.run(["make", "-n", "install", "PKG_HASH=0123456789abcdef"], cwd=REPO,
                             capture_output=True, text=True)
    assert changed.returncode == 0, changed.stderr
    assert "pip install --disable-pip-version-check --no-deps -e ." in changed.stdout
    assert "-r requirements.txt" not in changed.stdout
