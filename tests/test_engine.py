"""GGUF serving on llama.cpp's llama-server: real children, the real server, the unmodified openai and
ollama clients, tools and JSON schemas guaranteed by the grammar, slots, cancel, crashes, kill -9."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional

import httpx
import jsonschema_rs
import psutil
import pytest

from lqmf.base.errors import EngineUnavailable, ModelLoadError
from lqmf.base.generation import GenerationParams
from lqmf.base.settings import Settings
from server.runtime.backends.gguf_engine import EngineBackend
from server.runtime.engine import ChildSpec, EngineChild, choose_engine, free_port
from server.runtime.manager import ModelManager
from tests.test_server import start_server

REPO = Path(__file__).resolve().parents[1]
MODEL = "demo-q4_k_m"
WEATHER = {"type": "object", "properties": {
    "city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}, "days": {"type": "integer"}},
    "required": ["city", "unit", "days"]}
ADD = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "The weather of a city",
                                            "parameters": WEATHER}},
         {"type": "function", "function": {"name": "add", "description": "Add two numbers", "parameters": ADD}}]
REPLY = {"type": "object", "properties": {
    "answer": {"type": "string", "enum": ["yes", "no"]}, "score": {"type": "integer", "minimum": 0, "maximum": 100},
    "ok": {"type": "boolean"},
    "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b", "c"]}, "maxItems": 3}},
    "required": ["answer", "score", "ok", "tags"], "additionalProperties": False}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def served(demo_dir, tmp_path_factory):
    server, manager, url = start_server(demo_dir, tmp_path_factory.mktemp("engine-home"), parallel=4)
    assert manager.engine().server, manager.engine().reason  # `make test` builds llama-server first
    yield url, manager
    server.stop()
    manager.close()


@pytest.fixture(scope="module")
def openai_client(served):
    import openai

    return openai.OpenAI(base_url=f"{served[0]}/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def ollama_client(served):
    import ollama

    return ollama.Client(host=served[0])


def child_of(manager: ModelManager, name: str = MODEL) -> EngineChild:
    return manager.load(name).backend.child


def slots(child: EngineChild) -> list[dict]:
    return httpx.get(f"{child.url}/slots", headers={"Authorization": f"Bearer {child.key}"}, timeout=10).json()


def busy_slots(child: EngineChild) -> int:
    return sum(1 for s in slots(child) if s.get("is_processing"))


def signal_after_first_token(stream, child: EngineChild, sig: int, armed: "Optional[Armed]" = None):
    """EngineBackend.stream that sends `sig` to the child once its first chunk is out (a known point),
    unless `armed` has been disarmed by then (a late worker must not pause a child already resumed)."""

    def wrapped(self, *args, **kwargs):
        for n, chunk in enumerate(stream(self, *args, **kwargs)):
            yield chunk
            if n == 0:
                with armed.lock if armed else contextlib.nullcontext():
                    if armed is None or armed.on:
                        os.kill(child.pid, sig)

    return wrapped


class Armed:
    """A switch the test turns off (under its lock) before it resumes a paused child."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.on = True


def gone(process) -> bool:
    """The process has exited (a zombie counts: its parent has yet to reap it)."""
    import psutil

    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, FileNotFoundError):  # it went between the two looks
        return True


