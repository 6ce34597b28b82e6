"""The real API server on 127.0.0.1 with the demo models, driven by real clients."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

from lqmf.api import Library
from lqmf.base.generation import GenerationParams
from lqmf.base.settings import Settings
from server.http.runner import BackgroundServer, ServerStartError
from server.http.security import InsecureBind
from server.runtime.manager import ModelManager
from tests.conftest import REPO

CHAT = [{"role": "user", "content": "What does shuffle do?"}]


def start_server(models, home, **overrides):
    settings = Settings(home=home, models_dir_override=models, port=0, **overrides)
    manager = ModelManager(settings)
    server = BackgroundServer(settings, Library(settings, manager))
    status = server.start()
    return server, manager, status.url


@pytest.fixture(scope="module")
def served(demo_dir, tmp_path_factory):
    server, manager, url = start_server(demo_dir, tmp_path_factory.mktemp("server-home"))
    yield url, manager
    server.stop()
    manager.close()


@pytest.fixture(scope="module")
def url(served):
    return served[0]


@pytest.fixture
def http(url):
    with httpx.Client(base_url=url, timeout=120) as client:
        yield client


# -- the brief's endpoints ------------------------------------------------------------------------

def test_status_docs_and_models(http):
    status = http.get("/").json()
    assert status["status"] == "ok" and "loaded_models" in status and status["uptime_s"] >= 0
    docs = http.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    available = http.get("/models/available").json()["models"]
    names = {m["name"]: m for m in available}
    assert {"demo-f16", "demo-q4_k_m", "demo-gptq-4bit", "demo-bnb-nf4", "demo-hf"} <= set(names)
    assert all(m["usable"] for m in available)
    assert names["demo-q4_k_m"]["format"] == "gguf" and names["demo-bnb-nf4"]["bits"] == 4


def test_load_chat_unload(http):
    loaded = http.post("/models/demo-q8_0/load")
    assert loaded.status_code == 200 and loaded.json()["model"]["name"] == "demo-q8_0"
    models = {m["name"]: m for m in http.get("/models").json()["models"]}
    info = models["demo-q8_0"]
    assert info["format"] == "gguf" and info["bits"] == 8 and info["memory_bytes"] > 0
    assert info["load_time_s"] >= 0 and "queue_depth" in info and "last_used" in info
    reply = http.post("/models/demo-q8_0/chat", json={"message": "What does shuffle do?", "temperature": 0,
                                                       "max_tokens": 30}).json()
    assert reply["response"].strip() and reply["model_name"] == "demo-q8_0"
    assert 0 < reply["tokens_generated"] <= 30 and reply["time_taken"] > 0 and reply["prompt_tokens"] > 5
    assert http.post("/models/demo-q8_0/unload").json()["status"] == "unloaded"
    again = http.post("/models/demo-q8_0/unload")
    assert again.status_code == 404 and "not loaded" in again.json()["error"]["message"]


def test_native_chat_streams_sse(http):
    body = {"message": "What does shuffle do?", "temperature": 0, "max_tokens": 30}
    whole = http.post("/models/demo-q4_k_m/chat", json=body).json()
    with http.stream("POST", "/models/demo-q4_k_m/chat", json={**body, "stream": True}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {")]
    text = "".join(e.get("delta", "") for e in events)
    final = events[-1]
    assert text == whole["response"] and final["done"] and final["tokens_generated"] == whole["tokens_generated"]


# -- OpenAI-compatible, through the official client ---------------------------------------------------

@pytest.fixture
def oai(url):
    from openai import OpenAI

    return OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)


def test_openai_models_chat_and_stream(oai):
    ids = {m.id for m in oai.models.list()}
    assert {"demo-q4_k_m", "demo-hf"} <= ids
    done = oai.chat.completions.create(model="demo-q4_k_m", messages=CHAT, temperature=0, max_tokens=30)
    assert done.choices[0].message.content.strip() and done.choices[0].finish_reason in {"stop", "length"}
    assert done.usage.completion_tokens > 0
    assert done.usage.total_tokens == done.usage.prompt_tokens + done.usage.completion_tokens
    stream = oai.chat.completions.create(model="demo-q4_k_m", messages=CHAT, temperature=0, max_tokens=30,
                                         stream=True, stream_options={"include_usage": True})
    parts, reasons, usage = [], [], None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            parts.append(choice.delta.content or "")
            reasons.append(choice.finish_reason)
    assert "".join(parts) == done.choices[0].message.content
    assert reasons[-1] == done.choices[0].finish_reason and usage.completion_tokens == done.usage.completion_tokens


def test_openai_completions_and_embeddings(oai):
    completion = oai.completions.create(model="demo-q8_0", prompt="import ", max_tokens=12, temperature=0)
    assert completion.choices[0].text and completion.usage.completion_tokens > 0
    emb = oai.embeddings.create(model="demo-hf", input=["def f(x):", "class A:"])
    assert len(emb.data) == 2 and len(emb.data[0].embedding) == 256
    assert emb.usage.prompt_tokens > 0
    gguf = oai.embeddings.create(model="demo-q4_k_m", input="x")  # GGUF embeds too (tests/test_embeddings.py)
    assert len(gguf.data[0].embedding) == 256


def test_openai_unknown_model_is_a_404(oai):
    from openai import NotFoundError

    with pytest.raises(NotFoundError, match="demo-q4_k_m"):  # the hint names the close match
        oai.chat.completions.create(model="demo-q4-k-m", messages=CHAT)


# -- Ollama-compatible, through the official client ---------------------------------------------------

@pytest.fixture
def olm(url):
    import ollama

    return ollama.Client(host=url)


def test_ollama_list_ps_chat_generate(olm):
    names = {m.model for m in olm.list().models}
    assert {"demo-q4_k_m", "demo-f16"} <= names
    parts = [p.message.content for p in olm.chat(model="demo-q4_k_m", messages=CHAT, stream=True,
                                                  options={"temperature": 0, "num_predict": 20})]
    assert "".join(parts).strip()
    final = None
    pieces = []
    for part in olm.generate(model="demo-f16", prompt="What does shuffle do?", stream=True,
                             options={"temperature": 0, "num_predict": 20}):
        pieces.append(part.response)
        final = part
    assert final.done and final.eval_count > 0 and final.prompt_eval_count > 0
    assert final.total_duration >= final.eval_duration > 0 and final.load_duration >= 0
    running = {m.model: m for m in olm.ps().models}
    assert "demo-f16" in running and running["demo-f16"].size > 0
    shown = olm.show("demo-q4_k_m")
    assert "im_start" in shown.template and shown.details.quantization_level == "Q4_K_M"


def test_ollama_keep_alive_zero_unloads(olm, served):
    _, manager = served
    olm.generate(model="demo-q8_0", prompt="hi", options={"num_predict": 3}, keep_alive=-1)
    assert manager.is_loaded("demo-q8_0")
    olm.generate(model="demo-q8_0", prompt="", keep_alive=0)
    assert not manager.is_loaded("demo-q8_0")
    olm.generate(model="demo-q8_0", prompt="hi", options={"num_predict": 3}, keep_alive="1s")
    deadline = time.monotonic() + 5
    while manager.is_loaded("demo-q8_0") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not manager.is_loaded("demo-q8_0")


def test_ollama_errors_use_its_format(http):
    response = http.post("/api/chat", json={"model": "nope", "messages": CHAT, "stream": False})
    assert response.status_code == 404 and isinstance(response.json()["error"], str)


# -- ops -------------------------------------------------------------------------------------------------

def test_health_metrics_tokenize(http):
    health = http.get("/health").json()
    assert health["status"] == "ok" and health["gguf"]["engine"] in ("llama-server", "in-process")
    assert health["gguf"]["reason"]
    tokens = http.post("/tokenize", json={"model": "demo-q4_k_m", "text": "def f(x):"}).json()
    assert tokens["count"] == len(tokens["tokens"]) > 1
    text = http.post("/detokenize", json={"model": "demo-q4_k_m", "tokens": tokens["tokens"]}).json()["text"]
    assert text.endswith("def f(x):")
    bad = http.post("/detokenize", json={"model": "demo-q4_k_m", "tokens": [10**9]})
    assert bad.status_code == 422
    http.post("/models/demo-q4_k_m/chat", json={"message": "hi", "max_tokens": 5})
    metrics = http.get("/metrics").text
    assert 'lqmf_tokens_total{direction="out",model="demo-q4_k_m"}' in metrics
    assert "lqmf_request_seconds_bucket" in metrics and 'route="/models/{name}/chat"' in metrics
    assert "lqmf_loaded_models" in metrics and 'lqmf_queue_depth{model="demo-q4_k_m"}' in metrics
    assert "lqmf_time_to_first_token_seconds_bucket" in metrics and "lqmf_process_resident_bytes" in metrics
    assert 'lqmf_model_loads_total{model="demo-q4_k_m"}' in metrics


def test_compare_and_batch(http):
    result = http.post("/compare", json={"models": ["demo-q4_k_m", "demo-f16"], "prompt": "What does shuffle do?",
                                         "max_tokens": 16, "temperature": 0}).json()
    rows = {r["model"]: r for r in result["results"]}
    for row in rows.values():
        assert row["response"].strip() and row["latency_s"] > 0 and row["tokens_per_second"] > 0
        assert row["usage"]["completion_tokens"] > 0
    assert result["summary"]["fastest"] in rows
    mixed = http.post("/compare", json={"models": ["demo-q4_k_m", "nope"], "prompt": "hi", "max_tokens": 4}).json()
    errors = [r for r in mixed["results"] if "error" in r]
    assert len(errors) == 1 and errors[0]["status"] == 404
    batch = http.post("/batch", json={"items": [
        {"model": "demo-q4_k_m", "prompt": "hi", "max_tokens": 4},
        {"model": "demo-f16", "prompt": "hello", "max_tokens": 4},
        {"model": "nope", "prompt": "hi", "max_tokens": 4},
    ]}).json()
    assert [r["index"] for r in batch["results"]] == [0, 1, 2] and batch["errors"] == 1
    assert batch["results"][2]["status"] == 404 and batch["results"][0]["usage"]["completion_tokens"] > 0
    # An item the schema refuses (no prompt) refuses the whole batch, before anything runs.
    refused = http.post("/batch", json={"items": [{"model": "demo-q4_k_m", "prompt": "hi"}, {"model": "demo-f16"}]})
    assert refused.status_code == 422 and "items.1" in refused.json()["error"]["message"]


# -- errors: never a 500 ------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "method,path,body,status,fragment",
    [
        ("POST", "/models/nope/chat", {"message": "x"}, 404, "no model named"),
        ("POST", "/models/demo-q4_k_m/chat", {"message": "x", "temperature": -1}, 422, "temperature"),
        ("POST", "/models/demo-q4_k_m/chat", {"message": "x", "max_tokens": 0}, 422, "max_tokens"),
        ("POST", "/models/demo-q4_k_m/chat", {}, 422, "message"),
        ("POST", "/models/demo-q4_k_m/chat", {"message": "x", "stop": 5}, 422, "stop"),
        ("POST", "/models/..%2F..%2Fetc/chat", {"message": "x"}, 404, "Not Found"),
        ("POST", "/models/..hidden/chat", {"message": "x"}, 422, "invalid model name"),
        ("POST", "/v1/chat/completions", {"model": "../../x", "messages": CHAT}, 422, "invalid model name"),
        ("POST", "/models/demo-q4_k_m/chat", {"message": "word " * 3000}, 400, "context window"),
        ("POST", "/v1/chat/completions", {"model": "demo-q4_k_m", "messages": []}, 422, "messages"),
        ("POST", "/v1/chat/completions", {"model": "demo-q4_k_m", "messages": CHAT, "n": 2}, 422, "n"),
        ("POST", "/v1/chat/completions", {"model": "demo-q4_k_m", "messages": [{"role": "wizard", "content": "x"}]},
         422, "role"),
        ("POST", "/v1/completions", {"model": "demo-q4_k_m", "prompt": ["a", "b"]}, 422, "at most 1 item"),
        ("POST", "/api/generate", {"model": "demo-q4_k_m", "prompt": "x", "keep_alive": "soon"}, 422, "keep_alive"),
        ("POST", "/compare", {"models": ["demo-q4_k_m"], "prompt": "x"}, 422, "models"),
        ("GET", "/models/demo-q4_k_m/chat", None, 405, "Method Not Allowed"),
        ("GET", "/no/such/route", None, 404, "Not Found"),
    ],
)
def test_error_cases(http, method, path, body, status, fragment):
    response = http.request(method, path, json=body)
    assert response.status_code == status, response.text
    payload = response.json()["error"]
    text = payload if isinstance(payload, str) else payload["message"]
    assert fragment.lower() in text.lower()


def test_garbage_never_yields_a_500(http):
    bodies = [b"", b"not json", b"[]", b"null", b'{"model": 5}', b'{"messages": "x"}', b"\xff\xfe",
              json.dumps({"model": "demo-q4_k_m", "messages": [{"role": "user"}]}).encode()]
    paths = ["/models/demo-q4_k_m/chat", "/v1/chat/completions", "/v1/completions", "/v1/embeddings",
             "/api/chat", "/api/generate", "/api/show", "/tokenize", "/detokenize", "/compare", "/batch",
             "/models/demo-q4_k_m/load"]
    for path in paths:
        for body in bodies:
            response = http.post(path, content=body, headers={"content-type": "application/json"})
            assert response.status_code < 500, (path, body, response.text)
            assert "error" in response.json() or response.status_code == 200


def test_body_size_limit(http):
    response = http.post("/models/demo-q4_k_m/chat", json={"message": "x" * 2_000_000})
    assert response.status_code == 413 and "too large" in response.json()["error"]["message"]


def test_cors_allows_localhost_only(http):
    def preflight(origin):
        return http.options("/v1/models", headers={"Origin": origin, "Access-Control-Request-Method": "GET"})

    assert preflight("http://localhost:3000").headers.get("access-control-allow-origin") == "http://localhost:3000"
    assert "access-control-allow-origin" not in preflight("https://evil.example").headers


# -- streaming, concurrency, lifecycle ------------------------------------------------------------------------

def test_client_disconnect_cancels_generation(url, served):
    _, manager = served
    with httpx.Client(base_url=url, timeout=60) as client:
        with client.stream("POST", "/v1/completions", json={"model": "demo-hf", "prompt": "import ", "max_tokens": 1000,
                                                            "temperature": 0, "stream": True}) as response:
            lines = response.iter_lines()
            for _ in range(4):
                next(lines)
    model = manager.get("demo-hf")
    deadline = time.monotonic() + 2
    while model.busy and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not model.busy
    metrics = httpx.get(f"{url}/metrics").text
    assert 'lqmf_generations_total{finish_reason="cancelled",model="demo-hf"}' in metrics


def test_sixteen_concurrent_clients_across_two_models(url):
    errors, results = [], []

    def client(i: int) -> None:
        model = "demo-q4_k_m" if i % 2 else "demo-f16"
        try:
            with httpx.Client(base_url=url, timeout=120) as http:
                response = http.post("/v1/chat/completions", json={"model": model, "messages": CHAT,
                                                                   "max_tokens": 24, "temperature": 0})
                response.raise_for_status()
                results.append((model, response.json()["choices"][0]["message"]["content"]))
        except Exception as exc:  # collected and asserted on below
            errors.append(repr(exc))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(results) == 16
    # Greedy decoding: every client of a model got the same answer.
    assert len({text for model, text in results if model == "demo-f16"}) == 1


def test_queue_full_answers_503_with_retry_after(demo_dir, tmp_path):
    """Admission control: `parallel` requests run at once, queue_size more wait, the next gets a 503."""
    server, manager, url = start_server(demo_dir, tmp_path, queue_size=1, parallel=3)
    try:
        release = threading.Event()
        started = threading.Semaphore(0)

        def hold(backend, cancel):
            started.release()
            release.wait(30)
            yield "released"

        slots = manager.load("demo-q4_k_m").backend.parallel
        assert slots == (3 if manager.engine().server else 1)
        held = [manager.submit("demo-q4_k_m", hold) for _ in range(slots)]
        for _ in range(slots):  # every slot busy at once: they run in parallel, not one after another
            assert started.acquire(timeout=30)
        waiting = manager.stream("demo-q4_k_m", "x", GenerationParams(max_tokens=2))
        response = httpx.post(f"{url}/models/demo-q4_k_m/chat", json={"message": "x"}, timeout=30)
        assert response.status_code == 503 and response.headers["retry-after"]
        assert "requests waiting" in response.json()["error"]["message"]
        release.set()
        assert all(job.result() == ["released"] for job in held) and waiting.result()
    finally:
        server.stop()
        manager.close()


def test_autoload_off_answers_409(demo_dir, tmp_path):
    server, manager, url = start_server(demo_dir, tmp_path, autoload=False)
    try:
        response = httpx.post(f"{url}/v1/chat/completions", json={"model": "demo-q4_k_m", "messages": CHAT})
        assert response.status_code == 409 and "/load" in response.json()["error"]["hint"]
        assert httpx.post(f"{url}/models/demo-q4_k_m/load").status_code == 200
        assert httpx.post(f"{url}/v1/chat/completions",
                          json={"model": "demo-q4_k_m", "messages": CHAT, "max_tokens": 4}).status_code == 200
    finally:
        server.stop()
        manager.close()


def test_api_key(demo_dir, tmp_path):
    server, manager, url = start_server(demo_dir, tmp_path, api_key="s3cret")
    try:
        assert httpx.get(f"{url}/health").status_code == 200
        denied = httpx.get(f"{url}/models")
        assert denied.status_code == 401 and "API key" in denied.json()["error"]["message"]
        assert httpx.get(f"{url}/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert httpx.get(f"{url}/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert httpx.get(f"{url}/v1/models", headers={"x-api-key": "s3cret"}).status_code == 200
        from openai import AuthenticationError, OpenAI

        assert OpenAI(base_url=f"{url}/v1", api_key="s3cret").models.list().data
        with pytest.raises(AuthenticationError):
            OpenAI(base_url=f"{url}/v1", api_key="nope", max_retries=0).models.list()
    finally:
        server.stop()
        manager.close()


def test_stop_frees_the_port_and_status(demo_dir, tmp_path):
    server, manager, url = start_server(demo_dir, tmp_path)
    status = server.status()
    assert status.running and status.host == "127.0.0.1" and status.uptime_s >= 0
    port = status.port
    assert server.stop()
    assert not server.status().running
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))  # free again
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/health")
    manager.close()


def test_port_in_use_is_a_clear_error(demo_dir, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = Settings(home=tmp_path, models_dir_override=demo_dir)
        manager = ModelManager(settings)
        with pytest.raises(ServerStartError, match="already in use"):
            BackgroundServer(settings, Library(settings, manager)).start(port=port)
        manager.close()


def test_non_loopback_without_key_is_refused(demo_dir, tmp_path):
    settings = Settings(home=tmp_path, models_dir_override=demo_dir)
    manager = ModelManager(settings)
    with pytest.raises(InsecureBind, match="without an API key"):
        BackgroundServer(settings, Library(settings, manager)).start(host="0.0.0.0", port=0)
    manager.close()


def test_health_is_503_while_preloading(demo_dir, tmp_path):
    import uvicorn

    from server.http.app import create_app

    settings = Settings(home=tmp_path, models_dir_override=demo_dir, preload=["demo-gptq-4bit"])
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not (server.started and server.servers):
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        first = httpx.get(f"http://127.0.0.1:{port}/health")
        assert first.status_code == 503 and first.json() == {"status": "starting"}
        deadline = time.monotonic() + 120
        while httpx.get(f"http://127.0.0.1:{port}/health").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200
        assert app.state.library.is_loaded("demo-gptq-4bit")
    finally:
        server.should_exit = True
        thread.join(15)


def test_standalone_server_process(demo_dir, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "LQMF_HOME": str(tmp_path), "LQMF_MODELS_DIR": str(demo_dir)}
    refused = subprocess.run([sys.executable, "-m", "server", "--host", "0.0.0.0", "--port", str(port)], cwd=REPO,
                             env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "LQMF_API_KEY" in refused.stderr
    proc = subprocess.Popen([sys.executable, "-m", "server", "--port", str(port)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            except httpx.ConnectError:
                time.sleep(0.2)
        tags = httpx.get(f"http://127.0.0.1:{port}/api/tags").json()
        assert "demo-q4_k_m" in {m["name"] for m in tags["models"]}
    finally:
        proc.terminate()
        proc.wait(20)
