"""Embeddings from every format: the backends against independent computations, the three HTTP routes
(through the unmodified openai and ollama clients too), batching, truncation, and the shell's embed command."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from server.runtime.embeddings import embed_texts
from tests.test_server import start_server
from tests.test_shell import cli

TEXTS = ["def f(x):", "import os\nprint(os.getcwd())", "class Stack:\n    def push(self, item):", "x",
         "Return the sum of a and b. " * 12]
LONG = "hello world " * 700  # well past the demo models' 1024-token context
DEMO_CONTEXT = 1024


@pytest.fixture(scope="module")
def served(demo_dir, tmp_path_factory):
    server, manager, url = start_server(demo_dir, tmp_path_factory.mktemp("embed-home"))
    yield url, manager
    server.stop()
    manager.close()


@pytest.fixture(scope="module")
def manager(served):
    return served[1]


def unit(rows) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float64)
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


def raw(http, model: str, texts) -> np.ndarray:
    """Unnormalised vectors through /v1/embeddings."""
    response = http.post("/v1/embeddings", json={"model": model, "input": texts, "normalize": False})
    assert response.status_code == 200, response.text
    return np.array([d["embedding"] for d in response.json()["data"]], dtype=np.float64)


# -- the vectors, against independent computations --------------------------------------------------------

def test_gguf_mean_pooling_matches_numpy_over_llama_cpp_token_states(http, demo_dir):
    from llama_cpp import LLAMA_POOLING_TYPE_NONE, Llama

    served_vectors = raw(http, "demo-q4_k_m", TEXTS)
    # llama.cpp's own per-token output states (no pooling), averaged here.
    llm = Llama(model_path=str(demo_dir / "demo-q4_k_m.gguf"), n_ctx=DEMO_CONTEXT, n_batch=DEMO_CONTEXT,
                n_ubatch=DEMO_CONTEXT, embedding=True, pooling_type=LLAMA_POOLING_TYPE_NONE, n_threads=1,
                verbose=False)
    try:
        expected = np.array([np.mean(llm.embed(text), axis=0) for text in TEXTS])
    finally:
        llm.close()
    assert served_vectors.shape == (len(TEXTS), 256)
    np.testing.assert_allclose(served_vectors, expected, rtol=1e-4, atol=1e-4)


def test_hf_mean_pooling_matches_a_plain_transformers_forward_pass(http, demo_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    served_vectors = raw(http, "demo-hf", TEXTS)  # batched with padding on the server
    tokenizer = AutoTokenizer.from_pretrained(demo_dir / "demo-hf")
    model = AutoModelForCausalLM.from_pretrained(demo_dir / "demo-hf")
    with torch.inference_mode():
        expected = np.array([
            model(**tokenizer(text, return_tensors="pt"), output_hidden_states=True)
            .hidden_states[-1][0].mean(0).numpy()
            for text in TEXTS
        ])
    np.testing.assert_allclose(served_vectors, expected, rtol=1e-4, atol=1e-4)


def test_every_format_points_where_the_source_model_does(http):
    reference = unit(raw(http, "demo-hf", TEXTS))
    across_texts = float((reference @ reference.T)[~np.eye(len(TEXTS), dtype=bool)].max())
    # f16 GGUF is the same weights through another runtime: the same vectors up to rounding.
    f16 = unit(raw(http, "demo-f16", TEXTS))
    assert np.min(np.sum(f16 * reference, axis=1)) > 0.9999
    for model in ("demo-q4_k_m", "demo-bnb-nf4", "demo-gptq-4bit"):  # GPTQ: this is its one load
        cosine = np.sum(unit(raw(http, model, TEXTS)) * reference, axis=1)
        # Closer to the same text's source vector than any two different texts are to each other.
        assert cosine.min() > max(0.99, across_texts), (model, cosine, across_texts)


# -- the core function: batching, normalisation, progress -----------------------------------------------------

@pytest.mark.parametrize("model", ["demo-q4_k_m", "demo-hf"])
def test_batches_give_the_vectors_of_one_at_a_time(manager, model):
    seen = []
    batched = embed_texts(manager, model, TEXTS, batch_size=32,
                          progress=lambda what, done, total: seen.append((done, total)))
    one_by_one = embed_texts(manager, model, TEXTS, batch_size=1)
    assert batched.vectors.dtype == np.float32 and batched.vectors.shape == (len(TEXTS), 256)
    np.testing.assert_allclose(batched.vectors, one_by_one.vectors, atol=2e-5)
    assert seen == [(0, len(TEXTS)), (len(TEXTS), len(TEXTS))]
    assert batched.token_counts == one_by_one.token_counts and all(n > 0 for n in batched.token_counts)
    assert batched.pooling == "mean" and batched.normalized and batched.seconds > 0
    np.testing.assert_allclose(np.linalg.norm(batched.vectors, axis=1), 1.0, atol=1e-5)
    plain = embed_texts(manager, model, TEXTS, normalize=False, batch_size=2)
    assert not plain.normalized and np.all(np.abs(np.linalg.norm(plain.vectors, axis=1) - 1) > 1e-3)
    np.testing.assert_allclose(unit(plain.vectors), batched.vectors, atol=1e-5)


def test_token_counts_are_the_models_own(manager):
    result = embed_texts(manager, "demo-hf", TEXTS)
    assert result.token_counts == [manager.call("demo-hf", lambda b, t=t: len(b.tokenize(t))) for t in TEXTS]


# -- /v1/embeddings ---------------------------------------------------------------------------------------------

def test_openai_client_embeds_gguf_and_transformers_models(served, http):
    from openai import OpenAI

    oai = OpenAI(base_url=f"{served[0]}/v1", api_key="unused", max_retries=0)
    for model in ("demo-q4_k_m", "demo-hf"):
        # The client asks for base64 and decodes it itself: the round trip is part of this check.
        got = oai.embeddings.create(model=model, input=TEXTS[:3])
        vectors = np.array([d.embedding for d in got.data])
        np.testing.assert_allclose(vectors, unit(raw(http, model, TEXTS[:3])), atol=1e-6)
        assert [d.index for d in got.data] == [0, 1, 2] and got.model == model
        assert got.usage.prompt_tokens == got.usage.total_tokens > 0
        single = oai.embeddings.create(model=model, input=TEXTS[0], encoding_format="float")
        np.testing.assert_allclose(single.data[0].embedding, vectors[0], atol=1e-6)


def test_base64_is_little_endian_float32_of_the_same_vector(http):
    body = {"model": "demo-q4_k_m", "input": ["def f(x):", "x"]}
    floats = http.post("/v1/embeddings", json=body).json()["data"]
    encoded = http.post("/v1/embeddings", json={**body, "encoding_format": "base64"}).json()["data"]
    for f, e in zip(floats, encoded, strict=True):
        decoded = np.frombuffer(base64.b64decode(e["embedding"]), dtype="<f4")
        assert decoded.shape == (256,)
        np.testing.assert_array_equal(decoded, np.array(f["embedding"], dtype=np.float32))


def test_token_id_inputs_embed_like_their_text(http, manager):
    ids = manager.call("demo-q4_k_m", lambda b: b.tokenize("def f(x):"))
    text = http.post("/v1/embeddings", json={"model": "demo-q4_k_m", "input": "def f(x):"}).json()
    one = http.post("/v1/embeddings", json={"model": "demo-q4_k_m", "input": ids}).json()
    many = http.post("/v1/embeddings", json={"model": "demo-q4_k_m", "input": [ids, ids[:3]]}).json()
    assert len(many["data"]) == 2 and many["usage"]["prompt_tokens"] == len(ids) + 3
    np.testing.assert_allclose(one["data"][0]["embedding"], text["data"][0]["embedding"], atol=1e-6)
    np.testing.assert_allclose(many["data"][0]["embedding"], text["data"][0]["embedding"], atol=1e-6)
    bad = http.post("/v1/embeddings", json={"model": "demo-q4_k_m", "input": [5, 999999]})
    assert bad.status_code == 422 and "999999" in bad.json()["error"]["message"]


@pytest.mark.parametrize("model", ["demo-q4_k_m", "demo-hf"])
def test_too_long_input_is_a_400_with_the_numbers_unless_truncated(http, manager, model):
    n_tokens = manager.call(model, lambda b: len(b.tokenize(LONG)))
    refused = http.post("/v1/embeddings", json={"model": model, "input": ["x", LONG]})
    assert refused.status_code == 400
    message = refused.json()["error"]["message"]
    assert f"input 1 is {n_tokens} tokens" in message and str(DEMO_CONTEXT) in message
    assert "truncat" in refused.json()["error"]["hint"]
    cut = http.post("/v1/embeddings", json={"model": model, "input": ["x", LONG], "truncate": True})
    assert cut.status_code == 200 and cut.json()["usage"]["prompt_tokens"] == DEMO_CONTEXT + len(
        manager.call(model, lambda b: b.tokenize("x")))
    # The cut input is the first DEMO_CONTEXT tokens: the same vector as those tokens sent as ids.
    head = manager.call(model, lambda b: b.tokenize(LONG)[:DEMO_CONTEXT])
    as_ids = http.post("/v1/embeddings", json={"model": model, "input": [head]}).json()["data"][0]["embedding"]
    np.testing.assert_allclose(cut.json()["data"][1]["embedding"], as_ids, atol=1e-5)


def test_dimensions_must_be_the_models_own(http):
    same = http.post("/v1/embeddings", json={"model": "demo-q4_k_m", "input": "x", "dimensions": 256})
    assert same.status_code == 200 and len(same.json()["data"][0]["embedding"]) == 256
    other = http.post("/v1/embeddings", json={"model": "demo-q4_k_m", "input": "x", "dimensions": 64})
    assert other.status_code == 400
    assert "256" in other.json()["error"]["message"] and "64" in other.json()["error"]["message"]


# -- Ollama: /api/embed and /api/embeddings ---------------------------------------------------------------------

def test_ollama_client_embed_and_embeddings(served, http, manager):
    import ollama

    olm = ollama.Client(host=served[0])
    got = olm.embed(model="demo-f16", input=TEXTS[:2])
    vectors = np.array(got.embeddings)
    np.testing.assert_allclose(vectors, unit(raw(http, "demo-f16", TEXTS[:2])), atol=1e-6)
    assert got.prompt_eval_count == sum(manager.call("demo-f16", lambda b, t=t: len(b.tokenize(t))) for t in TEXTS[:2])
    assert got.total_duration >= got.load_duration >= 0
    single = olm.embed(model="demo-f16", input=TEXTS[0])
    np.testing.assert_allclose(single.embeddings[0], vectors[0], atol=1e-6)
    legacy = olm.embeddings(model="demo-f16", prompt=TEXTS[0])  # Ollama's older API: not normalised
    np.testing.assert_allclose(legacy.embedding, raw(http, "demo-f16", [TEXTS[0]])[0], rtol=1e-5, atol=1e-6)
    assert abs(np.linalg.norm(legacy.embedding) - 1) > 1e-3


def test_ollama_embed_counts_tokens_and_times_the_load(http, manager):
    manager.unload("demo-q8_0")
    body = http.post("/api/embed", json={"model": "demo-q8_0", "input": ["def f(x):", "x"]}).json()
    counts = [manager.call("demo-q8_0", lambda b, t=t: len(b.tokenize(t))) for t in ("def f(x):", "x")]
    assert body["prompt_eval_count"] == sum(counts) and body["model"] == "demo-q8_0"
    assert body["total_duration"] >= body["load_duration"] > 0  # it was not loaded
    again = http.post("/api/embed", json={"model": "demo-q8_0", "input": "x"}).json()
    assert again["load_duration"] == 0


def test_ollama_truncates_by_default_and_refuses_when_asked_not_to(http):
    cut = http.post("/api/embed", json={"model": "demo-q4_k_m", "input": LONG})
    assert cut.status_code == 200 and cut.json()["prompt_eval_count"] == DEMO_CONTEXT
    refused = http.post("/api/embed", json={"model": "demo-q4_k_m", "input": LONG, "truncate": False})
    assert refused.status_code == 400 and f"holds {DEMO_CONTEXT}" in refused.json()["error"]  # Ollama's shape


def test_ollama_empty_input_only_loads_the_model(http, manager):
    manager.unload("demo-q8_0")
    body = http.post("/api/embed", json={"model": "demo-q8_0", "input": []})
    assert body.status_code == 200 and body.json()["embeddings"] == [] and manager.is_loaded("demo-q8_0")
    assert http.post("/api/embeddings", json={"model": "demo-q8_0", "prompt": ""}).json() == {"embedding": []}


def test_show_lists_embedding_for_gguf(http):
    assert "embedding" in http.post("/api/show", json={"model": "demo-q4_k_m"}).json()["capabilities"]


# -- the shell -------------------------------------------------------------------------------------------------

def test_shell_embed_command(demo_dir, tmp_path, http):
    shown = cli(["-c", 'embed demo-q4_k_m "def f(x):"'], tmp_path, demo_dir)
    assert shown.returncode == 0, shown.stderr
    expected = raw(http, "demo-q4_k_m", ["def f(x):"])[0]
    assert "256-dimensional" in shown.stdout and f"{np.linalg.norm(expected):.4f}" in shown.stdout
    assert f"{expected[0]:+.4f}" in shown.stdout
    as_json = cli(["--json", "-c", 'embed demo-q4_k_m "def f(x):" "x"'], tmp_path, demo_dir)
    assert as_json.returncode == 0, as_json.stderr
    result = json.loads(as_json.stdout)["result"]
    assert result["type"] == "EmbeddingResult" and result["dim"] == 256 and len(result["items"]) == 2
    first = result["items"][0]
    assert first["text"] == "def f(x):" and first["tokens"] == 6
    np.testing.assert_allclose(first["vector"], expected, rtol=1e-5, atol=1e-6)
    assert first["norm"] == pytest.approx(float(np.linalg.norm(expected)), rel=1e-5)
    missing = cli(["-c", "embed demo-q4_k_m"], tmp_path, demo_dir)
    assert missing.returncode != 0 and "Embed what" in missing.stdout


def test_shell_embeds_with_two_models_side_by_side(demo_dir, tmp_path, http):
    """ "embed X with A and B": each model's vectors, and per text the cosine of B's to A's, as numpy computes it from
    the server's own vectors (a model beside itself: 1)."""
    texts = ["def f(x):", "the cat sat on the mat"]
    line = f'embed "{texts[0]}" "{texts[1]}" with demo-f16 and demo-q4_k_m'
    as_json = cli(["--json", "-c", line], tmp_path, demo_dir)
    assert as_json.returncode == 0, as_json.stdout + as_json.stderr
    result = json.loads(as_json.stdout)["result"]
    assert result["type"] == "EmbeddingsSideBySide"
    assert [r["model"] for r in result["results"]] == ["demo-f16", "demo-q4_k_m"]
    for index, text in enumerate(texts):
        a, b = (raw(http, model, [text])[0] for model in ("demo-f16", "demo-q4_k_m"))
        expected = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
        assert result["cosines"][index][0] == pytest.approx(expected, abs=1e-4)
        assert -1.0 <= result["cosines"][index][0] <= 1.0
    same = json.loads(cli(["--json", "-c", 'embed "x" with demo-q8_0 and demo-q8_0 and demo-f16'], tmp_path,
                          demo_dir).stdout)["result"]
    assert same["cosines"][0][0] == pytest.approx(1.0, abs=1e-5)
    shown = cli(["-c", line], tmp_path, demo_dir)
    assert shown.returncode == 0 and "cosine similarity to demo-f16" in shown.stdout, shown.stdout