def wait_until(check, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


# -- the engine itself -------------------------------------------------------------------------------
def test_loaded_model_runs_in_its_own_locked_down_child(served):
    url, manager = served
    child = child_of(manager)
    info = next(m for m in httpx.get(f"{url}/models").json()["models"] if m["name"] == MODEL)
    assert info["engine"] == "llama-server" and info["slots"] == 4 and info["alive"] and info["pid"] == child.pid
    cmd = psutil.Process(child.pid).cmdline()
    assert cmd[0].endswith("llama-server") and cmd[cmd.index("--host") + 1] == "127.0.0.1"
    assert child.key not in " ".join(cmd)  # the key travels in the environment, not where `ps` shows it
    # Nothing else on the machine can use the child: no key, no service.
    assert httpx.get(f"{child.url}/slots", timeout=10).status_code == 401
    assert httpx.post(f"{child.url}/completion", json={"prompt": "x"}, timeout=10).status_code == 401


def test_usage_and_timings_are_the_engines_own(served, openai_client):
    url, manager = served
    r = openai_client.completions.create(model=MODEL, prompt="def shuffle(items):", max_tokens=12, temperature=0,
                                         extra_body={"ignore_eos": True})
    ids = manager.call(MODEL, lambda b: b.tokenize("def shuffle(items):"))
    assert r.usage.completion_tokens == 12 and r.usage.prompt_tokens == len(ids)
    native = httpx.post(f"{url}/models/{MODEL}/chat", json={"message": "hi", "max_tokens": 8, "temperature": 0,
                                                            "ignore_eos": True}, timeout=60).json()
    assert native["tokens_generated"] == 8 and native["tokens_per_second"] > 0


def test_openai_chat_and_stream_agree(openai_client):
    whole = openai_client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=24, temperature=0)
    parts = openai_client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=24, temperature=0,
                                                  stream=True, stream_options={"include_usage": True})
    text, usage = "", None
    for event in parts:
        if event.choices and event.choices[0].delta.content:
            text += event.choices[0].delta.content
        usage = event.usage or usage
    assert text == whole.choices[0].message.content and text
    assert usage.completion_tokens == whole.usage.completion_tokens


# -- tools and structured output: the grammar guarantees them, even from the tiny demo model ---------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_forced_tool_choice_yields_a_valid_call(openai_client, seed):
    r = openai_client.chat.completions.create(
        model=MODEL, messages=ASK, tools=TOOLS, tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=1024, temperature=0.9, seed=seed)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls" and len(choice.message.tool_calls) == 1
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather" and call.id.startswith("call_")
    jsonschema_rs.validate(WEATHER, json.loads(call.function.arguments))


def test_required_tool_choice_streams_tool_call_deltas(openai_client):
    stream = openai_client.chat.completions.create(model=MODEL, messages=ASK, tools=TOOLS, tool_choice="required",
                                                   parallel_tool_calls=False,
                                                   max_tokens=2048, temperature=0, stream=True)
    calls, reasons = [], []
    for event in stream:
        delta = event.choices[0].delta
        calls += delta.tool_calls or []
        reasons.append(event.choices[0].finish_reason)
    assert calls and reasons[-1] == "tool_calls"
    schemas = {"get_weather": WEATHER, "add": ADD}
    for call in calls:
        jsonschema_rs.validate(schemas[call.function.name], json.loads(call.function.arguments))


def test_tool_results_go_back_into_the_conversation(openai_client):
    history = ASK + [
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
            "name": "get_weather", "arguments": json.dumps({"city": "Paris", "unit": "c", "days": 1})}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 C"},
    ]
    r = openai_client.chat.completions.create(model=MODEL, messages=history, tools=TOOLS, max_tokens=1024,
                                              temperature=0)
    message = r.choices[0].message
    assert (message.tool_calls and r.choices[0].finish_reason == "tool_calls") or isinstance(message.content, str)


def test_json_schema_response_validates(openai_client):
    for seed in range(3):
        r = openai_client.chat.completions.create(
            model=MODEL, messages=ASK, max_tokens=512, temperature=0.9, seed=seed,
            response_format={"type": "json_schema", "json_schema": {"name": "reply", "schema": REPLY}})
        assert r.choices[0].finish_reason == "stop"
        jsonschema_rs.validate(REPLY, json.loads(r.choices[0].message.content))  # strict JSON: no raw newlines


def test_bad_feature_requests_are_refused_clearly(served):
    url, _ = served
    bad_schema = {"model": MODEL, "messages": ASK, "response_format": {
        "type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "properties": 5}}}}
    assert httpx.post(f"{url}/v1/chat/completions", json=bad_schema, timeout=30).status_code in (400, 422)
    unknown_tool = {"model": MODEL, "messages": ASK, "tools": TOOLS,
                    "tool_choice": {"type": "function", "function": {"name": "nope"}}}
    r = httpx.post(f"{url}/v1/chat/completions", json=unknown_tool, timeout=30)
    assert r.status_code == 422 and "get_weather" in r.json()["error"]["hint"]
    no_tools = {"model": MODEL, "messages": ASK, "tool_choice": "required"}
    assert httpx.post(f"{url}/v1/chat/completions", json=no_tools, timeout=30).status_code == 422


@pytest.mark.parametrize("schema,status,words", [
    ({"type": "integer", "minimum": 5, "maximum": 1}, 422, "minimum (5) is greater"),  # failed mid-stream: a 500
    ({"not": {"type": "string"}}, 400, "not"),  # llama.cpp's converter skipped it: unconstrained output
    ({"type": "number", "minimum": 0, "maximum": 1}, 400, "minimum (on a non-integer)"),  # skipped too
    ({"type": "string", "pattern": "(((("}, 422, "unclosed group"),
    ({"$ref": "#/$defs/missing"}, 422, "does not exist"),
])
def test_schemas_the_engine_would_not_enforce_are_refused(served, schema, status, words):
    url, _ = served
    body = {"model": MODEL, "messages": ASK, "max_tokens": 8,
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}}
    r = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)
    assert r.status_code == status and words in r.json()["error"]["message"]


