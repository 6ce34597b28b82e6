"""Sentence-embedding models in the factory: the layout kept on import and download, encoders told from
generators, GGUF and bitsandbytes outputs verified by their vectors, GPTQ refused in the plan, and the
embedding-fidelity card. On a tiny random BERT in the sentence-transformers layout (tests/tiny_encoder.py).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from agents.quantization.acquire import download_model, import_model
from agents.quantization.acquire.selection import pick_hf_files
from lqmf.base.encoders import EMBEDDING, GENERATION, hf_role, read_layout
from server.runtime.discovery import discover, inspect_folder
from tests.fake_hub import FakeHub
from tests.tiny_encoder import tiny_bert

LAYOUT = ("modules.json", "config_sentence_transformers.json", "sentence_bert_config.json", "1_Pooling/config.json",
          "2_Dense/config.json", "2_Dense/model.safetensors", "config.json", "model.safetensors", "tokenizer.json")


@pytest.fixture(scope="module")
def encoder_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT saved as sentence-transformers saves one, with a Dense module and onnx/openvino exports."""
    return tiny_bert(tmp_path_factory.mktemp("encoder") / "tiny-st", extras=True)


@pytest.fixture
def settings(home: Path):
    from lqmf.base.settings import load_settings

    return load_settings()


def files_of(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


# -- the layout -------------------------------------------------------------------------------------------------
def test_import_keeps_the_sentence_transformers_layout_and_nothing_else(encoder_src, settings):
    got = import_model(encoder_src, settings, name="tiny-st")
    files = files_of(got.path)
    assert set(LAYOUT) <= files
    assert not {f for f in files if f.startswith(("onnx/", "openvino/"))}, files  # exports are not the model
    assert read_layout(got.path).pooling == "mean" and read_layout(got.path).normalize


def test_a_download_takes_the_folders_modules_json_names(encoder_src, settings, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-home" / "hub"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    repo = tmp_path / "repo"
    shutil.copytree(encoder_src, repo)
    # A module folder named otherwise than sentence-transformers names them, and an unlisted look-alike.
    modules = json.loads((repo / "modules.json").read_text())
    modules[1]["path"] = "pooler"
    (repo / "1_Pooling").rename(repo / "pooler")
    (repo / "modules.json").write_text(json.dumps(modules))
    (repo / "3_Stale").mkdir()
    (repo / "3_Stale" / "config.json").write_text("{}")
    hub = FakeHub()
    hub.add_folder("lqmf-test/tiny-st", repo)
    hub.start()
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    try:
        got = download_model("lqmf-test/tiny-st", settings)
    finally:
        hub.stop()
    files = files_of(got.path)
    assert {"modules.json", "pooler/config.json", "2_Dense/config.json", "2_Dense/model.safetensors"} <= files
    assert not {f for f in files if f.startswith(("onnx/", "openvino/", "3_Stale/"))}, files
    assert inspect_folder(got.path)[0].role == EMBEDDING


def test_selection_takes_module_folders_only_beside_modules_json():
    paths = ["config.json", "model.safetensors", "modules.json", "1_Pooling/config.json", "2_Dense/config.json",
             "2_Dense/pytorch_model.bin", "onnx/model.onnx", "openvino/openvino_model.bin", ".git/HEAD"]
    picked = pick_hf_files(paths)
    assert {"1_Pooling/config.json", "2_Dense/config.json", "2_Dense/pytorch_model.bin"} <= set(picked)
    assert not {p for p in picked if p.startswith(("onnx/", "openvino/", ".git/"))}
    # Without modules.json a numbered folder is nobody's module; named folders are taken as named.
    assert pick_hf_files([p for p in paths if p != "modules.json"]) == ["config.json", "model.safetensors"]
    assert "pooler/config.json" in pick_hf_files(paths + ["pooler/config.json"], ["pooler"])


# -- discovery -------------------------------------------------------------------------------------------------
def test_discovery_tells_an_encoder_from_a_generator(encoder_src):
    assert inspect_folder(encoder_src)[0].role == EMBEDDING
    assert inspect_folder(encoder_src)[0].to_dict()["role"] == EMBEDDING
    assert hf_role({"architectures": ["BertForMaskedLM"], "model_type": "bert"}, False) == EMBEDDING
    assert hf_role({"architectures": ["XLMRobertaModel"], "model_type": "xlm-roberta"}, False) == EMBEDDING
    assert hf_role({"architectures": ["LlamaForCausalLM"], "model_type": "llama"}, False) == GENERATION
    assert hf_role({"architectures": ["Qwen3Model"], "model_type": "qwen3"}, True) == EMBEDDING  # modules.json


def test_a_listed_normalize_without_a_folder_and_the_pooling_config_are_read(tmp_path):
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True,
                                                                    "pooling_mode_mean_tokens": False}))
    (tmp_path / "modules.json").write_text(json.dumps([
        {"path": "", "type": "sentence_transformers.models.Transformer"},
        {"path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        {"path": "../outside", "type": "sentence_transformers.models.Dense"}]))
    layout = read_layout(tmp_path)
    assert layout.pooling == "cls" and layout.normalize and layout.folders == ("1_Pooling", "2_Normalize")
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode": "lasttoken"}))
    assert read_layout(tmp_path).pooling == "lasttoken"


def test_pooling_modes_use_only_the_real_tokens():
    import torch

    from server.runtime.backends.pooling import pool

    hidden = torch.tensor([[[1.0, 2.0], [3.0, -4.0], [float("nan"), 9.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert pool(hidden, mask, "mean").tolist() == [[2.0, -1.0]]
    assert pool(hidden, mask, "cls").tolist() == [[1.0, 2.0]]
    assert pool(hidden, mask, "max").tolist() == [[3.0, 2.0]]
    assert pool(hidden, mask, "lasttoken").tolist() == [[3.0, -4.0]]


# -- the factory ----------------------------------------------------------------------------------------------
@pytest.fixture
def library(encoder_src, settings):
    from lqmf.api import Library

    with Library(settings) as lib:
        lib.import_model(encoder_src, name="tiny-st")
        yield lib


def test_gguf_q8_0_and_bnb_int8_are_verified_by_their_vectors_with_an_embedding_card(library):
    made = {}
    for level in ("q8_0", "int8"):
        planned = library.quantize("tiny-st", level=level, fidelity=level == "int8")
        assert planned.plan.steps[-1].startswith("verify: load the output, embed sentences"), planned.plan.steps
        done = planned.run()
        verified = done.manifest["details"]["verified"]
        assert verified["check"] == "embedding" and verified["min_cosine"] >= 0.99 == verified["threshold"]
        made[level] = done
    assert made["q8_0"].manifest["details"]["verified"]["pooling_type"] == 1  # mean, from 1_Pooling
    card = made["int8"].fidelity.row(made["int8"].model).embedding
    assert card.cosine_mean > 0.99 and card.neighbour_overlap > 0.8 and card.texts >= 40
    roles = {r.name: r.role for r in discover(library.settings.models_dir)}
    assert roles == {"tiny-st": EMBEDDING, "tiny-st-q8_0": EMBEDDING, "tiny-st-bnb-int8": EMBEDDING}
    assert read_layout(library.settings.models_dir / "tiny-st-bnb-int8").pooling == "mean"  # the layout came along
    # The source's variants side by side (small vs large), stored as a fidelity experiment.
    table = library.fidelity("tiny-st")
    assert [r.model for r in table.rows] == ["tiny-st", "tiny-st-bnb-int8", "tiny-st-q8_0"]
    assert all(r.embedding.cosine_mean > 0.99 and r.bits_per_weight for r in table.rows)
    stored = library.store.experiments(kind="fidelity", limit=1)[0]["summary"]
    assert stored["measure"] == "embedding" and {r["model"] for r in stored["models"]} == {
        "tiny-st", "tiny-st-bnb-int8", "tiny-st-q8_0"}
    assert library.show("tiny-st-bnb-int8").figures["fidelity"]["measure"] == "embedding"


def test_the_plan_refuses_gptq_and_importance_matrix_levels_for_an_encoder(library):
    gptq = library.quantize("tiny-st", method="gptq", bits=4).plan
    assert gptq.problems == ["GPTQModel does not quantize BERT encoders (bert); use gguf or bnb"]
    iq2 = library.quantize("tiny-st", level="iq2_xs").plan
    assert not iq2.runnable and "importance matrix" in iq2.problems[0]
    asked = library.quantize("tiny-st", level="q4_k_m", imatrix=True).plan
    assert asked.problems == ["an importance matrix is computed from next-token logits, which an encoder (bert) "
                              "does not have; quantize tiny-st to q4_k_m without `with imatrix`"]


def test_benchmark_and_a_mixed_compare_refuse_an_encoder_before_any_work(library, demo_dir):
    from lqmf.base.errors import LQMFError

    with pytest.raises(LQMFError, match="tiny-st is an embedding model: benchmark measures text generation"):
        library.benchmark("tiny-st")
    library.import_model(demo_dir / "demo-q8_0.gguf", name="demo-q8_0")
    with pytest.raises(LQMFError, match="tiny-st is an embedding model: compare"):
        library.compare(["demo-q8_0", "tiny-st"])
    assert library.store.experiments(limit=5) == [] and not library.manager.loaded()


def test_an_output_whose_vectors_point_elsewhere_is_not_kept(encoder_src):
    from agents.quantization.encoder import VERIFY_TEXTS
    from agents.quantization.verify import EmbeddingReference, VerificationFailed, embeddings_of, verify_embeddings

    vectors, _ = embeddings_of(encoder_src, "hf", "tiny-st", VERIFY_TEXTS)
    assert verify_embeddings(encoder_src, "hf", "tiny-st", EmbeddingReference(
        "tiny-st", VERIFY_TEXTS, vectors, 0.99))["min_cosine"] > 0.9999
    rotated = np.roll(vectors, 1, axis=1)
    with pytest.raises(VerificationFailed, match="too far from tiny-st's: cosine"):
        verify_embeddings(encoder_src, "hf", "tiny-st", EmbeddingReference("tiny-st", VERIFY_TEXTS, rotated, 0.9))


def test_embedding_stats_see_a_changed_geometry():
    from agents.measure.embedding_fidelity import embedding_stats

    rng = np.random.default_rng(0)
    ref = rng.normal(size=(30, 16))
    same = embedding_stats(ref, ref * 3.0)  # a scale is no change: cosine is what counts
    assert same.cosine_min == pytest.approx(1.0) and same.neighbour_overlap == 1.0
    assert same.rank_spearman == pytest.approx(1.0)
    noisy = embedding_stats(ref, ref + rng.normal(scale=0.5, size=ref.shape))
    assert 0.5 < noisy.cosine_mean < 0.99 and noisy.neighbour_overlap < 1.0 and noisy.rank_spearman < 1.0
    assert embedding_stats(ref, rng.normal(size=ref.shape)).neighbour_overlap < 0.5


def test_the_hf_backend_loads_an_encoder_bare_and_pools_as_its_config_says(encoder_src, tmp_path):
    import torch
    from transformers import AutoModel, AutoTokenizer

    from lqmf.base.errors import FeatureUnsupported
    from lqmf.base.generation import GenerationParams
    from server.runtime.backends import backend_for

    folder = shutil.copytree(encoder_src, tmp_path / "cls-st")
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    backend = backend_for(inspect_folder(folder)[0])
    backend.load()
    try:
        vector = backend.embed_batch(["the cat sat"], normalize=False).vectors[0]
        assert backend.embedding_pooling == "cls"
        with pytest.raises(FeatureUnsupported, match="embedding model: it makes vectors, not text"):
            backend.generate(backend.tokenize("the cat"), GenerationParams(max_tokens=1))
    finally:
        backend.unload()
    tokenizer, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder)
    with torch.inference_mode():
        expected = model(**tokenizer(["the cat sat"], return_tensors="pt")).last_hidden_state[0, 0]
    assert np.allclose(vector, expected.numpy(), atol=1e-5)
