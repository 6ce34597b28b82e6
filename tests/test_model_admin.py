"""Model management (issue 16, point 4): remove, show, rename, copy, disk usage — core, shell handlers, HTTP
routes and the real CLI, on private copies of the demo models. Also `load` of a loaded model and of an
unknown name."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import httpx
import pytest
from rich.console import Console

from agents import results as r
from agents.executor_agent import Executor
from agents.intents import Command, Intent, Slots
from agents.models import admin as admin
from cli.render import render
from lqmf.api import Library
from lqmf.base.manifest import read_manifest
from lqmf.base.settings import Settings
from server.http.runner import BackgroundServer
from server.runtime.manager import ModelManager
from tests.test_factory import models_with
from tests.test_shell import cli

COPIED = ("demo-hf", "demo-f16.gguf", "demo-q8_0.gguf", "demo-q4_k_m.gguf")


def copy_demo(demo_dir: Path, target: Path) -> Path:
    """A private, writable copy of some demo models (the shared demo_dir stays untouched), and an importance
    matrix recorded for demo-q4_k_m as the quantization agent keeps one."""
    models_with(demo_dir, target, *COPIED)
    matrix = target / ".imatrix" / "demo-q4_k_m.imatrix.gguf"
    matrix.parent.mkdir()
    matrix.write_bytes(b"GGUF" + os.urandom(4096))
    matrix.with_name(matrix.name + ".lqmf.json").write_text(json.dumps(
        {"name": matrix.name, "format": "imatrix", "weight_files": [{"path": matrix.name}]}))
    side = target / "demo-q4_k_m.gguf.lqmf.json"
    manifest = json.loads(side.read_text())
    manifest["details"]["imatrix"] = {"path": str(matrix), "chunks": 4}
    side.write_text(json.dumps(manifest))
    return target


@pytest.fixture
def models(demo_dir, tmp_path) -> Path:
    return copy_demo(demo_dir, tmp_path / "models")


@pytest.fixture
def shell(models, tmp_path):
    settings = Settings(home=tmp_path / "home", models_dir_override=models, port=0)
    manager = ModelManager(settings)
    executor = Executor(settings, manager, BackgroundServer(settings, Library(settings, manager)))
    yield executor
    executor.close()
    manager.close()


def run(executor: Executor, intent: Intent, **slots) -> r.Result:
    return executor.execute(Command(intent, Slots(**slots), text=f"{intent.value} {slots}"))


def names(executor: Executor) -> set[str]:
    return {rec.name for rec in executor.manager.available()}


def drawn(result: r.Result) -> str:
    console = Console(record=True, width=200, color_system=None)
    render(result, console)
    return console.export_text()


def visible(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if not p.name.startswith(".")}


# -- remove ----------------------------------------------------------------------------------------------
def test_remove_asks_then_removes_file_manifest_and_imatrix_and_records_it(shell, models):
    asked = run(shell, Intent.REMOVE_MODEL, model="demo-q4_k_m")
    assert isinstance(asked, r.Confirm) and not asked.ok
    assert asked.question.startswith("Remove demo-q4_k_m (2.7 MiB: the file, its manifest, 1 imatrix)?")
    assert (models / "demo-q4_k_m.gguf").is_file()  # asking touches nothing
    done = run(shell, Intent.REMOVE_MODEL, model="demo-q4_k_m", yes=True)
    assert isinstance(done, r.ModelChanged) and done.ok, done
    assert done.change.action == "removed" and done.change.freed_bytes == done.change.size_bytes
    assert "demo-q4_k_m" not in names(shell)
    assert not (models / "demo-q4_k_m.gguf").exists() and not (models / "demo-q4_k_m.gguf.lqmf.json").exists()
    assert not (models / ".imatrix").exists()  # its matrix and the matrix's manifest, then the empty folder
    assert [p.name for p in models.iterdir() if p.name.startswith(".")] == []  # no temporary left
    row = shell.library.store.model_changes(name="demo-q4_k_m")[0]
    assert row["action"] == "removed" and row["size_bytes"] == done.change.size_bytes
    assert len(row["details"]["files"]) == 4
    assert "removed demo-q4_k_m" in drawn(done)


def test_remove_refuses_a_loaded_model_before_asking(shell, models):
    shell.manager.load("demo-q8_0")
    refused = run(shell, Intent.REMOVE_MODEL, model="demo-q8_0")
    assert isinstance(refused, r.ErrorResult), refused
    assert "is loaded" in refused.message and refused.hint == "unload model demo-q8_0 first"
    refused = run(shell, Intent.REMOVE_MODEL, model="demo-q8_0", yes=True)
    assert isinstance(refused, r.ErrorResult) and (models / "demo-q8_0.gguf").is_file()
    assert shell.manager.is_loaded("demo-q8_0")
    run(shell, Intent.UNLOAD_MODEL_API, model="demo-q8_0")
    assert run(shell, Intent.REMOVE_MODEL, model="demo-q8_0", yes=True).ok
    assert "demo-q8_0" not in names(shell)


def test_no_load_starts_while_a_model_is_being_removed(shell):
    with shell.manager.changing("demo-q8_0", "removed"):
        refused = run(shell, Intent.LOAD_MODEL_API, model="demo-q8_0")
    assert isinstance(refused, r.ErrorResult) and "being removed" in refused.message
    assert run(shell, Intent.LOAD_MODEL_API, model="demo-q8_0").ok  # held no longer


def test_a_failed_removal_puts_everything_back(shell, models, monkeypatch):
    real = os.replace
    calls = []

    def failing(src, dst):
        calls.append(src)
        if len(calls) == 2:  # the artefact moved, then the manifest's move fails
            raise OSError("disk went away")
        return real(src, dst)

    monkeypatch.setattr(admin.os, "replace", failing)
    with pytest.raises(OSError):
        admin.remove_model(shell.manager, "demo-q4_k_m")
    monkeypatch.setattr(admin.os, "replace", real)
    assert (models / "demo-q4_k_m.gguf").is_file() and (models / "demo-q4_k_m.gguf.lqmf.json").is_file()
    assert (models / ".imatrix" / "demo-q4_k_m.imatrix.gguf").is_file()
    assert "demo-q4_k_m" in names(shell)
    assert [p.name for p in models.iterdir() if p.name.startswith(".")] == [".imatrix"]


def test_a_removal_cut_short_leaves_nothing_listed(shell, models, monkeypatch):
    """Killed between the first rename and the delete: only a hidden temporary, which discovery ignores."""
    monkeypatch.setattr(admin.shutil, "rmtree", lambda *a, **k: None)  # the process "dies" before deleting
    admin.remove_model(shell.manager, "demo-q8_0")
    assert "demo-q8_0" not in names(shell)
    leftovers = [p for p in models.iterdir() if p.name.startswith(".") and p.name != ".imatrix"]
    assert len(leftovers) == 1  # one hidden temporary holding the file and its manifest
    assert {p.name for p in leftovers[0].iterdir()} == {"demo-q8_0.gguf", "0-demo-q8_0.gguf.lqmf.json"}


def test_remove_of_a_remote_endpoint_points_at_remove_endpoint(shell):
    shell.manager.remotes.add("far-away", ["http://127.0.0.1:9/v1"], "m")
    refused = run(shell, Intent.REMOVE_MODEL, model="far-away")
    assert isinstance(refused, r.ErrorResult) and "remote endpoint" in refused.message
    assert "remove endpoint far-away" in refused.hint


def test_remove_of_an_unknown_model_names_the_nearest(shell):
    refused = run(shell, Intent.REMOVE_MODEL, model="demo-q8", yes=True)
    assert isinstance(refused, r.ErrorResult) and "demo-q8_0" in refused.hint


# -- rename / copy ------------------------------------------------------------------------------------------
def test_rename_moves_files_and_keeps_lineage(shell, models):
    shell.manager.routing.use(["demo-f16", "demo-q8_0"])
    done = run(shell, Intent.RENAME_MODEL, model="demo-f16", name="base-f16")
    assert isinstance(done, r.ModelChanged), done
    assert sorted(done.change.updated_children) == ["demo-q4_k_m", "demo-q8_0"]
    assert not (models / "demo-f16.gguf").exists() and not (models / "demo-f16.gguf.lqmf.json").exists()
    manifest = json.loads((models / "base-f16.gguf.lqmf.json").read_text())
    assert manifest["name"] == "base-f16" and manifest["weight_files"][0]["path"] == "base-f16.gguf"
    assert manifest["details"]["renamed_from"] == "demo-f16"
    for child in ("demo-q8_0", "demo-q4_k_m"):
        source = read_manifest(models / f"{child}.gguf")["source"]  # stored relative to the models folder
        assert source["path"] == str(models / "base-f16.gguf")
    assert shell.library.lab.lineage("demo-q8_0") == ["demo-q8_0", "base-f16", "demo-hf"]
    assert shell.manager.active.chain() == ["base-f16", "demo-q8_0"]
    assert "base-f16" in names(shell) and "demo-f16" not in names(shell)
    assert shell.library.store.model_changes(name="base-f16")[0]["action"] == "renamed"
    assert "renamed demo-f16 → base-f16" in drawn(done)


def test_rename_carries_the_importance_matrix(shell, models):
    assert run(shell, Intent.RENAME_MODEL, model="demo-q4_k_m", name="small").ok
    matrix = models / ".imatrix" / "small.imatrix.gguf"
    assert matrix.is_file() and not (models / ".imatrix" / "demo-q4_k_m.imatrix.gguf").exists()
    assert json.loads(matrix.with_name(matrix.name + ".lqmf.json").read_text())["name"] == "small.imatrix.gguf"
    manifest = read_manifest(models / "small.gguf")
    assert manifest["details"]["imatrix"]["path"] == str(matrix)


def test_rename_of_a_folder_updates_its_inner_manifest_and_children(shell, models):
    assert run(shell, Intent.RENAME_MODEL, model="demo-hf", name="tiny-hf").ok
    assert json.loads((models / "tiny-hf" / "lqmf.json").read_text())["name"] == "tiny-hf"
    source = read_manifest(models / "demo-f16.gguf")["source"]
    assert source["path"] == str(models / "tiny-hf")


@pytest.mark.parametrize("new, status, words", [
    ("demo-q8_0", 409, "already exists"), ("../evil", 422, "cannot be a model's name"),
    ("default", 422, "reserved"), ("x.gguf", 422, "without a suffix"),
])
def test_rename_and_copy_refuse_taken_or_invalid_names(shell, models, new, status, words):
    for intent in (Intent.RENAME_MODEL, Intent.COPY_MODEL):
        refused = run(shell, intent, model="demo-q4_k_m", name=new)
        assert isinstance(refused, r.ErrorResult) and words in refused.message, refused
    assert visible(models) == {*COPIED, *(f"{n}.lqmf.json" for n in COPIED if n.endswith(".gguf"))}


def test_rename_refuses_a_loaded_model_and_asks_for_the_new_name(shell):
    shell.manager.load("demo-q8_0")
    refused = run(shell, Intent.RENAME_MODEL, model="demo-q8_0", name="eight")
    assert isinstance(refused, r.ErrorResult) and refused.hint == "unload model demo-q8_0 first"
    asked = run(shell, Intent.RENAME_MODEL, model="demo-q8_0")
    assert isinstance(asked, r.Question) and "to what?" in asked.text


def test_copy_is_independent_and_leaves_lineage_to_the_original(shell, models):
    shell.manager.load("demo-q4_k_m")  # a loaded model can be copied
    done = run(shell, Intent.COPY_MODEL, model="demo-q4_k_m", name="my-q4")
    assert isinstance(done, r.ModelChanged) and done.change.action == "copied", done
    assert (models / "my-q4.gguf").read_bytes() == (models / "demo-q4_k_m.gguf").read_bytes()
    manifest = read_manifest(models / "my-q4.gguf")
    assert manifest["name"] == "my-q4" and manifest["details"]["copied_from"]["name"] == "demo-q4_k_m"
    assert manifest["details"]["imatrix"]["path"] == str(models / ".imatrix" / "my-q4.imatrix.gguf")
    assert (models / ".imatrix" / "demo-q4_k_m.imatrix.gguf").is_file()  # the original keeps its own
    assert shell.library.lab.lineage("my-q4") == ["my-q4", "demo-f16", "demo-hf"]  # a sibling, same source
    folder = run(shell, Intent.COPY_MODEL, model="demo-hf", name="hf-copy")
    assert folder.ok and json.loads((models / "hf-copy" / "lqmf.json").read_text())["name"] == "hf-copy"
    source = json.loads((models / "demo-f16.gguf.lqmf.json").read_text())["source"]
    assert Path(source["path"]).name == "demo-hf"  # children keep the original
    assert {"my-q4", "hf-copy", "demo-q4_k_m", "demo-hf"} <= names(shell)
    assert shell.manager.load("my-q4").record.usable


# -- show ---------------------------------------------------------------------------------------------------
def test_show_gives_manifest_lineage_figures_template_and_context(shell):
    store = shell.library.store
    exp = store.start_experiment("benchmark", ["demo-q8_0"], {})
    store.finish_experiment(exp, {"models": [{"model": "demo-q8_0", "gen_tps": 123.4, "ttft_p50_s": 0.01}]})
    fid = store.start_experiment("fidelity", ["demo-q8_0"], {})
    store.finish_experiment(fid, {"reference": "demo-f16", "text": "held-out", "models": [
        {"model": "demo-q8_0", "kld_mean": 0.0004, "top1_agreement": 0.99, "ppl_test": 75.1}]})
    shown = run(shell, Intent.SHOW_MODEL, model="demo-q8_0")
    assert isinstance(shown, r.ModelDetails), shown
    m = shown
    assert m.format == "gguf" and m.level == "q8_0" and m.context_length
    assert m.manifest["method"] == "llama.cpp-quantize" and m.manifest["bits_per_weight"] == pytest.approx(8.5121)
    assert Path(m.manifest["source"]["path"]).name == "demo-f16.gguf" and "gguf" in m.manifest["tool_versions"]
    assert m.lineage["ancestors"] == ["demo-f16", "demo-hf"]
    assert m.lineage["tree"] == {"name": "demo-hf", "children": [
        {"name": "demo-f16", "children": [{"name": "demo-q8_0", "children": []}]}]}
    assert m.figures["speed"]["gen_tps"] == 123.4 and m.figures["speed"]["experiment_id"] == exp
    assert m.figures["fidelity"]["kld_mean"] == 0.0004 and m.figures["fidelity"]["reference"] == "demo-f16"
    assert m.has_chat_template and m.chat_template_first_line
    assert m.disk.total_bytes == m.size_bytes and m.to_dict()["model"]["disk"]["total_bytes"] == m.size_bytes
    text = drawn(shown)
    for words in ("bits per weight", "8.51 measured", "123.4 tokens/s", "KLD 0.00040", "lineage", "demo-hf", "present"):
        assert words in text, (words, text)
    parent = run(shell, Intent.SHOW_MODEL, model="demo-f16").lineage["tree"]
    assert parent == {"name": "demo-hf", "children": [{"name": "demo-f16", "children": [
        {"name": "demo-q4_k_m", "children": []}, {"name": "demo-q8_0", "children": []}]}]}
    unmeasured = drawn(run(shell, Intent.SHOW_MODEL, model="demo-q4_k_m"))
    assert "not measured yet: benchmark demo-q4_k_m" in unmeasured and "importance matrix" in unmeasured


# -- disk usage ------------------------------------------------------------------------------------------------
def test_disk_usage_per_model_total_frees_and_free_space(shell, models):
    os.link(models / "demo-q8_0.gguf", models / "linked.gguf")  # a hard link frees nothing while the other lives
    usage = run(shell, Intent.DISK_USAGE)
    assert isinstance(usage, r.DiskUsage), usage
    rows = {row.name: row for row in usage.models}
    q4 = rows["demo-q4_k_m"]
    assert q4.artefact_bytes == (models / "demo-q4_k_m.gguf").stat().st_size
    assert q4.manifest_bytes > 0 and q4.children_bytes > 4096
    assert q4.total_bytes == q4.frees_bytes == q4.artefact_bytes + q4.manifest_bytes + q4.children_bytes
    assert rows["linked"].frees_bytes == 0 and rows["demo-q8_0"].frees_bytes < rows["demo-q8_0"].total_bytes
    on_disk = sum(p.stat().st_size for p in models.rglob("*") if p.is_file()) - (models / "linked.gguf").stat().st_size
    assert usage.total_bytes == on_disk  # every file once, the hard link once
    assert usage.disk_free_bytes > 0
    assert usage.to_dict()["usage"]["models"][0] == usage.models[0].to_dict()
    text = drawn(usage)
    assert "removing frees" in text and "free on that disk" in text and "hard-linked" in text


# -- load: already loaded, unknown names -------------------------------------------------------------------------
def test_load_of_a_loaded_model_says_so_and_refreshes_its_last_use(shell):
    first = run(shell, Intent.LOAD_MODEL_API, model="demo-q8_0")
    assert type(first) is r.Loaded
    before = shell.manager.get("demo-q8_0").last_used_wall
    time.sleep(0.05)
    again = run(shell, Intent.LOAD_MODEL_API, model="demo-q8_0")
    assert isinstance(again, r.AlreadyLoaded) and again.to_dict()["type"] == "AlreadyLoaded"
    assert shell.manager.get("demo-q8_0").last_used_wall > before
    text = drawn(again)
    assert "was already loaded" in text and "loaded demo-q8_0" not in text and " in 0." not in text


def test_load_of_an_unknown_model_shows_the_nearest_names_or_the_list(shell):
    far = run(shell, Intent.LOAD_MODEL_API, model="llama-70b-chat")
    assert isinstance(far, r.ErrorResult)
    assert far.hint.startswith("available: ") and "demo-q8_0" in far.hint and "demo-hf" in far.hint
    near = run(shell, Intent.LOAD_MODEL_API, model="demo-q8")
    assert "did you mean" in near.hint and "demo-q8_0" in near.hint


# -- HTTP ----------------------------------------------------------------------------------------------------
@pytest.fixture
def api(models, tmp_path):
    settings = Settings(home=tmp_path / "server-home", models_dir_override=models, port=0)
    manager = ModelManager(settings)
    server = BackgroundServer(settings, Library(settings, manager))
    url = server.start().url
    with httpx.Client(base_url=url, timeout=120) as client:
        yield client, manager
    server.stop()
    manager.close()


def test_http_show_disk_usage_copy_rename_delete(api, models):
    http, manager = api
    usage = http.get("/models/disk-usage")  # not taken for a model named "disk-usage"
    assert usage.status_code == 200 and {m["name"] for m in usage.json()["models"]} >= {"demo-q8_0", "demo-hf"}
    shown = http.get("/models/demo-q8_0").json()
    assert shown["lineage"]["ancestors"] == ["demo-f16", "demo-hf"] and shown["manifest"]["level"] == "q8_0"
    assert http.get("/models/nope-nope").status_code == 404
    copied = http.post("/models/demo-q4_k_m/copy", json={"to": "api-q4"})
    assert copied.status_code == 201 and copied.json()["status"] == "copied", copied.text
    assert http.post("/models/demo-q4_k_m/copy", json={"to": "api-q4"}).status_code == 409
    assert http.post("/models/demo-q4_k_m/copy", json={"to": "../x"}).status_code == 422
    renamed = http.post("/models/api-q4/rename", json={"to": "api-q4b"})
    assert renamed.status_code == 200 and renamed.json()["new_path"] == str(models / "api-q4b.gguf")
    assert http.post("/models/api-q4b/load").status_code == 200
    refused = http.delete("/models/api-q4b")
    assert refused.status_code == 409 and "?unload=true" in refused.json()["error"]["hint"]
    assert http.post("/models/api-q4b/rename", json={"to": "other"}).status_code == 409
    removed = http.delete("/models/api-q4b", params={"unload": "true"})
    assert removed.status_code == 200 and removed.json()["status"] == "removed" and removed.json()["unloaded"]
    assert not manager.is_loaded("api-q4b") and not (models / "api-q4b.gguf").exists()
    assert "api-q4b" not in {m["name"] for m in http.get("/models/available").json()["models"]}
    assert http.delete("/models/api-q4b").status_code == 404


def test_api_show_is_richer(api):
    http, _ = api
    body = http.post("/api/show", json={"model": "demo-q8_0"}).json()
    assert body["details"]["parent_model"] == "demo-f16" and body["details"]["quantization_level"] == "Q8_0"
    assert body["model_info"]["general.bits_per_weight"] == pytest.approx(8.5121)
    assert body["parameters"].startswith("num_ctx ") and "PARAMETER num_ctx" in body["modelfile"]
    assert body["template"] and 'TEMPLATE """' in body["modelfile"]
    assert body["lqmf"]["lineage"]["ancestors"] == ["demo-f16", "demo-hf"] and body["lqmf"]["chat_template"] is None