def assert_greedy_without_eos(entry, ends_generation) -> None:
    """A greedy choice under ignore_eos is the most likely token that is not an end of generation.

    The reported logprobs are the model's own, EOS included: on another CPU EOS was the top token at
    one step (-0.107) and the choice, rightly, the best allowed one (-4.198). Which token is top, and
    whether EOS is, depends on the CPU's kernels; this property does not. Near-ties (abs 1e-4) may go
    either way."""
    assert not ends_generation(entry.token), entry
    allowed = [t.logprob for t in entry.top_logprobs if not ends_generation(t.token)]
    if allowed:
        assert entry.logprob == pytest.approx(allowed[0], abs=1e-4), entry
    else:  # every alternative shown was an end token: the choice is no more likely than any of them
        assert entry.logprob <= entry.top_logprobs[-1].logprob + 1e-4, entry


def test_greedy_check_allows_a_likelier_end_of_generation():
    """The step seen on another CPU passes; a choice that is not the best allowed token does not."""
    from types import SimpleNamespace as Entry

    tops = [Entry(token="</s>", logprob=-0.107), Entry(token=" the", logprob=-4.198), Entry(token=" a", logprob=-4.5)]
    is_end = {"</s>", "<|im_end|>"}.__contains__
    assert_greedy_without_eos(Entry(token=" the", logprob=-4.198, top_logprobs=tops), is_end)
    with pytest.raises(AssertionError):
        assert_greedy_without_eos(Entry(token=" a", logprob=-4.5, top_logprobs=tops), is_end)
    with pytest.raises(AssertionError):
        assert_greedy_without_eos(Entry(token="</s>", logprob=-0.107, top_logprobs=tops), is_end)


def test_logprobs_on_chat_and_completions(served, openai_client):
    _, manager = served
    eog = manager.call(MODEL, lambda b: set(b.grammar_tokenizer().eos_ids))  # llama.cpp's end-of-generation ids

    # An end token's text as the engine reports it: often empty (a control token has no text to show), which no
    # tokenization maps back to its id.
    eog_texts = {manager.call(MODEL, lambda b, i=i: b.detokenize([i])) for i in eog}

    def ends_generation(text: str) -> bool:
        ids = manager.call(MODEL, lambda b: b.tokenize(text, add_special=False))
        return (len(ids) == 1 and ids[0] in eog) or text in eog_texts

    r = openai_client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=6, temperature=0,
                                              logprobs=True, top_logprobs=3, extra_body={"ignore_eos": True})
    entries = r.choices[0].logprobs.content
    assert len(entries) == r.usage.completion_tokens == 6
    for e in entries:
        tops = [t.logprob for t in e.top_logprobs]
        assert len(tops) == 3 and tops == sorted(tops, reverse=True) and e.logprob <= 0
        assert_greedy_without_eos(e, ends_generation)
    c = openai_client.completions.create(model=MODEL, prompt="def ", max_tokens=5, temperature=0, logprobs=2,
                                         extra_body={"ignore_eos": True})
    lp = c.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 5
    assert "".join(lp.tokens) == c.choices[0].text and lp.text_offset[0] == 0


