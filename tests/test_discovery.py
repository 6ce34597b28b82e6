"""Discovery: format from file evidence; broken entries listed as unusable; never a crash."""

from __future__ import annotations

import json
import shutil

from server.runtime.discovery import discover

EXPECTED = {
    "demo-f16": ("gguf", "f16", 16.0),
    "demo-q8_0": ("gguf", "q8_0", 8.0),
    "demo-q4_k_m": ("gguf", "q4_k_m", 4.0),
    "demo-gptq-4bit": ("gptq", "4bit-g128", 4.0),
    "demo-bnb-nf4": ("bnb", "nf4", 4.0),
    "demo-bnb-int8": ("bnb", "int8", 8.0),
    "demo-hf": ("hf", "f32", 32.0),
}


def test_demo_models_are_discovered_with_their_formats(demo_dir):
    records = {r.name: r for r in discover(demo_dir)}
    assert set(records) == set(EXPECTED)
    for name, (fmt, level, bits) in EXPECTED.items():
        r = records[name]
        assert (r.format, r.level, r.bits) == (fmt, level, bits), name
        assert r.usable and r.reason == ""
        assert r.context_length == 1024 and r.has_chat_template, name
        assert r.manifest is not None and r.size_bytes > 0
        assert r.parameter_count == r.manifest["parameter_count"]
        assert "llama" in (r.architecture or "").lower()


def test_names_do_not_decide_the_format(demo_dir, tmp_path):
    shutil.copy2(demo_dir / "demo-q4_k_m.gguf", tmp_path / "looks-like-f16.gguf")
    shutil.copytree(demo_dir / "demo-bnb-int8", tmp_path / "my-gptq-model")
    records = {r.name: r for r in discover(tmp_path)}
    assert records["looks-like-f16"].level == "q4_k_m"
    assert records["my-gptq-model"].format == "bnb"


def test_broken_entries_are_unusable_with_a_reason(demo_dir, tmp_path):
    data = (demo_dir / "demo-q4_k_m.gguf").read_bytes()
    (tmp_path / "truncated.gguf").write_bytes(data[: len(data) // 3])
    (tmp_path / "not-gguf.gguf").write_bytes(b"PK\x03\x04 a zip file")
    (tmp_path / "empty.gguf").write_bytes(b"")
    no_weights = tmp_path / "no-weights"
    no_weights.mkdir()
    (no_weights / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    bad_config = tmp_path / "bad-config"
    bad_config.mkdir()
    (bad_config / "config.json").write_text("{not json")
    records = {r.name: r for r in discover(tmp_path)}
    assert set(records) == {"truncated", "not-gguf", "empty", "no-weights", "bad-config"}
    for record in records.values():
        assert not record.usable and record.reason, record.name
    assert "magic" in records["not-gguf"].reason
    assert "no weight files" in records["no-weights"].reason


def test_temps_hidden_files_manifests_and_strays_are_ignored(demo_dir, tmp_path):
    shutil.copy2(demo_dir / "demo-q8_0.gguf", tmp_path / "good.gguf")
    (tmp_path / ".good.gguf.lqmf-tmp-123-abcd").write_bytes(b"GGUF half")
    (tmp_path / ".hidden.gguf").write_bytes(b"GGUF")
    (tmp_path / "good.gguf.lqmf.json").write_text("{}")
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "random-folder").mkdir()
    assert [r.name for r in discover(tmp_path)] == ["good"]


def test_brief_naming_convention_is_parsed_for_display(demo_dir, tmp_path):
    shutil.copytree(demo_dir / "demo-gptq-4bit", tmp_path / "Qwen_Qwen2.5-0.5B-Instruct_gptq_4bit")
    (record,) = discover(tmp_path)
    assert record.display == {"org": "Qwen", "model": "Qwen2.5-0.5B-Instruct", "method": "gptq", "bits": "4"}
    assert record.format == "gptq"


def test_missing_folder_gives_an_empty_list(tmp_path):
    assert discover(tmp_path / "nowhere") == []


def test_gguf_files_inside_folders(demo_dir, tmp_path):
    single = tmp_path / "org_model-GGUF"
    single.mkdir()
    shutil.copy2(demo_dir / "demo-q8_0.gguf", single / "model.q8_0.gguf")
    several = tmp_path / "bundle"
    several.mkdir()
    shutil.copy2(demo_dir / "demo-q8_0.gguf", several / "a.gguf")
    shutil.copy2(demo_dir / "demo-q4_k_m.gguf", several / "b.gguf")
    shutil.copy2(demo_dir / "demo-q4_k_m.gguf", tmp_path / "bundle-a.gguf")  # a name clash
    records = {r.name: r for r in discover(tmp_path)}
    assert set(records) == {"org_model-GGUF", "bundle-a", "bundle-b", "bundle-a-2"}
    assert records["org_model-GGUF"].level == "q8_0" and records["bundle-b"].level == "q4_k_m"
    assert all("/" not in name for name in records)
