"""Remote endpoints as models, all on 127.0.0.1: a second LQMF server process (key-protected) as the
remote, llama-server where it is built, and a small stub only for cloud-only behaviours (429, a slow
first byte, a broken stream, a never-ending answer)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from lqmf.api import Library
from lqmf.base.errors import RemoteError
from lqmf.base.generation import GenerationParams
from lqmf.base.processes import end_process
from lqmf.base.settings import Settings
from server.http.runner import BackgroundServer
from server.runtime.engine import free_port
from server.runtime.manager import ModelManager
from tests.openai_stub import OpenAIStub, StubBehaviour

REPO = Path(__file__).resolve().parents[1]
KEY = "remote-key-5b1e0c7d9a41"  # what the remote LQMF demands; looked for on disk at the end
KEY_ENV = "LQMF_TEST_REMOTE_KEY"
ASK = [{"role": "user", "content": "Name a colour."}]
GREEDY = {"temperature": 0, "max_tokens": 12}
HOMES: list[Path] = []  # every home a test here wrote into: none may hold the key


class LQMFProcess:
    """`python -m server` in its own process, as a remote machine would run it."""

    def __init__(self, home: Path, models: Path, key: str | None = None, preload: str | None = None,
                 port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "LQMF_HOME": str(home), "LQMF_MODELS_DIR": str(models), "LQMF_AUTO_BENCHMARK_EVERY": "0"}
        env.pop("LQMF_API_KEY", None)
        if key:
            env["LQMF_API_KEY"] = key
        if preload:
            env["LQMF_PRELOAD"] = json.dumps([preload])
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.log = open(home / "server.out", "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "server", "--port", str(self.port)], cwd=REPO, env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the remote LQMF exited: {(home / 'server.out').read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/health", headers=self.headers, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("the remote LQMF did not become healthy in 120 s")

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        end_process(self.proc, 10)
        self.log.close()


@pytest.fixture(scope="module")
def keyed_env():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(KEY_ENV, KEY)
        yield


@pytest.fixture(scope="module")
def remote(demo_dir, tmp_path_factory):
    """A key-protected LQMF on another port with demo-q4_k_m loaded (a remote machine)."""
    home = tmp_path_factory.mktemp("remote-home")
    HOMES.append(home)
    proc = LQMFProcess(home, demo_dir, key=KEY, preload="demo-q4_k_m")
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def gateway(demo_dir, tmp_path_factory, keyed_env, remote):
    """The LQMF under test (in this process), with the remote registered as `far`."""
    home = tmp_path_factory.mktemp("gateway-home")
    HOMES.append(home)
    settings = Settings(home=home, models_dir_override=demo_dir, port=0, remote_timeout_s=8.0,
                        auto_benchmark_every=0)
    manager = ModelManager(settings)
    server = BackgroundServer(settings, Library(settings, manager))
    url = server.start().url
    answer = httpx.post(f"{url}/endpoints", json={"name": "far", "url": f"{remote.url}/v1", "model": "demo-q4_k_m",
                                                  "key_env": KEY_ENV}, timeout=30)
    assert answer.status_code == 201, answer.text
    yield url, manager, settings, server
    server.stop()
    manager.close()


def stats(settings: Settings, model: str) -> list[tuple]:
    with sqlite3.connect(settings.db_path) as db:
        return db.execute("SELECT route, finish_reason, completion_tokens, fallback_from FROM request_stats "
                          "WHERE model = ? ORDER BY id", (model,)).fetchall()


def wait_for(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    return predicate()


# -- register and list ----------------------------------------------------------------------------------

def test_a_registered_endpoint_is_probed_and_listed_everywhere(gateway, remote):
    url, manager, settings, _ = gateway
    endpoints = httpx.get(f"{url}/endpoints").json()["endpoints"]
    far = next(e for e in endpoints if e["name"] == "far")
    assert far["health"] == "up" and far["latency_ms"] > 0 and far["key_env"] == KEY_ENV
    assert far["members"][0]["url"] == f"{remote.url}/v1"
    available = {m["name"]: m for m in httpx.get(f"{url}/models/available").json()["models"]}
    assert available["far"]["format"] == "remote" and available["far"]["usable"]
    assert available["far"]["remote"]["health"] == "up"
    assert available["far"]["display"]["host"] == f"127.0.0.1:{remote.port}"
    assert "demo-q4_k_m" in available  # the local models are still there
    openai_ids = {m["id"]: m for m in httpx.get(f"{url}/v1/models").json()["data"]}
    assert openai_ids["far"]["owned_by"] == f"remote:127.0.0.1:{remote.port}"
    assert openai_ids["far"]["remote"]["health"] == "up" and openai_ids["far"]["remote"]["latency_ms"] > 0
    tags = {m["name"]: m for m in httpx.get(f"{url}/api/tags").json()["models"]}
    assert tags["far"]["details"]["format"] == "remote" and tags["far"]["remote"]["host"] == f"127.0.0.1:{remote.port}"
    for body in (endpoints, available, openai_ids):
        assert KEY not in json.dumps(body)
    # The config file names the variable, never the key.
    text = settings.endpoints_path.read_text()
    assert KEY_ENV in text and KEY not in text


def test_bad_registrations_are_refused_with_what_to_do(gateway):
    url = gateway[0]
    key_in_body = httpx.post(f"{url}/endpoints", json={"name": "x", "url": "http://127.0.0.1:9/v1", "key": KEY})
    assert key_in_body.status_code == 422 and KEY not in key_in_body.text  # a key itself is never accepted
    clash = httpx.post(f"{url}/endpoints", json={"name": "demo-q4_k_m", "url": "http://127.0.0.1:9/v1"})
    assert clash.status_code == 409 and "local model" in clash.json()["error"]["message"]
    not_http = httpx.post(f"{url}/endpoints", json={"name": "x", "url": "ftp://127.0.0.1:9/v1"})
    assert not_http.status_code == 422
    default = httpx.post(f"{url}/endpoints", json={"name": "default", "url": "http://127.0.0.1:9/v1"})
    assert default.status_code == 422 and "default" in default.json()["error"]["hint"]
    missing = httpx.delete(f"{url}/endpoints/nothing-here")
    assert missing.status_code == 404


# -- the gateway --------------------------------------------------------------------------------------------

def test_the_openai_client_streams_a_remote_model_through_the_gateway(gateway, remote):
    import openai

    url, manager, settings, _ = gateway
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused")
    stream = client.chat.completions.create(model="far", messages=ASK, stream=True,
                                            stream_options={"include_usage": True}, **GREEDY)
    pieces, usage = [], None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        if chunk.usage:
            usage = chunk.usage
    through_gateway = "".join(pieces)
    # The same greedy request straight to the remote: the gateway passed its answer through unchanged.
    direct = httpx.post(f"{remote.url}/v1/chat/completions", headers=remote.headers, timeout=60,
                        json={"model": "demo-q4_k_m", "messages": ASK, **GREEDY}).json()
    assert through_gateway and through_gateway == direct["choices"][0]["message"]["content"]
    assert len(pieces) > 1  # streamed in pieces, not one block
    assert usage.completion_tokens == direct["usage"]["completion_tokens"]
    assert usage.prompt_tokens == direct["usage"]["prompt_tokens"]
    # Non-streamed, the native route and Ollama's: the same answer.
    whole = client.chat.completions.create(model="far", messages=ASK, **GREEDY)
    assert whole.choices[0].message.content == through_gateway and whole.model == "far"
    native = httpx.post(f"{url}/models/far/chat", json={"messages": ASK, **GREEDY}, timeout=60).json()
    assert native["response"] == through_gateway and native["tokens_generated"] == usage.completion_tokens
    ollama = httpx.post(f"{url}/api/chat", timeout=60, json={"model": "far", "messages": ASK, "stream": False,
                                                             "options": {"temperature": 0, "num_predict": 12}}).json()
    assert ollama["message"]["content"] == through_gateway
    # Side by side with a local model, and in a batch.
    side = httpx.post(f"{url}/compare", timeout=60, json={"models": ["demo-q4_k_m", "far"], "messages": ASK,
                                                          **GREEDY}).json()
    assert {row["model"] for row in side["results"]} == {"demo-q4_k_m", "far"}
    assert next(row for row in side["results"] if row["model"] == "far")["response"] == through_gateway
    batch = httpx.post(f"{url}/batch", timeout=60, json={"items": [{"model": "far", "messages": ASK, **GREEDY},
                                                                    {"model": "demo-q4_k_m", "prompt": "Hi",
                                                                     "max_tokens": 4}]}).json()
    assert batch["errors"] == 0 and batch["results"][0]["response"] == through_gateway
    # Usage recorded by the gateway, per route.
    rows = wait_for(lambda: [r for r in stats(settings, "far") if r[1] == "stop"] if len(stats(settings, "far")) >= 6
                    else None)
    assert {r[0] for r in rows} >= {"/v1/chat/completions", "/models/{name}/chat", "/api/chat", "/compare", "/batch"}
    assert all(r[2] == usage.completion_tokens for r in rows)


def test_a_client_that_leaves_cancels_the_remote_generation(gateway, tmp_path):
    url, manager, settings, _ = gateway
    behaviour = StubBehaviour(mode="endless")
    with OpenAIStub(behaviour) as stub:
        manager.endpoints.put("endless", [stub.url], "stub-model")
        with httpx.Client(timeout=30) as client:
            with client.stream("POST", f"{url}/v1/chat/completions",
                               json={"model": "endless", "messages": ASK, "stream": True, "max_tokens": 30000}) as r:
                assert r.status_code == 200
                lines = r.iter_lines()
                got = [next(lines) for _ in range(4)]
                assert any("more" in line for line in got)
        # The gateway closed its connection to the remote: the remote saw its client go.
        assert behaviour.disconnected.wait(5), "the remote never saw the cancel"
        assert wait_for(lambda: not manager.get("endless").active, 5)
        metrics = httpx.get(f"{url}/metrics").text
        assert 'lqmf_generations_total{finish_reason="cancelled",model="endless"} 1.0' in metrics
        manager.unload("endless")
        manager.endpoints.remove("endless")


# -- errors -------------------------------------------------------------------------------------------------

def chat(url: str, model: str, **extra) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", json={"model": model, "messages": ASK, **GREEDY, **extra},
                      timeout=60)


def test_remote_failures_become_clear_errors_that_name_the_endpoint(gateway):
    url, manager, settings, _ = gateway
    dead_port = free_port()
    cases = []
    with OpenAIStub(StubBehaviour(mode="ratelimit", retry_after="7")) as limited, \
            OpenAIStub(StubBehaviour(key="the-right-key")) as locked, \
            OpenAIStub(StubBehaviour(mode="slow", delay_s=30)) as slow, \
            OpenAIStub(StubBehaviour(mode="break", reply="one two three")) as broken, \
            OpenAIStub(StubBehaviour(mode="fail", status=404)) as missing, \
            OpenAIStub(StubBehaviour(mode="fail", status=500)) as crashing, \
            OpenAIStub(StubBehaviour(mode="garbled")) as garbled:
        manager.endpoints.put("limited", [limited.url], "stub-model")
        manager.endpoints.put("locked", [locked.url], "stub-model", KEY_ENV)  # our key is not the one it wants
        manager.endpoints.put("slowpoke", [slow.url], "stub-model")
        manager.endpoints.put("broken", [broken.url], "stub-model")
        manager.endpoints.put("dead", [f"http://127.0.0.1:{dead_port}/v1"], "stub-model")
        manager.endpoints.put("missing", [missing.url], "stub-model")
        manager.endpoints.put("crashing", [crashing.url], "stub-model")
        manager.endpoints.put("garbled", [garbled.url], "stub-model")
        try:
            r = httpx.post(f"{url}/v1/chat/completions", timeout=30,
                           json={"model": "garbled", "messages": ASK, "logprobs": True, "top_logprobs": 1})
            assert r.status_code == 502 and "garbled (" in r.json()["error"]["message"]
            assert "log-probabilities" in r.json()["error"]["message"]
            r = chat(url, "missing")
            assert r.status_code == 502 and "missing (" in r.json()["error"]["message"]
            assert "404" in r.json()["error"]["message"] and "model id" in r.json()["error"]["hint"]
            r = chat(url, "crashing")
            assert r.status_code == 502 and "crashing (" in r.json()["error"]["message"] and "500" in r.text
            r = chat(url, "limited")
            assert r.status_code == 429 and r.headers["retry-after"] == "7"
            cases.append(r.json()["error"])
            assert "limited (" in cases[-1]["message"] and "429" in cases[-1]["message"]
            r = chat(url, "locked")
            assert r.status_code == 502 and "endpoint locked refused" in r.json()["error"]["message"]
            assert "401" in r.json()["error"]["message"] and KEY_ENV in r.json()["error"]["hint"]
            assert KEY not in r.text
            r = chat(url, "dead")
            assert r.status_code == 503 and "dead" in r.json()["error"]["message"]
            started = time.monotonic()
            manager.load("slowpoke")
            manager.get("slowpoke").backend.timeout_s = 1.5  # what LQMF_REMOTE_TIMEOUT_S sets
            r = chat(url, "slowpoke")
            assert r.status_code == 504 and "slowpoke (" in r.json()["error"]["message"]
            assert time.monotonic() - started < 10
            # A stream the remote breaks after its first word: the SSE body ends with an error naming it.
            with httpx.stream("POST", f"{url}/v1/chat/completions", timeout=30,
                              json={"model": "broken", "messages": ASK, "stream": True}) as s:
                assert s.status_code == 200
                events = [line for line in s.iter_lines() if line.startswith("data: ")]
            assert '"one"' in events[1] and "broken (" in events[-1] and events[-1] != "data: [DONE]"
            # One dead endpoint disturbs nobody: the listing answers, local and remote models serve.
            assert "dead" in {m["id"] for m in httpx.get(f"{url}/v1/models").json()["data"]}
            assert chat(url, "demo-q4_k_m").status_code == 200
            assert chat(url, "far").status_code == 200
        finally:
            for name in ("limited", "locked", "slowpoke", "broken", "dead", "missing", "crashing", "garbled"):
                manager.unload(name)
                manager.endpoints.remove(name)


def test_a_silent_endpoint_never_slows_the_other_models(gateway):
    """A member that accepts connections and never answers (a hung host): finding and serving other
    models does not wait on its probes; only a listing a person asked for does, and at most its timeout."""
    import socket

    url, manager, settings, _ = gateway
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # the kernel completes handshakes; nobody ever reads or answers
    try:
        manager.endpoints.put("silent", [f"http://127.0.0.1:{silent.getsockname()[1]}/v1"], "m")
        for member in manager.endpoints.fleet("silent").members:
            member.probe.at = 0  # long stale: any lookup that probes would wait the probe's timeout
        started = time.monotonic()
        assert manager.record("demo-q4_k_m").format == "gguf"
        assert chat(url, "demo-q4_k_m").status_code == 200
        assert time.monotonic() - started < 2.5
        started = time.monotonic()
        listed = {r.name for r in manager.available(probe=True)}
        assert "silent" in listed and time.monotonic() - started < 3.0 + 2.0
    finally:
        manager.remotes.remove("silent")
        silent.close()


# -- measuring ----------------------------------------------------------------------------------------------

def rated(row) -> bool:
    """A remote's rate is over its answers that streamed in pieces; one that came in a single burst is not timed,
    and a row of nothing but bursts has no rate."""
    speed = row.speed
    return row.gen_tps > 0 if speed.untimed_runs < speed.runs else row.gen_tps is None


def test_benchmark_compare_and_summary_over_http(gateway):
    from agents.measure.experiments import ExperimentAgent
    from memory.store import Store

    url, manager, settings, _ = gateway
    store = Store(settings.db_path)
    try:
        agent = ExperimentAgent(settings, manager, store)
        bench = agent.benchmark(["far"], prompts=["Say one word."], repetitions=2, warmup=1, max_tokens=8)
        row = bench.rows[0]
        assert row.model == "far" and row.load.measured_over == "http" and row.format == "remote"
        # 2 * 8: ignore_eos was passed on.
        assert row.speed.ttft_p50_s > 0 and row.speed.completion_tokens == 2 * 8
        assert rated(row)
        assert any("measured over HTTP" in note for note in bench.notes)
        report = agent.compare(["demo-q4_k_m", "far"], max_tokens=8, chunks=2)
        rows = {r.model: r for r in report.rows}
        assert rows["far"].fidelity is None and rated(rows["far"])
        assert rows["demo-q4_k_m"].fidelity is not None  # the local one still gets its fidelity
        assert any("far is remote" in n and "no fidelity" in n for n in report.notes)
        assert report.reference and report.reference != "far"
        # The prompt experiments take it too: a batch file and a multi-turn conversation.
        prompts = settings.root / "prompts.txt"
        prompts.write_text("Say one word.\nName a colour.\n")
        batch = agent.batch("far", prompts, GenerationParams(max_tokens=6, temperature=0))
        assert batch.rows[0].speed.runs == 2 and all(run.response for run in batch.runs)
        script = settings.root / "script.txt"
        script.write_text("Hello.\nAnd then?\n")
        talk = agent.conversation("far", script, GenerationParams(max_tokens=6, temperature=0))
        assert talk.rows[0].speed.runs == 2
        # The automatic benchmark measures whatever is loaded, remote models included.
        from agents.measure.auto_benchmark import AutoBenchmark

        auto = AutoBenchmark(agent, every=1)
        auto.observe()
        auto.wait(120)
        line = json.loads(settings.benchmarks_log.read_text().splitlines()[-1])
        far = next(r for r in store.experiment(line["experiment_id"])["summary"]["models"] if r["model"] == "far")
        assert far["gen_tps"] > 0 if far["untimed_runs"] < far["runs"] else far["gen_tps"] is None
        assert line["models"]["far"]["gen_tps"] == far["gen_tps"]
        summary = httpx.get(f"{url}/benchmark/summary").json()
        assert summary["speed_by_model"]["far"]["measured_over"] == "http"
        assert summary["speed_by_model"]["demo-q4_k_m"]["measured_over"] == "local"
        # The automatic benchmark measured every loaded model, the reference compare loaded (demo-f16) too, and on
        # 4.5M-parameter models which one is fastest is chance: it is one of the models measured here.
        fastest = summary["fastest_model"]["model"]
        assert fastest in summary["speed_by_model"] and fastest in ("far", "demo-q4_k_m", report.reference)
        assert summary["most_faithful_model"]["model"] == "demo-q4_k_m"
    finally:
        store.close()


def test_agreement_against_a_key_protected_remote(gateway, remote, tmp_path):
    from agents.decision_agent import DecisionAgent
    from agents.executor_agent import Executor

    url, manager, settings, _ = gateway
    data = tmp_path / "labels.jsonl"
    data.write_text("\n".join(json.dumps({"text": t, "label": lab}) for t, lab in
                              [("I love it", "positive"), ("I hate it", "negative"), ("Great", "positive")]))
    executor = Executor(settings, manager, server=None)
    agent = DecisionAgent(lambda: [r.name for r in manager.available()])
    try:
        for other in ("far", f"{remote.url}/v1#demo-q4_k_m"):  # by name, and as URL#MODEL of a registered endpoint
            result = executor.execute(agent.parse(f"agreement of demo-q4_k_m and {other} on {data}"))
            assert result.ok, result
            report = result.report
            assert report.examples == 3
            # The same greedy model on both sides: the same answers, word for word.
            assert report.exact_match_rate == 1.0 and report.variant_b in (other, "demo-q4_k_m@" + other[:-12])
    finally:
        executor.close()


# -- the default model ---------------------------------------------------------------------------------

def test_switch_persists_across_a_restart(gateway, demo_dir):
    url, manager, settings, _ = gateway
    switched = httpx.post(f"{url}/model/switch/far", json={"fallbacks": ["demo-q4_k_m"]})
    assert switched.json() == {"model": "far", "fallbacks": ["demo-q4_k_m"], "chain": ["far", "demo-q4_k_m"]}
    assert httpx.post(f"{url}/model/switch/nope").status_code == 404
    again = ModelManager(settings)  # what a restarted server (or the shell) reads
    server = BackgroundServer(settings.model_copy(update={"port": 0}), Library(settings, again))
    try:
        other = server.start().url
        assert httpx.get(f"{other}/model/active").json()["chain"] == ["far", "demo-q4_k_m"]
        r = httpx.post(f"{other}/v1/chat/completions", json={"messages": ASK, **GREEDY}, timeout=60)  # no model
        assert r.status_code == 200 and r.headers["x-lqmf-model"] == "far" and r.json()["model"] == "far"
        assert "x-lqmf-fallback-from" not in r.headers
    finally:
        server.stop()
        again.close()


def test_fallback_moves_a_failed_request_on_and_records_it(gateway):
    url, manager, settings, _ = gateway
    manager.endpoints.put("gone", [f"http://127.0.0.1:{free_port()}/v1"], "m")
    try:
        assert httpx.post(f"{url}/model/switch/gone", json={"fallbacks": ["demo-q4_k_m"]}).status_code == 200
        r = chat(url, "default")
        assert r.status_code == 200, r.text
        assert r.headers["x-lqmf-model"] == "demo-q4_k_m" and r.headers["x-lqmf-fallback-from"] == "gone"
        assert r.json()["model"] == "demo-q4_k_m"
        with httpx.stream("POST", f"{url}/api/chat", timeout=60,
                          json={"model": "default", "messages": ASK, "options": {"num_predict": 4}}) as s:
            assert s.status_code == 200 and s.headers["x-lqmf-fallback-from"] == "gone"
            lines = [json.loads(line) for line in s.iter_lines()]
            assert {line["model"] for line in lines} == {"demo-q4_k_m"} and lines[-1]["done"]
        routes = wait_for(lambda: {r[0] for r in stats(settings, "demo-q4_k_m") if r[3] == "gone"} >=
                          {"/v1/chat/completions", "/api/chat"})
        assert routes, stats(settings, "demo-q4_k_m")
        metrics = httpx.get(f"{url}/metrics").text
        assert 'lqmf_fallbacks_total{from_model="gone",to_model="demo-q4_k_m"} 2.0' in metrics
        # Without a fallback, the failure is the answer, naming the endpoint.
        httpx.post(f"{url}/model/switch/gone")
        alone = chat(url, "default")
        assert alone.status_code == 503 and "gone" in alone.json()["error"]["message"]
        # An endpoint removed leaves the default chain with it.
        httpx.post(f"{url}/model/switch/gone", json={"fallbacks": ["demo-q4_k_m"]})
        assert httpx.delete(f"{url}/endpoints/gone").status_code == 200
        assert httpx.get(f"{url}/model/active").json()["chain"] == ["demo-q4_k_m"]
    finally:
        httpx.post(f"{url}/model/switch/far")
        if manager.endpoints.fleet("gone") is not None:
            manager.remotes.remove("gone")


# -- a fleet ------------------------------------------------------------------------------------------------

def test_a_fleet_is_routed_and_survives_a_member_killed_mid_run(gateway, demo_dir, tmp_path_factory):
    url, manager, settings, _ = gateway
    members = []
    for i in range(2):
        home = tmp_path_factory.mktemp(f"member-{i}")
        members.append(LQMFProcess(home, demo_dir, preload="demo-q4_k_m"))
    try:
        httpx.post(f"{url}/endpoints", timeout=30, json={"name": "pool", "urls": [f"{m.url}/v1" for m in members],
                                                         "model": "demo-q4_k_m"}).raise_for_status()
        params = GenerationParams(max_tokens=24, temperature=0, ignore_eos=True)
        threads = [threading.Thread(target=manager.generate, args=("pool", ASK, params)) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        fleet = manager.endpoints.fleet("pool")
        served = [m.served for m in fleet.members]
        assert sum(served) == 8 and min(served) >= 2, served  # least outstanding spreads them
        outcomes: list[tuple[float, object]] = []
        stop = threading.Event()

        def client():
            while not stop.is_set():
                try:
                    manager.generate("pool", ASK, params)
                    outcomes.append((time.monotonic(), "ok"))
                except RemoteError as exc:
                    outcomes.append((time.monotonic(), exc))

        clients = [threading.Thread(target=client) for _ in range(3)]
        for c in clients:
            c.start()
        time.sleep(1.5)
        killed_at = time.monotonic()
        members[1].kill()
        time.sleep(2.5)
        stop.set()
        for c in clients:
            c.join(60)
        failures = [o for _, o in outcomes if o != "ok"]
        after = [o for at, o in outcomes if at > killed_at + 0.5]
        # Only requests mid-answer on the killed member may fail (one per client at most), naming it.
        assert len(failures) <= 3 and all(members[1].url in f.message for f in failures), failures
        assert after and all(o == "ok" for o in after)
        assert fleet.members[1].healthy is False and fleet.health().startswith("degraded")
        assert fleet.members[0].served > served[0] + len(after) - 1
        # The member comes back on its port: the next health probe (what a server runs every
        # LQMF_PROBE_INTERVAL_S) takes it back, and it serves again.
        home = tmp_path_factory.mktemp("member-1-again")
        members[1] = LQMFProcess(home, demo_dir, preload="demo-q4_k_m", port=members[1].port)
        manager.endpoints.refresh(max_age_s=0)
        assert fleet.health() == "up"
        before = fleet.members[1].served
        threads = [threading.Thread(target=manager.generate, args=("pool", ASK, params)) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert fleet.members[1].served > before
    finally:
        manager.unload("pool")
        manager.endpoints.remove("pool")
        for m in members:
            if m.proc.poll() is None:
                m.stop()


# -- llama-server as the remote ----------------------------------------------------------------------------

def test_llama_server_as_a_remote_endpoint(gateway, demo_dir):
    from agents.models.export import export_plan, llama_server_binary

    url, manager, settings, _ = gateway
    if llama_server_binary(settings) is None:
        pytest.skip("llama-server is not built here (`make tools` builds it)")
    record = manager.record("demo-q4_k_m")
    port = free_port()
    plan = export_plan(record, "llama-server", settings=settings, host="127.0.0.1", port=port)
    proc = subprocess.Popen(plan.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: _up(f"http://127.0.0.1:{port}/health"), 60)
        fleet = manager.endpoints.put("llama", [f"http://127.0.0.1:{port}"])  # no model: the one it lists
        assert fleet.health() == "up" and fleet.remote_model() == "demo-q4_k_m" and fleet.dialect() == "llama.cpp"
        job = manager.stream("llama", ASK, GenerationParams(max_tokens=12, temperature=0))
        chunks = list(job)
        assert "".join(c.text for c in chunks) and chunks[-1].finish_reason in ("stop", "length")
        assert chunks[-1].timings.completion_tokens > 0 and chunks[-1].timings.time_to_first_token_s > 0
        r = httpx.post(f"{url}/v1/completions", json={"model": "llama", "prompt": "Once upon", "max_tokens": 5,
                                                       "temperature": 0}, timeout=60)
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] > 0
    finally:
        manager.unload("llama")
        if manager.endpoints.fleet("llama"):
            manager.endpoints.remove("llama")
        end_process(proc, 10)


def _up(health: str) -> bool:
    try:
        return httpx.get(health, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


# -- the shell ----------------------------------------------------------------------------------------------

def test_the_shell_adds_lists_uses_and_removes_endpoints(remote, demo_dir, tmp_path, keyed_env):
    from tests.test_shell import cli

    home = tmp_path / "shell-home"
    home.mkdir()
    HOMES.append(home)
    added = cli(["-c", f"add endpoint far at {remote.url}/v1 model demo-q4_k_m key from {KEY_ENV}"], home, demo_dir)
    assert added.returncode == 0 and "far" in added.stdout and "registered: up" in added.stdout, added.stdout
    listed = cli(["-c", "list endpoints"], home, demo_dir)
    assert "far" in listed.stdout and "up" in listed.stdout and f"${KEY_ENV}" in listed.stdout
    models = cli(["--json", "-c", "list models"], home, demo_dir)
    far = next(m for m in json.loads(models.stdout)["result"]["models"] if m["name"] == "far")
    assert far["format"] == "remote" and far["remote"]["health"] == "up"
    used = cli(["-c", "use far then demo-q4_k_m"], home, demo_dir)
    assert used.returncode == 0 and "Default model: far" in used.stdout
    assert json.loads((home / "memory" / "active_model.json").read_text())["chain"] == ["far", "demo-q4_k_m"]
    bench = cli(["--json", "-c", "benchmark far"], home, demo_dir)
    assert bench.returncode == 0, bench.stdout + bench.stderr
    assert json.loads(bench.stdout)["result"]["rows"][0]["measured_over"] == "http"
    refused = cli(["-c", f"add endpoint x at {remote.url}/v1 key {KEY}"], home, demo_dir)
    assert refused.returncode == 1 and "never the key" in refused.stdout
    removed = cli(["-c", "remove endpoint far"], home, demo_dir)
    assert removed.returncode == 0 and "removed" in removed.stdout
    assert "far" not in cli(["-c", "list endpoints"], home, demo_dir).stdout


def test_endpoint_lines_parse_and_a_typed_key_is_refused_and_never_kept(tmp_path):
    from agents.decision_agent import DecisionAgent
    from agents.intents import Intent
    from cli.shell import SecretSafeHistory

    agent = DecisionAgent(lambda: ["demo-q4_k_m", "demo-f16"])
    add = agent.parse("add endpoint big at http://10.0.0.5:8000/v1, http://10.0.0.6:8000 model qwen key from VLLM_KEY")
    assert add.intent is Intent.ADD_ENDPOINT and add.slots.name == "big" and add.slots.key_env == "VLLM_KEY"
    assert add.slots.urls == ["http://10.0.0.5:8000/v1", "http://10.0.0.6:8000"] and add.slots.remote_model == "qwen"
    assert agent.parse("remove endpoint big").slots.name == "big"
    assert agent.parse("list endpoints").intent is Intent.LIST_ENDPOINTS
    use = agent.parse("use big then q4_k_m")
    assert use.intent is Intent.USE_MODEL and use.slots.models == ["big", "demo-q4_k_m"]
    export = agent.parse("export demo-f16 for llama server")
    assert export.intent is Intent.EXPORT_MODEL
    assert (export.slots.model, export.slots.kind) == ("demo-f16", "llama-server")
    typed = f"add endpoint x at http://10.0.0.5:8000/v1 key {KEY}"
    refused = agent.parse(typed)
    assert refused.question and "never the key" in refused.question and not refused.slots.urls
    history = SecretSafeHistory(str(tmp_path / "history"))
    history.store_string(typed)
    history.store_string("list endpoints")
    text = (tmp_path / "history").read_text()
    assert KEY not in text and "list endpoints" in text


def test_chat_without_a_name_talks_to_the_default(gateway):
    from agents import results as r
    from agents.decision_agent import DecisionAgent
    from agents.executor_agent import Executor

    url, manager, settings, _ = gateway
    executor = Executor(settings, manager, server=None)
    agent = DecisionAgent(lambda: [rec.name for rec in manager.available()])
    manager.endpoints.put("gone2", [f"http://127.0.0.1:{free_port()}/v1"], "m")
    try:
        manager.routing.use(["far"])
        started = executor.execute(agent.parse("chat"))
        assert isinstance(started, r.ChatStart) and started.model == "far"
        manager.routing.use(["gone2", "demo-q4_k_m"])  # the first cannot be reached: chat goes to the next
        assert executor.execute(agent.parse("chat")).model == "demo-q4_k_m"
    finally:
        manager.routing.use(["far"])
        manager.remotes.remove("gone2")
        executor.close()


def test_the_readme_walkthrough_runs_as_written(remote, demo_dir, tmp_path, monkeypatch):
    """The "Local vs remote" shell lines of docs/remote-and-scale-out.md, in one script, against the remote."""
    import re

    from tests.test_shell import cli

    section = (REPO / "docs/remote-and-scale-out.md").read_text().split("## Local vs remote", 1)[1].split("\n## ", 1)[0]
    lines = [line[len("lqmf> "):] for line in re.search(r"```text\n(.*?)```", section, re.S).group(1).splitlines()
             if line.startswith("lqmf> ")]
    assert len(lines) >= 6 and any(line.startswith("add endpoint") for line in lines)
    script = tmp_path / "walkthrough.txt"
    script.write_text("\n".join(line.replace("127.0.0.1:8001", f"127.0.0.1:{remote.port}") for line in lines))
    home = tmp_path / "walk-home"
    home.mkdir()
    HOMES.append(home)
    monkeypatch.setenv("REMOTE_KEY", KEY)  # README's example secret is the remote's real key here
    run = cli(["--json", "--script", str(script)], home, demo_dir)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    results = json.loads("[" + re.sub(r"\}\s*\{", "},{", run.stdout.strip()) + "]")
    by_intent = {r["command"]["intent"]: r["result"] for r in results}
    compare = by_intent["COMPARE_MODELS"]
    assert compare["reference"] == "demo-f16" and any("far is remote" in n for n in compare["notes"])
    assert by_intent["EXPORT_MODEL"]["command"].split()[1:3] == ["-m", str(demo_dir / "demo-q4_k_m.gguf")]


def test_the_key_is_nowhere_on_disk():
    """Last: every home these tests wrote (databases, logs, reports, config, history) lacks the key."""
    assert len(HOMES) >= 3
    needle = KEY.encode()
    for home in HOMES:
        for path in home.rglob("*"):
            if path.is_file():
                assert needle not in path.read_bytes(), f"the key was written into {path}"