def test_seed_and_stop_are_honoured(openai_client):
    runs = [openai_client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=24, temperature=1.0,
                                                  seed=42).choices[0].message.content for _ in range(2)]
    assert runs[0] == runs[1]
    full = openai_client.completions.create(model=MODEL, prompt="def ", max_tokens=24, temperature=0,
                                            extra_body={"ignore_eos": True}).choices[0].text
    stop = full[len(full) // 2: len(full) // 2 + 2]
    cut = openai_client.completions.create(model=MODEL, prompt="def ", max_tokens=24, temperature=0, stop=[stop],
                                           extra_body={"ignore_eos": True})
    assert cut.choices[0].text == full[: full.index(stop)] and cut.choices[0].finish_reason == "stop"


def test_ollama_client_format_tools_and_num_ctx(ollama_client):
    import ollama

    r = ollama_client.chat(model=MODEL, messages=ASK, format=REPLY, options={"temperature": 0, "num_predict": 512})
    jsonschema_rs.validate(REPLY, json.loads(r.message.content))
    r = ollama_client.chat(model=MODEL, messages=ASK, tools=TOOLS, options={"temperature": 0, "num_predict": 2048})
    if r.message.tool_calls:  # tool_choice is always auto on Ollama: the model may answer in text
        for call in r.message.tool_calls:
            jsonschema_rs.validate({"get_weather": WEATHER, "add": ADD}[call.function.name], call.function.arguments)
    else:
        assert r.message.content
    parts = list(ollama_client.chat(model=MODEL, messages=ASK, stream=True, options={"temperature": 0,
                                                                                     "num_predict": 8}))
    assert parts[-1].done and parts[-1].eval_count == 8 or parts[-1].done_reason == "stop"
    # num_ctx is the request's own window: a prompt past it is refused, a num_ctx past the loaded one too.
    with pytest.raises(ollama.ResponseError) as small:
        ollama_client.generate(model=MODEL, prompt="word " * 100, options={"num_ctx": 32})
    assert small.value.status_code == 400 and "32" in str(small.value)
    with pytest.raises(ollama.ResponseError) as large:
        ollama_client.generate(model=MODEL, prompt="hi", options={"num_ctx": 1 << 20})
    assert large.value.status_code == 400 and "num_ctx" in str(large.value)
    ok = ollama_client.generate(model=MODEL, prompt="hi", options={"num_ctx": 64, "num_predict": 500,
                                                                  "temperature": 0})
    assert ok.prompt_eval_count + ok.eval_count <= 64


# -- parallel slots, cancel, crashes -------------------------------------------------------------------
def test_four_streams_decode_concurrently(served):
    """The engine's own timings: four streams' decode times together exceed the wall time they took."""
    url, manager = served
    budget = manager.load(MODEL).backend.context_length - 8
    # Work an earlier test left behind (a stream a client abandoned) would hold workers and slots: a
    # fresh-clone run once saw two of the four streams start 0.9 s late.
    assert wait_until(lambda: not manager.get(MODEL).active and busy_slots(child_of(manager)) == 0, 30)
    together = threading.Barrier(4)
    took: list[float] = []
    firsts: list[float] = []  # seconds from sending to the first event, per stream (for the failure message)

    def one(i: int) -> None:
        body = {"message": f"story {i}", "max_tokens": budget, "temperature": 0, "ignore_eos": True, "stream": True}
        together.wait()
        sent = time.perf_counter()
        with httpx.stream("POST", f"{url}/models/{MODEL}/chat", json=body, timeout=120) as r:
            events = []
            for line in r.iter_lines():
                if line.startswith("data: {"):
                    events.append(json.loads(line[6:]))
                    if len(events) == 1:
                        firsts.append(round(time.perf_counter() - sent, 3))
        assert sum(1 for e in events if e.get("delta")) > 100
        took.append(events[-1]["time_taken"])  # the engine's prompt + decode time for this stream

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    assert len(took) == 4
    # One at a time, the engine-measured times would add up to less than the wall time.
    assert sum(took) > 2.0 * wall, (took, wall, firsts)


def engine_metric(child: EngineChild, name: str) -> float:
    """One of llama-server's own Prometheus counters."""
    text = httpx.get(f"{child.url}/metrics", headers={"Authorization": f"Bearer {child.key}"}, timeout=10).text
    return float(next(line.split()[-1] for line in text.splitlines() if line.startswith(name + " ")))


def predicted_total(child: EngineChild) -> float:
    """llama-server's own count of tokens it generated."""
    return engine_metric(child, "llamacpp:tokens_predicted_total")


def test_client_disconnect_frees_the_slot(served, monkeypatch):
    url, manager = served
    child = child_of(manager)
    budget = manager.load(MODEL).backend.context_length - 2  # as long as the slot's context allows
    body = {"model": MODEL, "prompt": "x", "max_tokens": budget, "temperature": 0, "ignore_eos": True}
    before = predicted_total(child)
    assert httpx.post(f"{url}/v1/completions", json=body, timeout=60).json()["usage"]["completion_tokens"] == budget
    assert predicted_total(child) - before == budget  # the engine counts what it generates
    original = EngineBackend.stream
    # The demo model makes the whole answer in half a second, faster than a client can leave: the child
    # is paused after its first token, so it is surely still generating when the client goes.
    model = manager.get(MODEL)
    # On 2 busy cores the child may finish its whole answer before the worker even reads the first token
    # (seen once in a fresh-clone run): up to 5 tries, of which one must stop short. Without the cancel,
    # every try generates the whole budget and the test fails.
    generated_each: list[float] = []
    for _ in range(5):
        before = predicted_total(child)
        armed = Armed()
        monkeypatch.setattr(EngineBackend, "stream", signal_after_first_token(original, child, signal.SIGSTOP, armed))
        try:
            with httpx.stream("POST", f"{url}/v1/completions", json={**body, "stream": True}, timeout=60) as r:
                next(line for line in r.iter_lines() if line.startswith("data: "))
            # The client went away: LQMF cancels its job...
            wait_until(lambda: any(job.cancel_event.is_set() for job in list(model.active)), 5)
        finally:
            monkeypatch.setattr(EngineBackend, "stream", original)
            with armed.lock:
                armed.on = False
                os.kill(child.pid, signal.SIGCONT)
        # ...and closes its connection to the child at the next token, which stops that slot's generation.
        assert wait_until(lambda: busy_slots(child) == 0, 10)
        time.sleep(0.2)
        generated_each.append(predicted_total(child) - before)
        if generated_each[-1] < budget:
            break
    assert generated_each[-1] < budget, f"every try generated all {budget} tokens: {generated_each}"


def test_non_stream_client_that_leaves_is_cancelled(served):
    """A non-streamed request is one answer from the child, which checks its client once a second
    (llama-server's HTTP_POLLING_SECONDS): LQMF cancels the job and closes that connection at once."""
    from tests.test_hardening import metric

    url, manager = served
    budget = manager.load(MODEL).backend.context_length - 2
    body = {"model": MODEL, "prompt": "x", "max_tokens": budget, "temperature": 0, "ignore_eos": True}
    with httpx.Client(base_url=url, timeout=30) as http:
        before = metric(http, "lqmf_generations_total", model=MODEL, finish_reason="cancelled")
        with pytest.raises(httpx.ReadTimeout):
            http.post("/v1/completions", json=body, timeout=httpx.Timeout(30, read=0.05))
        assert wait_until(lambda: metric(http, "lqmf_generations_total", model=MODEL,
                                         finish_reason="cancelled") == before + 1, 5)


def test_child_killed_mid_stream_ends_the_stream_and_restarts(served, monkeypatch):
    url, manager = served
    child = child_of(manager)
    original = EngineBackend.stream
    # The demo model makes a whole answer in about half a second: kill at a known point of the stream.
    monkeypatch.setattr(EngineBackend, "stream", signal_after_first_token(original, child, signal.SIGKILL))
    body = {"model": MODEL, "prompt": "x", "max_tokens": 1000, "temperature": 0, "ignore_eos": True, "stream": True}
    events = []
    with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=30) as r:
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    monkeypatch.setattr(EngineBackend, "stream", original)
    assert events[-1] != "[DONE]" and len(events) < 1000
    error = json.loads(events[-1])["error"]
    assert "engine" in error["message"] and "killed by SIGKILL" in error["message"]
    info = next(m for m in httpx.get(f"{url}/models").json()["models"] if m["name"] == MODEL)
    assert not info["alive"] and "killed by SIGKILL" in info["died"]
    again = httpx.post(f"{url}/v1/completions", json={"model": MODEL, "prompt": "x", "max_tokens": 4}, timeout=60)
    assert again.status_code == 200 and child.alive() and child.restarts >= 1