# -- the real CLI (-c, --json) -----------------------------------------------------------------------------------
def _parsed(line: str, intent: Intent, models: Path) -> None:
    """Skip until the parser (another change) reads the canonical phrasing as this intent."""
    from agents.decision_agent import DecisionAgent
    from server.runtime.discovery import discover

    names = [rec.name for rec in discover(models)]
    got = DecisionAgent(lambda: names).parse(line)
    if got.intent is not intent:
        pytest.skip(f"the parser does not read {line!r} as {intent.value} yet (got {got.intent.value})")


def _json(proc) -> dict:
    """The result of a `--json -c` run ({"command": ..., "result": ...})."""
    return json.loads(proc.stdout[proc.stdout.index("{"):])["result"]


def test_cli_remove_asks_in_c_then_removes_with_yes(models, tmp_path):
    _parsed("remove demo-q8_0", Intent.REMOVE_MODEL, models)
    asked = cli(["--json", "-c", "remove demo-q8_0"], tmp_path / "home", models)
    assert asked.returncode == 1 and (models / "demo-q8_0.gguf").is_file()
    confirm_handled = "KeyError: <class 'agents.results.Confirm'>" not in asked.stdout + asked.stderr
    if confirm_handled:
        assert "Remove demo-q8_0 (4.6 MiB: the file, its manifest)?" in asked.stdout + asked.stderr
    _parsed("remove demo-q8_0 --yes", Intent.REMOVE_MODEL, models)
    done = cli(["--json", "-c", "remove demo-q8_0 --yes"], tmp_path / "home", models)
    assert done.returncode == 0, done.stdout + done.stderr
    assert _json(done)["change"]["action"] == "removed" and not (models / "demo-q8_0.gguf").exists()
    if not confirm_handled:
        pytest.skip("the shell does not handle results.Confirm yet (another change): the question was not shown")


def test_cli_show_rename_copy_disk_usage(models, tmp_path):
    home = tmp_path / "home"
    _parsed("show demo-q8_0", Intent.SHOW_MODEL, models)
    shown = cli(["--json", "-c", "show demo-q8_0"], home, models)
    assert shown.returncode == 0 and _json(shown)["model"]["lineage"]["ancestors"] == ["demo-f16", "demo-hf"]
    _parsed("copy demo-q4_k_m to cli-q4", Intent.COPY_MODEL, models)
    copied = cli(["--json", "-c", "copy demo-q4_k_m to cli-q4"], home, models)
    assert copied.returncode == 0 and (models / "cli-q4.gguf").is_file(), copied.stdout + copied.stderr
    _parsed("rename cli-q4 to cli-q4b", Intent.RENAME_MODEL, models)
    renamed = cli(["--json", "-c", "rename cli-q4 to cli-q4b"], home, models)
    assert renamed.returncode == 0 and (models / "cli-q4b.gguf").is_file(), renamed.stdout + renamed.stderr
    _parsed("disk usage", Intent.DISK_USAGE, models)
    usage = cli(["-c", "disk usage"], home, models)
    assert usage.returncode == 0 and "cli-q4b" in usage.stdout and "free on that disk" in usage.stdout
