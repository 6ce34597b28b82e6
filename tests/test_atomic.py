"""Atomic outputs: nothing half-written is ever visible under the final name."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from lqmf.base.atomic import atomic_output, ensure_disk_space, is_temp_name, sweep_stale_temps
from lqmf.base.errors import InsufficientDisk, OutputExists
from server.runtime.discovery import discover


def test_success_renames_into_place(tmp_path):
    final = tmp_path / "model.gguf"
    with atomic_output(final) as tmp:
        assert is_temp_name(tmp.name) and tmp.parent == tmp_path
        tmp.write_bytes(b"GGUF....")
    assert final.read_bytes() == b"GGUF...." and os.listdir(tmp_path) == ["model.gguf"]


def test_failure_leaves_nothing(tmp_path):
    final = tmp_path / "model-dir"
    with pytest.raises(RuntimeError):
        with atomic_output(final, is_dir=True) as tmp:
            (tmp / "config.json").write_text("{}")
            (tmp / "model.safetensors").write_bytes(b"partial")
            raise RuntimeError("quantizer died")
    assert os.listdir(tmp_path) == []


def test_failed_overwrite_keeps_the_old_output(tmp_path):
    final = tmp_path / "m.gguf"
    final.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_output(final, overwrite=True) as tmp:
            tmp.write_bytes(b"new, half")
            raise KeyboardInterrupt
    assert final.read_bytes() == b"old" and os.listdir(tmp_path) == ["m.gguf"]
    with atomic_output(final, overwrite=True) as tmp:
        tmp.write_bytes(b"new")
    assert final.read_bytes() == b"new" and os.listdir(tmp_path) == ["m.gguf"]


def test_existing_output_is_refused_without_overwrite(tmp_path):
    (tmp_path / "m.gguf").write_bytes(b"x")
    with pytest.raises(OutputExists, match="already exists"):
        with atomic_output(tmp_path / "m.gguf"):
            pass


def test_killed_run_leaves_only_an_ignored_temp_that_is_swept(tmp_path, demo_dir):
    """A process killed (SIGKILL) mid-write leaves a hidden temp: never discovered, later removed."""
    shutil.copy2(demo_dir / "demo-q4_k_m.gguf", tmp_path / "kept.gguf")
    script = (
        "import sys, time, pathlib\n"
        "from lqmf.base.atomic import atomic_output\n"
        "with atomic_output(pathlib.Path(sys.argv[1]), is_dir=True) as tmp:\n"
        "    (tmp / 'config.json').write_text('{}')\n"
        "    (tmp / 'model.safetensors').write_bytes(b'half')\n"
        "    print('ready', flush=True)\n"
        "    time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path / "victim")], stdout=subprocess.PIPE, text=True,
        cwd=os.path.dirname(os.path.dirname(__file__)),
    )
    assert proc.stdout.readline().strip() == "ready"
    proc.kill()
    proc.wait()
    leftovers = [p.name for p in tmp_path.iterdir() if is_temp_name(p.name)]
    assert len(leftovers) == 1 and not (tmp_path / "victim").exists()
    assert [r.name for r in discover(tmp_path)] == ["kept"]
    assert [p.name for p in sweep_stale_temps(tmp_path)] == leftovers
    assert sorted(os.listdir(tmp_path)) == ["kept.gguf"]


def test_sweep_keeps_temps_of_live_runs(tmp_path):
    with atomic_output(tmp_path / "busy", is_dir=True) as tmp:
        assert sweep_stale_temps(tmp_path) == [] and tmp.exists()
        (tmp / "f").write_text("x")
    assert (tmp_path / "busy" / "f").is_file()


def test_not_enough_disk_is_refused_with_numbers(tmp_path):
    with pytest.raises(InsufficientDisk, match="MiB free") as info:
        ensure_disk_space(tmp_path / "not" / "yet", 1 << 60, "a huge model")
    assert "LQMF_MODELS_DIR" in info.value.hint
