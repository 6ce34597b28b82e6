"""Issue 13's server hardening, each case through the real server on 127.0.0.1 with the demo models.

The reproductions come first (each was a 500 or worse before); then errors inside generations,
cancellation of non-stream requests, the memory reservation, faulty model files, and SIGTERM.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from lqmf.base.settings import Settings
from server.runtime.backends.gguf import GGUFBackend
from server.runtime.manager import ModelManager
from tests.conftest import REPO
from tests.test_server import start_server

CHAT = [{"role": "user", "content": "What does shuffle do?"}]
# The fault-injection tests below patch the in-process GGUF loop (GGUFBackend._token_stream / load), so
# their servers use that engine; the server engine's own failures (a child killed mid-stream, a
# disconnect) are tested against real children in test_engine.py.
IN_PROCESS = {"gguf_engine": "in-process"}


@pytest.fixture(scope="module")
def served(demo_dir, tmp_path_factory):
    home = tmp_path_factory.mktemp("hardening-home")
    server, manager, url = start_server(demo_dir, home, **IN_PROCESS)
    yield url, manager, home
    server.stop()
    manager.close()


def metric(http: httpx.Client, name: str, **labels: str) -> float:
    """The value of one Prometheus sample (0 when absent)."""
    want = {f'{k}="{v}"' for k, v in labels.items()}
    for line in http.get("/metrics").text.splitlines():
        if line.startswith(name + "{"):
            inside = set(line[line.index("{") + 1: line.index("}")].split(","))
            if want <= inside:
                return float(line.rsplit(" ", 1)[1])
    return 0.0


# -- the reproductions from the issue --------------------------------------------------------------------------

def test_keep_alive_of_the_wrong_type_is_a_422(http):
    response = http.post("/models/demo-q4_k_m/load", json={"keep_alive": {}})
    assert response.status_code == 422 and "keep_alive" in response.json()["error"]["message"]


@pytest.mark.parametrize("keep_alive", ["inf", "Infinity", 1e300, "999999h", "5 minutes"])
def test_unbounded_keep_alive_is_refused_and_ps_keeps_working(http, keep_alive):
    body = {"model": "demo-q4_k_m", "prompt": "hi", "stream": False, "options": {"num_predict": 2},
            "keep_alive": keep_alive}
    response = http.post("/api/generate", json=body)
    assert response.status_code == 422, response.text
    assert "keep_alive" in response.json()["error"]
    assert http.get("/api/ps").status_code == 200


def test_long_keep_alive_shows_a_date_in_ps(http):
    body = {"model": "demo-q8_0", "prompt": "hi", "stream": False, "options": {"num_predict": 2},
            "keep_alive": "87600h"}
    assert http.post("/api/generate", json=body).status_code == 200
    ps = http.get("/api/ps")
    assert ps.status_code == 200
    expires = {m["name"]: m["expires_at"] for m in ps.json()["models"]}["demo-q8_0"]
    assert expires[:4].isdigit() and int(expires[:4]) >= 2035
    http.post("/models/demo-q8_0/unload")


@pytest.mark.parametrize("model", ["demo-bnb-nf4", "demo-q4_k_m"])
def test_tiny_temperature_decodes_greedily(http, model):
    body = {"model": model, "messages": CHAT, "max_tokens": 6}
    tiny = http.post("/v1/chat/completions", json={**body, "temperature": 1e-300})
    assert tiny.status_code == 200, tiny.text
    greedy = http.post("/v1/chat/completions", json={**body, "temperature": 0})
    assert tiny.json()["choices"][0]["message"]["content"] == greedy.json()["choices"][0]["message"]["content"]


def test_huge_ids_and_seeds_are_bounded(http):
    assert http.get("/experiments/627687485095621820416").status_code == 422
    assert http.get("/experiments/0").status_code == 422
    assert http.get("/experiments/12345").status_code == 404
    for seed in (2**53, -(2**53), -1, 2**32 + 7):
        body = {"model": "demo-q4_k_m", "prompt": "import ", "max_tokens": 3, "seed": seed, "temperature": 0.9}
        assert http.post("/v1/completions", json=body).status_code == 200, seed
    too_big = http.post("/v1/completions", json={"model": "demo-q4_k_m", "prompt": "x", "seed": 2**64})
    assert too_big.status_code == 422 and "seed" in too_big.json()["error"]["message"]
    too_big = http.post("/v1/completions", json={"model": "demo-q4_k_m", "prompt": "x", "seed": 2**53 + 1})
    assert too_big.status_code == 422 and "seed" in too_big.json()["error"]["message"]


def test_nan_and_infinity_are_refused(http):
    for raw in (b'{"model": "demo-q4_k_m", "prompt": "x", "temperature": NaN}',
                b'{"model": "demo-q4_k_m", "prompt": "x", "top_p": Infinity}'):
        response = http.post("/v1/completions", content=raw, headers={"content-type": "application/json"})
        assert response.status_code == 422, response.text


def test_ollama_routes_are_counted_by_route_in_metrics(http):
    before = metric(http, "lqmf_requests_total", route="/api/tags")
    http.post("/api/show", json={"model": "demo-q4_k_m"})
    http.get("/api/tags")
    assert metric(http, "lqmf_requests_total", route="/api/tags") == before + 1
    assert metric(http, "lqmf_requests_total", route="/api/show", status="200") >= 1


def test_openapi_publishes_the_bounds(http):
    spec = http.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    sampler = schemas["OpenAIChatRequest"]["properties"]
    seed = next(s for s in sampler["seed"]["anyOf"] if s.get("type") == "integer")
    assert seed["maximum"] == 2**53 and seed["minimum"] == -(2**53)
    assert "pattern" in sampler["model"]
    assert ["message"] in [branch["required"] for branch in schemas["NativeChatRequest"]["anyOf"]]
    load = spec["paths"]["/models/{name}/load"]["post"]
    assert load["parameters"][0]["schema"]["pattern"]
    assert load["responses"]["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    ollama = spec["paths"]["/api/chat"]["post"]["responses"]["404"]["content"]["application/json"]["schema"]
    assert ollama["$ref"].endswith("/OllamaErrorBody")


# -- errors inside the core --------------------------------------------------------------------------------------

@pytest.fixture
def faulty_gguf(monkeypatch):
    """GGUF generations fail after `after` tokens with `error` (a bug inside the core, simulated)."""
    original = GGUFBackend._token_stream
    state = {"after": 0, "error": RuntimeError("secret internal detail")}

    def failing(self, prompt_ids, params):
        for index, token in enumerate(original(self, prompt_ids, params)):
            if index >= state["after"]:
                raise state["error"]
            yield token

    monkeypatch.setattr(GGUFBackend, "_token_stream", failing)
    return state


def _log_text(home: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in (home / "logs").glob("lqmf.log*"))


def test_an_unexpected_error_is_a_generic_500_with_an_id_in_the_log(http, served, faulty_gguf):
    from lqmf.base.log import configure_logging

    configure_logging(Settings(home=served[2]))
    response = http.post("/v1/chat/completions", json={"model": "demo-q4_k_m", "messages": CHAT, "max_tokens": 4})
    assert response.status_code == 500
    error = response.json()["error"]
    assert "secret internal detail" not in response.text and error["error_id"] in error["message"]
    log = _log_text(served[2])
    assert error["error_id"] in log and "Traceback" in log and "secret internal detail" in log


def test_a_value_error_from_a_backend_is_not_blamed_on_the_client(http, faulty_gguf):
    faulty_gguf["error"] = ValueError("bad shape")
    response = http.post("/models/demo-q4_k_m/chat", json={"message": "hi", "max_tokens": 4})
    assert response.status_code == 500 and "bad shape" not in response.text


@pytest.mark.parametrize("path,body,kind", [
    ("/v1/chat/completions", {"messages": CHAT, "stream": True}, "sse"),
    ("/models/demo-q4_k_m/chat", {"message": "hi", "stream": True}, "sse"),
    ("/api/chat", {"messages": CHAT, "stream": True}, "ndjson"),
    ("/api/generate", {"prompt": "hi"}, "ndjson"),
])
def test_an_error_after_the_first_chunk_ends_the_stream_with_an_error_event(http, served, faulty_gguf,
                                                                          path, body, kind):
    faulty_gguf["after"] = 3
    full = {"model": "demo-q4_k_m", "max_tokens": 40, "temperature": 0, "ignore_eos": True,
            "options": {"num_predict": 40, "temperature": 0}, **body}
    before = metric(http, "lqmf_generations_total", model="demo-q4_k_m", finish_reason="error")
    with http.stream("POST", path, json=full) as response:
        assert response.status_code == 200
        lines = [line for line in response.iter_lines() if line.strip()]
    if kind == "sse":
        events = [line[6:] for line in lines if line.startswith("data: ")]
        assert "[DONE]" not in events
        last = json.loads(events[-1])
        assert last["error"]["code"] == 500 and last["error"]["error_id"]
        assert len(events) >= 2  # something was streamed before the error
    else:
        last = json.loads(lines[-1])
        assert isinstance(last["error"], str) and "internal error" in last["error"]
        assert len(lines) >= 2
    assert metric(http, "lqmf_generations_total", model="demo-q4_k_m", finish_reason="error") == before + 1
    db = sqlite3.connect(served[2] / "memory" / "lqmf.db")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        rows = db.execute("SELECT COUNT(*) FROM request_stats WHERE finish_reason = 'error'").fetchone()[0]
        if rows >= 1:
            break
        time.sleep(0.05)
    assert rows >= 1


# -- cancellation ------------------------------------------------------------------------------------------------

@pytest.fixture
def slow_gguf(monkeypatch):
    """GGUF decoding slowed to about 100 tokens/s and blind to end-of-text (Ollama's API cannot ask for
    that), so a generation is long enough to walk away from."""
    original = GGUFBackend._token_stream

    def slow(self, prompt_ids, params):
        for token in original(self, prompt_ids, dataclasses.replace(params, ignore_eos=True)):
            time.sleep(0.01)
            yield token

    monkeypatch.setattr(GGUFBackend, "_token_stream", slow)


@pytest.mark.parametrize("path,body", [
    ("/v1/completions", {"prompt": "import ", "max_tokens": 1500}),
    ("/models/demo-q4_k_m/chat", {"message": "import ", "max_tokens": 1500}),
])
def test_a_non_stream_client_that_leaves_cancels_its_generation(served, http, slow_gguf, path, body):
    url, manager, _ = served
    http.post("/models/demo-q4_k_m/load")
    before = metric(http, "lqmf_generations_total", model="demo-q4_k_m", finish_reason="cancelled")
    full = {"model": "demo-q4_k_m", "temperature": 0, "ignore_eos": True, **body}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{url}{path}", json=full, timeout=httpx.Timeout(60, read=1.0))
    model = manager.get("demo-q4_k_m")
    deadline = time.monotonic() + 3  # the whole generation would take about 15 s
    while model.busy and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not model.busy
    deadline = time.monotonic() + 3
    while metric(http, "lqmf_generations_total", model="demo-q4_k_m", finish_reason="cancelled") < before + 1:
        assert time.monotonic() < deadline, "the cancellation was not recorded"
        time.sleep(0.05)


def test_concurrent_loads_cannot_overshoot_the_memory_budget(demo_dir, tmp_path):
    from server.runtime.budget import estimate_bytes

    probe = ModelManager(Settings(home=tmp_path, models_dir_override=demo_dir))
    try:
        needs = {n: estimate_bytes(probe.record(n), 4096) for n in ("demo-q8_0", "demo-f16")}
    finally:
        probe.close()
    budget_mb = int((max(needs.values()) * 1.5) / 2**20)  # room for either, never both
    manager = ModelManager(Settings(home=tmp_path, models_dir_override=demo_dir, max_memory_mb=budget_mb,
                                    **IN_PROCESS))
    original = GGUFBackend.load
    gate = threading.Barrier(2)

    def slow_load(self):
        original(self)
        time.sleep(0.3)  # both loads are in flight together

    errors: list[BaseException] = []

    def load(name):
        gate.wait()
        try:
            manager.load(name)
        except BaseException as exc:
            errors.append(exc)

    GGUFBackend.load = slow_load
    try:
        threads = [threading.Thread(target=load, args=(n,)) for n in needs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        GGUFBackend.load = original
        loaded = [m["name"] for m in manager.loaded()]
        manager.close()
    assert len(loaded) == 1 and len(errors) == 1
    assert "loading" in str(errors[0]) and "budget" in str(errors[0])


# -- faulty files in the models folder ------------------------------------------------------------------------------

def test_broken_model_files_are_listed_unusable_and_others_keep_serving(demo_dir, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    os.link(demo_dir / "demo-q4_k_m.gguf", models / "demo-q4_k_m.gguf")
    data = (demo_dir / "demo-f16.gguf").read_bytes()
    (models / "truncated.gguf").write_bytes(data[:1000])  # the header itself is cut
    (models / "cut-tensors.gguf").write_bytes(data[: int(len(data) * 0.8)])  # header fine, weights missing
    (models / "broken-config").mkdir()
    (models / "broken-config" / "config.json").write_text("{ not json")
    (models / "broken-config" / "model.safetensors").write_bytes(b"\0" * 64)
    server, manager, url = start_server(models, tmp_path / "home")
    try:
        with httpx.Client(base_url=url, timeout=60) as http:
            listed = {m["name"]: m for m in http.get("/models/available").json()["models"]}
            for name in ("truncated", "broken-config"):
                assert listed[name]["usable"] is False and listed[name]["reason"], listed[name]
            assert {"truncated", "broken-config"}.isdisjoint(m["id"] for m in http.get("/v1/models").json()["data"])
            refused = http.post("/models/truncated/load")
            assert refused.status_code == 422 and listed["truncated"]["reason"] in refused.json()["error"]["message"]
            cut = http.post("/v1/chat/completions", json={"model": "cut-tensors", "messages": CHAT})
            assert 400 <= cut.status_code < 500 or cut.status_code == 503, cut.text
            assert "cut-tensors" in cut.json()["error"]["message"]
            ok = http.post("/v1/chat/completions", json={"model": "demo-q4_k_m", "messages": CHAT, "max_tokens": 5})
            assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] > 0
            assert [m["name"] for m in http.get("/models").json()["models"]] == ["demo-q4_k_m"]
    finally:
        server.stop()
        manager.close()


# -- SIGTERM ---------------------------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sigterm_ends_streams_with_an_error_event_and_frees_the_port(demo_dir, tmp_path):
    port = _free_port()
    env = {**os.environ, "LQMF_HOME": str(tmp_path), "LQMF_MODELS_DIR": str(demo_dir), "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "server", "--port", str(port)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "the server did not start"
            time.sleep(0.2)
        # A stream that would run for many seconds, and a second request queued behind it on the same model.
        body = {"model": "demo-hf", "prompt": "import ", "max_tokens": 4000, "temperature": 0, "ignore_eos": True,
                "stream": True}
        outcomes: dict[str, object] = {}
        started = threading.Barrier(2)

        def stream():
            lines: list[str] = []
            with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=30) as response:
                for line in response.iter_lines():
                    if line.strip():
                        lines.append(line)
                        if len(lines) == 3:
                            started.wait()
            outcomes["sse"] = lines

        def queued():
            response = httpx.post(f"{url}/api/generate", timeout=30, json={
                "model": "demo-hf", "prompt": "import ", "options": {"num_predict": 100}})
            outcomes["queued"] = response

        threads = [threading.Thread(target=stream), threading.Thread(target=queued)]
        threads[0].start()
        started.wait(timeout=60)
        threads[1].start()
        deadline = time.monotonic() + 10
        while httpx.get(f"{url}/models").json()["models"][0]["queue_depth"] < 2:
            assert time.monotonic() < deadline, "the second request never queued"
            time.sleep(0.05)
        stopped_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
        took = time.monotonic() - stopped_at
        for t in threads:
            t.join(timeout=10)
        assert took < 5, f"the server took {took:.1f}s to stop"
        with socket.socket() as s:  # nothing listens any more: a new server can bind it (as uvicorn does)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
            s.listen()
        sse = json.loads(outcomes["sse"][-1][6:])  # type: ignore[index]
        assert "shutting down" in sse["error"]["message"] and sse["error"]["code"] == 503
        waiting = outcomes["queued"]
        assert waiting.status_code == 503 and "shutting down" in waiting.json()["error"]  # type: ignore[attr-defined]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    db = sqlite3.connect(tmp_path / "memory" / "lqmf.db")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    reasons = [r[0] for r in db.execute("SELECT finish_reason FROM request_stats")]
    assert reasons == ["error"], reasons  # the stream that was cut; the queued request never ran


def test_stopping_the_server_ends_an_ndjson_stream_with_ollama_s_error(demo_dir, tmp_path, slow_gguf):
    server, manager, url = start_server(demo_dir, tmp_path, **IN_PROCESS)
    try:
        lines: list[str] = []
        with httpx.stream("POST", f"{url}/api/chat", timeout=30, json={
                "model": "demo-q4_k_m", "messages": CHAT, "options": {"num_predict": 3000, "temperature": 0}}) as r:
            for line in r.iter_lines():
                if line.strip():
                    lines.append(line)
                if len(lines) == 3:
                    threading.Thread(target=server.stop).start()
        assert "shutting down" in json.loads(lines[-1])["error"]
        assert len(lines) < 100  # it ended at once, not after the whole generation
    finally:
        server.stop()
        manager.close()


def test_gguf_context_is_the_one_asked_for_not_llama_cpp_s_padded_one(demo_dir, tmp_path):
    """Found by the fuzzer: llama.cpp pads n_ctx to 256 while llama-cpp-python's buffer keeps 128, so a
    130-token prompt passed the context check and then broke the buffer (a 500)."""
    from lqmf.base.errors import ContextOverflow
    from lqmf.base.generation import GenerationParams

    manager = ModelManager(Settings(home=tmp_path, models_dir_override=demo_dir, context_length=128))
    try:
        backend = manager.load("demo-q4_k_m").backend
        assert backend.context_length == 128
        ids = backend.tokenize("def f(x): return x " * 40)
        params = GenerationParams(max_tokens=300, temperature=0, ignore_eos=True)
        with pytest.raises(ContextOverflow, match="130 tokens"):
            manager.generate("demo-q4_k_m", ids[:130], params)
        done = manager.generate("demo-q4_k_m", ids[:120], params)
        assert done.finish_reason == "length" and done.completion_tokens == 8
    finally:
        manager.close()