def test_restart_backoff_reports_why(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    tools = choose_engine(Settings(home=tmp_path))
    child = EngineChild(ChildSpec(tools.binary, bad, "broken", 1, 64, 1, tmp_path / "broken.log"))
    with pytest.raises(ModelLoadError, match="could not serve broken"):
        child.start()
    with pytest.raises(EngineUnavailable, match="restarting broken's engine failed") as first:
        child.ensure_running()
    assert "retry in 0 s" in str(first.value) or "retry in 1 s" in str(first.value)
    with pytest.raises(EngineUnavailable, match="next restart in"):  # inside the backoff: not tried again
        child.ensure_running()
    assert not child.alive()


@pytest.mark.parametrize("face", ["server", "shell"])
def test_no_child_outlives_kill_9(demo_dir, tmp_path, face):
    env = {**os.environ, "LQMF_HOME": str(tmp_path), "LQMF_MODELS_DIR": str(demo_dir), "LQMF_PARALLEL": "2"}
    port = free_port()
    if face == "server":
        cmd = [sys.executable, "-m", "server", "--port", str(port)]
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    else:
        cmd = [sys.executable, "cli/api_cli.py"]
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        proc.stdin.write(f"load model {MODEL}\n")
        proc.stdin.flush()
    try:
        def engine_children() -> list[psutil.Process]:
            try:
                return [c for c in psutil.Process(proc.pid).children(recursive=True) if "llama-server" in c.name()]
            except psutil.NoSuchProcess:
                return []

        if face == "server":
            url = f"http://127.0.0.1:{port}"

            def serving() -> bool:
                try:
                    return httpx.get(f"{url}/", timeout=2).status_code == 200
                except httpx.HTTPError:
                    return False

            assert wait_until(serving, 60)
            assert httpx.post(f"{url}/models/{MODEL}/load", timeout=60).status_code == 200
        assert wait_until(lambda: len(engine_children()) == 1, 60)
        child = engine_children()[0]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        assert wait_until(lambda: gone(child), 10)
    finally:
        if proc.poll() is None:
            proc.kill()


# -- without the engine -----------------------------------------------------------------------------
def test_in_process_fallback_serves_and_says_what_it_cannot(demo_dir, tmp_path):
    manager = ModelManager(Settings(home=tmp_path, models_dir_override=demo_dir, gguf_engine="in-process"))
    try:
        assert not manager.engine().server and "LQMF_GGUF_ENGINE=in-process" in manager.engine().reason
        info = manager.load(MODEL).info()
        assert info["engine"] == "in-process" and info["slots"] == 1
        # Said once (the shell prints it after the first GGUF load), not on every load.
        assert manager.engine_notice() == manager.engine().reason and manager.engine_notice() is None
        out = manager.generate(MODEL, ASK, GenerationParams(max_tokens=512, temperature=0,
                                                            json_schema=json.dumps(REPLY)))
        jsonschema_rs.validate(REPLY, json.loads(out.text))  # the same grammar, in-process
        from lqmf.base.errors import FeatureUnsupported

        with pytest.raises(FeatureUnsupported, match="log-probabilities") as refused:
            manager.generate(MODEL, ASK, GenerationParams(max_tokens=4, logprobs=2))
        assert "make tools" in refused.value.hint
    finally:
        manager.close()


def test_auto_engine_without_the_binary_says_how_to_get_it(tmp_path):
    auto = choose_engine(Settings(home=tmp_path, tools_dir_override=tmp_path / "no-tools"))
    assert not auto.server and "make tools" in auto.reason and "in-process" in auto.reason
    with pytest.raises(ModelLoadError, match="LQMF_GGUF_ENGINE=server"):
        choose_engine(Settings(home=tmp_path, tools_dir_override=tmp_path / "no-tools", gguf_engine="server"))


# -- the same features on transformers formats, through llguidance ------------------------------------
@pytest.mark.parametrize("name", ["demo-hf", "demo-gptq-4bit"])
def test_transformers_formats_get_tools_and_schemas(openai_client, name):
    r = openai_client.chat.completions.create(
        model=name, messages=ASK, tools=TOOLS, tool_choice={"type": "function", "function": {"name": "add"}},
        max_tokens=256, temperature=0)
    call = r.choices[0].message.tool_calls[0]
    assert r.choices[0].finish_reason == "tool_calls" and call.function.name == "add"
    jsonschema_rs.validate(ADD, json.loads(call.function.arguments))
    r = openai_client.chat.completions.create(
        model=name, messages=ASK, max_tokens=256, temperature=0, logprobs=True, top_logprobs=2,
        response_format={"type": "json_schema", "json_schema": {"name": "reply", "schema": REPLY}})
    jsonschema_rs.validate(REPLY, json.loads(r.choices[0].message.content))
    assert len(r.choices[0].logprobs.content) == r.usage.completion_tokens


def test_a_fresh_benchmark_run_times_the_whole_prompt(served):
    """Benchmarks ask for cache_prompt=False: the engine then evaluates every prompt token again."""
    _, manager = served
    prompt = "def shuffle(items): " * 20
    ids = manager.call(MODEL, lambda b: b.tokenize(prompt))
    child = child_of(manager)

    def processed(params: GenerationParams) -> float:
        before = engine_metric(child, "llamacpp:prompt_tokens_total")
        manager.generate(MODEL, ids, params)
        return engine_metric(child, "llamacpp:prompt_tokens_total") - before

    processed(GenerationParams(max_tokens=2, temperature=0))
    assert processed(GenerationParams(max_tokens=2, temperature=0)) < len(ids)  # the cached prefix was reused
    assert processed(GenerationParams(max_tokens=2, temperature=0, cache_prompt=False)) == len(ids)


def test_slots_that_find_the_child_dead_together_start_one_child(served):
    url, manager = served
    child = child_of(manager)
    assert child.alive()
    os.kill(child.pid, signal.SIGKILL)
    assert wait_until(lambda: not child.alive(), 5)
    restarts = child.restarts
    together = threading.Barrier(4)
    codes: list[int] = []
    answers: list[str] = []

    def one() -> None:
        together.wait()
        r = httpx.post(f"{url}/v1/completions", json={"model": MODEL, "prompt": "x", "max_tokens": 4}, timeout=60)
        codes.append(r.status_code)
        answers.append(r.text[:1500])

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [200] * 4 and child.restarts == restarts + 1, answers
    engines = [p for p in psutil.Process().children(recursive=True) if "llama-server" in p.name()]
    assert sum(1 for p in engines if p.cmdline()[p.cmdline().index("-m") + 1].endswith(f"{MODEL}.gguf")) == 1


def test_waiting_requests_start_in_arrival_order(served):
    """Admission control: the slots run at once, the rest wait FIFO."""
    _, manager = served
    slots = manager.load(MODEL).backend.parallel
    release = [threading.Event() for _ in range(slots + 3)]
    started: list[int] = []

    def work(i: int):
        def run(backend, cancel):
            started.append(i)
            release[i].wait(30)
            yield i
        return run

    jobs = [manager.submit(MODEL, work(i)) for i in range(slots + 3)]
    assert wait_until(lambda: len(started) == slots, 10) and sorted(started) == list(range(slots))
    for i in range(slots + 3):  # one slot frees at a time: the oldest waiting request takes it
        release[i].set()
        if i + slots < len(jobs):
            assert wait_until(lambda i=i: len(started) == i + slots + 1, 10)
            assert started[-1] == i + slots
    assert [job.result() for job in jobs] == [[i] for i in range(slots + 3)]


def test_unload_and_keep_alive_stop_the_child_and_memory_counts_every_slot(demo_dir, tmp_path):
    from server.runtime.budget import estimate_bytes

    manager = ModelManager(Settings(home=tmp_path, models_dir_override=demo_dir, parallel=3, keep_alive_s=-1))
    try:
        model = manager.load(MODEL)
        record, child = model.record, model.backend.child
        n_ctx = model.backend.context_length
        assert model.estimate_bytes == estimate_bytes(record, n_ctx * 3) > estimate_bytes(record, n_ctx)
        assert model.footprint_bytes > record.size_bytes  # weights plus three slots' KV caches
        process = psutil.Process(child.pid)
        assert manager.unload(MODEL)
        assert wait_until(lambda: gone(process), 10)
        # Idle past its keep_alive: unloaded by the reaper, child and all.
        process = psutil.Process(manager.load(MODEL, keep_alive_s=1.0).backend.child.pid)
        assert wait_until(lambda: not manager.is_loaded(MODEL), 10)
        assert wait_until(lambda: gone(process), 10)
    finally:
        manager.close()
