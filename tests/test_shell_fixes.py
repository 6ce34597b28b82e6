"""What a newcomer hit in the shell (issue 28): garbled refusals, Ctrl-C on serve, show config's port,
renamed models in the quantization list, "1 files", and `lqmf --yes -c`."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agents.quantization.gguf_quant import FLOAT_BITS, GGUF_LEVELS
from agents.quantization.plan import WHY_LEVEL, Machine, QuantRequest, level_reason, make_plan, source_facts
from lqmf.base.units import plural
from memory.store import Store
from server.runtime.discovery import discover
from tests.conftest import REPO, interrupt, wait_for_health
from tests.test_shell import Terminal, cli, free_port, json_objects, shell_env

BIG = Machine(available_ram=64 * 2**30, free_disk=500 * 2**30, cpus=2)


def plan_for(models: Path, source: str, **request):
    facts = source_facts({rec.name: rec for rec in discover(models)}[source])
    return make_plan(QuantRequest(model=source, **request), facts, models, BIG, [])


# -- 1. refusals and plans render without empty fields or a "why" that repeats the request ---------------------
@pytest.mark.parametrize("request_", [{"bits": 7}, {"method": "gptq", "bits": 3}])
def test_a_plan_without_a_level_names_no_output_steps_or_reason(demo_dir, request_):
    p = plan_for(demo_dir, "demo-hf", **request_)
    assert not p.runnable and any("-bit level here" in problem for problem in p.problems), p.problems
    assert (p.level, p.bits, p.output_name, p.output_path, p.steps) == ("", 0.0, "", "", [])
    assert (p.recommendation, p.calibration, p.expected_size_bytes, p.estimate_basis) == ("", None, 0, "")


def test_a_why_never_repeats_the_method_and_level(demo_dir):
    gptq = plan_for(demo_dir, "demo-hf", method="gptq", bits=4)
    assert gptq.recommendation == WHY_LEVEL["4bit"]
    chosen = plan_for(demo_dir, "demo-hf")  # no method named: the reason says why gguf was chosen
    assert chosen.recommendation.startswith(WHY_LEVEL["q4_k_m"]) and "you named no method" in chosen.recommendation
    # Every level a method makes has a reason of its own; a level it cannot make has none.
    for method, levels in (("gguf", [*GGUF_LEVELS, *FLOAT_BITS]), ("bnb", ["nf4", "fp4", "int8"]),
                           ("gptq", ["4bit", "8bit"])):
        for level in levels:
            why = level_reason(method, level)
            assert why and not why.lower().startswith(f"{method} {level}"), (method, level, why)
    assert level_reason("bnb", "q4_k_m") == "" and level_reason("gguf", "") == ""


def test_the_shell_draws_a_refusal_without_empty_fields(demo_dir, home):
    run = cli(["-c", "quantize demo-hf to 7-bit"], home, demo_dir)
    assert run.returncode == 1
    out = run.stdout
    assert "refused: gguf has no 7-bit level here" in out and "demo-hf (hf, 4.5M parameters)" in out, out
    for garbled in ("demo-x", "→", "level  ", "0 bits per weight", "why:", "quantize to  with", "gguf : gguf",
                    "expected:", "verify:"):
        assert garbled not in out, (garbled, out)
    gptq = cli(["-c", "quantize demo-hf to 4-bit gptq"], home, demo_dir)  # refused: demo-gptq-4bit exists
    assert gptq.returncode == 1 and "already exists" in gptq.stdout
    assert "method gptq, level 4bit (4 bits per weight nominal, group size 128)" in gptq.stdout, gptq.stdout
    assert "why: GPTQ 4-bit: each layer's rounding" in gptq.stdout and "gptq 4bit:" not in gptq.stdout


# -- 2 and 3. Ctrl-C on serve; show config names the port the server listens on -------------------------------
@pytest.mark.parametrize("argv", [["-m", "server"], ["cli/api_cli.py", "serve"]], ids=["python -m server",
                                                                                       "lqmf serve"])
def test_ctrl_c_stops_serve_with_one_line_and_show_config_finds_it(demo_dir, home, argv):
    serve_port, shell_port = free_port(), free_port()
    env = {k: v for k, v in shell_env(home, demo_dir).items() if k not in ("LQMF_PORT", "LQMF_HOST")}
    proc = subprocess.Popen([sys.executable, *argv, "--port", str(serve_port)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_health(proc, f"http://127.0.0.1:{serve_port}", 120)
        script = home / "config.txt"
        script.write_text(f"show config\nstart server on port {shell_port}\nshow config\n")
        run = subprocess.run([sys.executable, "cli/api_cli.py", "--json", "--script", str(script)], cwd=REPO,
                             env=env, capture_output=True, text=True, timeout=180)
        assert run.returncode == 0, run.stdout + run.stderr
        before, started, after = [doc["result"] for doc in json_objects(run.stdout)]
        assert started["port"] == shell_port
        before, after = before["values"], after["values"]
        elsewhere = f"http://127.0.0.1:{serve_port} (lqmf serve, pid {proc.pid})"
        assert before["server"] == "not running here" and before["port"] == 8000
        assert before["other_servers"] == elsewhere
        assert (after["server"], after["port"]) == (f"running at http://127.0.0.1:{shell_port}", shell_port)
        assert after["configured_port"] == 8000 and after["other_servers"] == elsewhere
    finally:
        stderr = interrupt(proc)
    assert proc.returncode == 130, stderr
    assert stderr.splitlines() == [f"LQMF API on http://127.0.0.1:{serve_port} (models from {demo_dir})",
                                   "stopped"], stderr
    assert not list((home / "memory" / "servers").glob("*.json"))  # its record went with it


# -- 4. list quantizations names models as they are now; 6. --yes before -c ------------------------------------
def test_list_quantizations_follows_renames_and_removals(demo_dir, home, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    for name in ("demo-f16.gguf", "demo-f16.gguf.lqmf.json"):
        shutil.copy2(demo_dir / name, models / name)
    made = cli(["-c", "quantize demo-f16 to q4_0 --yes"], home, models)
    assert made.returncode == 0 and "quantized demo-f16 → demo-q4_0.gguf" in made.stdout, made.stdout
    assert cli(["-c", "rename model demo-q4_0 to mine-q4"], home, models).returncode == 0
    listed = cli(["--json", "-c", "list quantizations"], home, models)
    (run,) = json_objects(listed.stdout)[0]["result"]["runs"]
    assert (run["source"], run["output"], run["output_renamed_from"]) == ("demo-f16", "mine-q4.gguf",
                                                                          "demo-q4_0.gguf")
    table = cli(["-c", "list quantizations"], home, models).stdout
    assert "mine-q4.gguf" in table and "renamed from demo-q4_0.gguf" in table, table

    asked = cli(["-c", "remove model mine-q4"], home, models)  # nobody can answer: the question is the error
    assert asked.returncode == 1 and "add --yes" in asked.stdout and (models / "mine-q4.gguf").exists()
    removed = cli(["--yes", "-c", "remove model mine-q4"], home, models)
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert not (models / "mine-q4.gguf").exists()
    (run,) = json_objects(cli(["--json", "-c", "list quantizations"], home, models).stdout)[0]["result"]["runs"]
    assert run["output"] == "mine-q4.gguf" and run["output_removed"] is True


def test_yes_is_a_global_option_for_scripts(demo_dir, home, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy2(demo_dir / "demo-q8_0.gguf", models / "a.gguf")
    shutil.copy2(demo_dir / "demo-q8_0.gguf", models / "b.gguf")
    script = tmp_path / "remove.txt"
    script.write_text("remove model a\nremove model b\n")
    refused = cli(["--script", str(script)], home, models)
    assert refused.returncode == 1 and (models / "a.gguf").exists()
    done = cli(["-y", "--script", str(script)], home, models)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not (models / "a.gguf").exists() and not (models / "b.gguf").exists()
    assert "--yes" in cli(["--help"], home, models).stdout


def test_yes_answers_the_interactive_shells_questions(demo_dir, home, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy2(demo_dir / "demo-q8_0.gguf", models / "a.gguf")
    term = Terminal([sys.executable, "cli/api_cli.py", "--yes"], shell_env(home, models))
    term.expect(r"lqmf> ")
    term.send("remove model a\r")
    term.expect(r"removed a")
    term.expect(r"lqmf> ")
    assert "[y/N]" not in term.buffer and not (models / "a.gguf").exists()
    term.send("exit\r")
    assert term.wait() == 0


def test_a_rename_chain_is_followed_only_after_the_run(tmp_path):
    """a -> b -> c after the run; a later model named a again is another model (real SQLite history)."""
    from agents.models.renames import CHANGES_FOLLOWED, runs_with_names_now

    store = Store(tmp_path / "lqmf.db")
    try:
        early = store.start_quantization("src", "x.gguf", "gguf", "q4_0", 4.5, {})
        store.record_model_change("renamed", "x", "y", str(tmp_path / "x.gguf"), str(tmp_path / "y.gguf"), 1)
        late = store.start_quantization("src", "x.gguf", "gguf", "q8_0", 8.5, {})
        store.record_model_change("renamed", "y", "z", str(tmp_path / "y.gguf"), str(tmp_path / "z.gguf"), 1)
        store.record_model_change("renamed", "src", "origin", str(tmp_path / "src"), str(tmp_path / "origin"), 1)
        runs = {run["id"]: run for run in runs_with_names_now(store.quantization_runs(),
                                                              store.model_changes(limit=CHANGES_FOLLOWED))}
    finally:
        store.close()
    assert (runs[early]["output"], runs[early]["output_renamed_from"]) == ("z.gguf", "x.gguf")
    assert runs[late]["output"] == "x.gguf" and "output_renamed_from" not in runs[late]
    assert runs[early]["source"] == runs[late]["source"] == "origin"
    assert runs[late]["source_renamed_from"] == "src"


# -- 5. plural forms --------------------------------------------------------------------------------------------
def test_one_imported_file_is_one_file(demo_dir, home, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    run = cli(["-c", f"import {demo_dir / 'demo-q8_0.gguf'} as one"], home, models)
    assert run.returncode == 0 and "(gguf, 1 file, " in run.stdout and "1 files" not in run.stdout, run.stdout
    assert [plural(n, "reply", "replies") for n in (0, 1, 2)] == ["0 replies", "1 reply", "2 replies"]
