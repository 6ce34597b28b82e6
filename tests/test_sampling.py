"""lqmf.base.sampling: one table of sampling defaults and limits, enforced by GenerationParams and the HTTP schemas."""

from __future__ import annotations

import math
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from lqmf.base import sampling
from lqmf.base.generation import GenerationParams
from lqmf.base.sampling import LIMITS, Limit
from server.http.schemas import (
    NativeChatRequest,
    OllamaOptions,
    OpenAIChatRequest,
    OpenAICompletionRequest,
    SamplingFields,
)

# Where each table entry appears in the request bodies: (model, field name, the body's other required fields).
CHAT = {"messages": [{"role": "user", "content": "hi"}]}
BODY_FIELDS: dict[str, list[tuple[type[BaseModel], str, dict[str, Any]]]] = {
    "max_tokens": [(OpenAIChatRequest, "max_tokens", CHAT), (OpenAIChatRequest, "max_completion_tokens", CHAT),
                   (NativeChatRequest, "max_tokens", {"message": "hi"})],
    "temperature": [(OpenAIChatRequest, "temperature", CHAT), (OllamaOptions, "temperature", {})],
    "top_p": [(OpenAIChatRequest, "top_p", CHAT), (OllamaOptions, "top_p", {})],
    "top_k": [(OpenAIChatRequest, "top_k", CHAT), (OllamaOptions, "top_k", {})],
    "min_p": [(OpenAIChatRequest, "min_p", CHAT), (OllamaOptions, "min_p", {})],
    "repeat_penalty": [(OpenAIChatRequest, "repeat_penalty", CHAT), (OllamaOptions, "repeat_penalty", {})],
    "seed": [(OpenAIChatRequest, "seed", CHAT), (OllamaOptions, "seed", {})],
    "logprobs": [(OpenAIChatRequest, "top_logprobs", CHAT),
                 (OpenAICompletionRequest, "logprobs", {"prompt": "hi"})],
    "num_ctx": [(OllamaOptions, "num_ctx", {})],
    "frequency_penalty": [(OpenAIChatRequest, "frequency_penalty", CHAT)],
    "presence_penalty": [(OpenAIChatRequest, "presence_penalty", CHAT)],
}
GENERATION_FIELDS = [name for name in LIMITS if name in GenerationParams.__dataclass_fields__]


def edges(limit: Limit) -> tuple[list[Any], list[Any]]:
    """Values just inside and just outside each end of `limit`'s range."""
    inside, outside = [], []
    for end, open_, down in ((limit.low, limit.low_open, True), (limit.high, limit.high_open, False)):
        if end is None:
            continue
        step = (lambda v, down=down: v - 1 if down else v + 1) if limit.kind is int else \
            (lambda v, down=down: math.nextafter(v, -math.inf if down else math.inf))
        back = (lambda v, down=down: v + 1 if down else v - 1) if limit.kind is int else \
            (lambda v, down=down: math.nextafter(v, math.inf if down else -math.inf))
        end = limit.kind(end)
        if open_:
            inside.append(back(end))
            outside.append(end)
        else:
            inside.append(end)
            outside.append(step(end))
    return inside, outside


def accepts_http(model: type[BaseModel], field: str, value: Any, rest: dict[str, Any]) -> bool:
    try:
        model.model_validate({**rest, field: value})
    except ValidationError as exc:
        assert any(field in map(str, error["loc"]) for error in exc.errors()), exc
        return False
    return True


def accepts_core(name: str, value: Any) -> bool:
    try:
        GenerationParams(**{name: value})
    except ValueError as exc:
        assert name in str(exc)
        return False
    return True


def test_every_table_entry_reaches_a_body_and_every_generation_knob_is_in_the_table():
    assert set(BODY_FIELDS) == set(LIMITS)
    assert set(sampling.SAMPLERS) <= set(GENERATION_FIELDS)
    assert {"max_tokens", "temperature", "top_p", "top_k", "min_p", "repeat_penalty", "seed", "logprobs",
            "num_ctx"} == set(GENERATION_FIELDS)


@pytest.mark.parametrize("name", list(LIMITS))
def test_each_limit_is_enforced_alike_by_the_core_and_the_http_schemas(name):
    inside, outside = edges(LIMITS[name])
    assert inside and outside
    for value in inside:
        if name in GENERATION_FIELDS:
            assert accepts_core(name, value), (name, value)
        for model, field, rest in BODY_FIELDS[name]:
            assert accepts_http(model, field, value, rest), (model.__name__, field, value)
    for value in outside:
        if name in GENERATION_FIELDS:
            assert not accepts_core(name, value), (name, value)
        for model, field, rest in BODY_FIELDS[name]:
            assert not accepts_http(model, field, value, rest), (model.__name__, field, value)


@pytest.mark.parametrize("name", ["temperature", "top_p", "min_p", "repeat_penalty"])
def test_non_finite_values_are_refused_by_both(name):
    for value in (math.nan, math.inf):
        assert not accepts_core(name, value)
        assert not accepts_http(OpenAIChatRequest, name, value, CHAT)


