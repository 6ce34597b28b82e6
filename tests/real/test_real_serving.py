"""The real models served: SmolLM2 answers through its own chat template on every engine, calls tools and keeps
to a schema; MiniLM's vectors equal an independent mean pooling of its token states."""

from __future__ import annotations

import json

import httpx
import jsonschema_rs
import numpy as np
import pytest

from tests.test_server import start_server

pytestmark = pytest.mark.real

CAPITAL = [{"role": "user", "content": "What is the capital of France?"}]
WEATHER = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20},
                                            "days": {"type": "integer", "minimum": 1, "maximum": 14}},
           "required": ["city", "days"]}
SENTENCES = ["A man is eating food.", "A man is riding a horse.", "The new movie is awesome.",
             "Quantized models run on small machines.", "Paris is the capital of France."]


@pytest.fixture(scope="module")
def served(real_models, tmp_path_factory):
    server, manager, url = start_server(real_models.models_dir, tmp_path_factory.mktemp("real-serving-home"))
    yield url, manager
    server.stop()
    manager.close()


@pytest.fixture
def http(served):
    with httpx.Client(base_url=served[0], timeout=300) as client:
        yield client


def chat(http, model: str, messages: list[dict], **extra) -> dict:
    body = {"model": model, "messages": messages, "temperature": 0, "max_tokens": 24, **extra}
    response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]


def test_smollm2_answers_through_its_own_template(http):
    answer = chat(http, "smol-hf", CAPITAL)["message"]["content"]
    assert "Paris" in answer, answer


def test_smollm2_gguf_prompt_is_its_own_template(http, smol_gguf):
    """The shipped Q4_1 file: the prompt LQMF counts is the file's own Jinja template rendered and tokenized."""
    import jinja2
    from llama_cpp import Llama

    vocab = Llama(str(smol_gguf), vocab_only=True, verbose=False)
    rendered = jinja2.Environment().from_string(vocab.metadata["tokenizer.chat_template"]).render(
        messages=CAPITAL, add_generation_prompt=True)
    assert "<|im_start|>assistant" in rendered
    expected = len(vocab.tokenize(rendered.encode(), add_bos=False, special=True))
    response = http.post("/v1/chat/completions", json={"model": "smol-q4_1", "messages": CAPITAL,
                                                        "temperature": 0, "max_tokens": 8})
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["prompt_tokens"] == expected


def test_smollm2_forced_tool_call_is_valid_and_named(http):
    tools = [{"type": "function", "function": {"name": "weather", "description": "the forecast for a city",
                                               "parameters": WEATHER}}]
    ask = [{"role": "user", "content": "What will the weather be in Paris for the next 3 days?"}]
    choice = chat(http, "smol-q4_1", ask, tools=tools, max_tokens=48,
                  tool_choice={"type": "function", "function": {"name": "weather"}})
    assert choice["finish_reason"] == "tool_calls", choice
    arguments = json.loads(choice["message"]["tool_calls"][0]["function"]["arguments"])
    jsonschema_rs.validate(WEATHER, arguments)
    assert "paris" in arguments["city"].lower()


def test_smollm2_json_schema_reply_validates(http):
    schema = {"type": "object", "properties": {"capital": {"type": "string", "maxLength": 20}},
              "required": ["capital"], "additionalProperties": False}
    choice = chat(http, "smol-q4_1", CAPITAL, max_tokens=32,
                  response_format={"type": "json_schema", "json_schema": {"name": "capital", "schema": schema}})
    reply = json.loads(choice["message"]["content"])
    jsonschema_rs.validate(schema, reply)
    assert "Paris" in reply["capital"]


def _reference_minilm(folder, texts: list[str]) -> np.ndarray:
    """sentence-transformers' recipe by hand: the encoder's token states, mean over the mask, L2-normalised."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder, dtype=torch.float32).eval()
    batch = tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        states = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    pooled = (states * mask).sum(1) / mask.sum(1)
    return torch.nn.functional.normalize(pooled, dim=-1).numpy().astype(np.float64)


def test_minilm_embeddings_equal_mean_pooling_of_the_encoder(http, minilm_hf):
    response = http.post("/v1/embeddings", json={"model": "minilm-hf", "input": SENTENCES})
    assert response.status_code == 200, response.text
    served = np.array([d["embedding"] for d in response.json()["data"]], dtype=np.float64)
    reference = _reference_minilm(minilm_hf, SENTENCES)
    assert served.shape == (len(SENTENCES), 384)
    cosines = (served * reference).sum(1) / np.linalg.norm(served, axis=1)
    assert cosines.min() > 0.9999, cosines
    # A property of the real model, not of the arithmetic: paraphrase-free sentences are not all alike.
    similarity = reference @ reference.T
    assert similarity[0, 1] > similarity[0, 2]  # two sentences about a man doing something vs a movie