def test_the_core_names_the_range_it_wants():
    with pytest.raises(ValueError, match=r"top_p must be in \(0, 1\], not 0"):
        GenerationParams(top_p=0)
    with pytest.raises(ValueError, match=r"min_p must be in \[0, 1\), not 1"):
        GenerationParams(min_p=1.0)
    with pytest.raises(ValueError, match=r"top_k must be a whole number"):
        GenerationParams(top_k=2.5)


def test_stop_strings_are_bounded_alike():
    many = tuple(str(i) for i in range(sampling.STOP_MAX + 1))
    with pytest.raises(ValueError, match="stop"):
        GenerationParams(stop=many)
    with pytest.raises(ValidationError):
        OpenAIChatRequest.model_validate({**CHAT, "stop": list(many)})
    long = "x" * (sampling.STOP_LENGTH_MAX + 1)
    with pytest.raises(ValueError, match="stop"):
        GenerationParams(stop=(long,))
    with pytest.raises(ValidationError):
        OpenAIChatRequest.model_validate({**CHAT, "stop": long})
    GenerationParams(stop=many[:-1])
    assert OpenAIChatRequest.model_validate({**CHAT, "stop": list(many[:-1])}).params().stop == many[:-1]


def test_generation_params_defaults_are_the_tables():
    params = GenerationParams()
    for name in GENERATION_FIELDS:
        assert getattr(params, name) == sampling.DEFAULTS[name], name


def test_profiles_are_valid_and_shape_the_bodies_defaults():
    for profile in (sampling.CHAT, sampling.GREEDY, sampling.OPENAI, sampling.OPENAI_COMPLETION, sampling.OLLAMA):
        assert not sampling.problems(profile), profile
        params = GenerationParams(**profile)
        assert all(getattr(params, k) == v for k, v in profile.items())
    assert GenerationParams(**sampling.GREEDY).greedy
    # Ollama's documented defaults, unless the options say otherwise.
    ollama = OllamaOptions().params()
    assert (ollama.temperature, ollama.top_k, ollama.top_p, ollama.min_p) == (0.8, 40, 0.9, 0.0)
    assert OllamaOptions(num_predict=7, temperature=0.1).params().max_tokens == 7
    assert OllamaOptions(num_predict=-1).params().max_tokens == sampling.OLLAMA["max_tokens"]
    # A body's own values win over the profile it starts from.
    body = SamplingFields(temperature=0.3)
    chat = body.params(**sampling.CHAT)
    assert (chat.temperature, chat.max_tokens) == (0.3, sampling.CHAT["max_tokens"])


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from lqmf.base.settings import Settings
    from server.http.app import create_app

    home = tmp_path_factory.mktemp("sampling-home")
    (home / "models").mkdir()
    application = create_app(Settings(home=home, models_dir_override=home / "models"))
    yield application
    application.state.library.close()


def test_openapi_publishes_the_tables_bounds(app):
    schemas = app.openapi()["components"]["schemas"]
    keywords = {"ge": "minimum", "gt": "exclusiveMinimum", "le": "maximum", "lt": "exclusiveMaximum"}
    published = {"OpenAIChatRequest": ["max_tokens", "temperature", "top_p", "top_k", "min_p", "repeat_penalty",
                                       "seed", "frequency_penalty", "presence_penalty"],
                 "OllamaOptions": ["temperature", "top_p", "top_k", "min_p", "repeat_penalty", "seed", "num_ctx"]}
    for model, names in published.items():
        for name in names:
            schema = schemas[model]["properties"][name]
            branch = next((s for s in schema.get("anyOf", [schema]) if s.get("type") in ("number", "integer")))
            want = {keywords[k]: v for k, v in LIMITS[name].bounds().items()}
            assert {k: branch[k] for k in want} == want, (model, name)
            assert not (set(keywords.values()) - set(want)) & set(branch), (model, name)  # no other bound
    logprobs = schemas["OpenAIChatRequest"]["properties"]["top_logprobs"]["anyOf"][0]
    assert (logprobs["minimum"], logprobs["maximum"]) == (LIMITS["logprobs"].low, LIMITS["logprobs"].high)


def test_a_real_request_meets_the_same_limits(app):
    from fastapi.testclient import TestClient

    client = TestClient(app, base_url="http://localhost")
    chat = {"model": "nope", "messages": CHAT["messages"]}
    for name in ("temperature", "top_p", "repeat_penalty", "max_tokens"):
        inside, outside = edges(LIMITS[name])
        refused = client.post("/v1/chat/completions", json={**chat, name: outside[-1]})
        assert refused.status_code == 422 and name in refused.json()["error"]["message"], refused.text
        # Past validation, the request fails only on the missing model.
        assert client.post("/v1/chat/completions", json={**chat, name: inside[-1]}).status_code == 404
    refused = client.post("/api/generate", json={"model": "nope", "prompt": "x", "options": {"min_p": 1}})
    assert refused.status_code == 422, refused.text
