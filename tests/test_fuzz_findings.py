"""Issue 24's fuzz findings, each reproduced through the real server on 127.0.0.1 (and the shell).

1. A registration whose host the resolver cannot take was written to endpoints.toml, then answered
   500; every listing answered 500 from then on, also after a restart.
2. A broken entry in endpoints.toml (by hand, or from an older version) failed every listing.
3. GET /models/NAME answered 500 while other requests renamed or removed the model.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
import tomllib
from collections import Counter

import httpx
import pytest

from lqmf.base.errors import InvalidRequest
from lqmf.base.settings import Settings
from server.runtime.endpoint_spec import normalize_url
from tests.test_server import start_server

# What schemathesis registered (seed 7): every listing answered 500 after it.
FUZZED = {"urls": ["http://0", "https://ZeL^8E6bm0jw", "https://I}", "http://.h6*", "http://H3iU", "https://JF_bXgr",
                   "http://O<}>X", "https://W"], "name": "zero"}
LISTINGS = ("/endpoints", "/models/available", "/v1/models", "/api/tags")
DEAD = "http://127.0.0.1:9/v1"  # the discard port: nothing listens, the connection is refused at once


# -- 1. a URL is validated completely before anything is written ---------------------------------------------

@pytest.mark.parametrize("url", [
    "http://.h6*",                # an empty label: the idna codec (and so getaddrinfo) refuses it
    "http://a..b:8000/v1",        # an empty label inside
    "http://" + "a" * 64 + "/v1",  # a label longer than 63
    "http://" + ".".join(["abcdefghi"] * 26) + "/v1",  # a name longer than 253
    "https://ZeL^8E6bm0jw",       # characters no host name has
    "https://I}", "http://O<}>X", "http://a*b", "http://-lead.example", "http://trail-.example",
    "http://999.1.1.1/v1",        # numeric, but no IPv4 address
    "http://host:0/v1",           # port 0 is no server's
    "http://host:65536/v1",       # out of range
    "http://[zz]/v1",             # brackets hold an IPv6 address only
    "http:///v1",                 # no host
])
def test_a_url_the_resolver_cannot_take_is_refused_with_what_to_do(url):
    with pytest.raises(InvalidRequest) as refused:
        normalize_url(url)
    assert refused.value.hint, "the refusal must say what to give instead"


@pytest.mark.parametrize(("url", "normal"), [
    ("http://0", "http://0/v1"),  # 0.0.0.0, as getaddrinfo reads it
    ("http://127.0.0.1:8000", "http://127.0.0.1:8000/v1"),
    ("http://[::1]:8000/v1/", "http://[::1]:8000/v1"),
    ("https://api.example.com/v1", "https://api.example.com/v1"),
    ("http://vllm_worker-1:8000/v1", "http://vllm_worker-1:8000/v1"),  # compose service names have '_'
    ("http://xn--bcher-kva.example/v1", "http://xn--bcher-kva.example/v1"),  # an IDN in its ASCII form
    ("http://host.example.:8000/v1", "http://host.example.:8000/v1"),  # a fully qualified name
])
def test_a_url_the_resolver_takes_is_accepted(url, normal):
    assert normalize_url(url) == normal


@pytest.fixture(scope="module")
def served(demo_dir, tmp_path_factory):
    home = tmp_path_factory.mktemp("fuzz-findings-home")
    server, manager, url = start_server(demo_dir, home, auto_benchmark_every=0)
    yield url, manager, home
    server.stop()
    manager.close()


def assert_listings_answer(http: httpx.Client) -> dict[str, dict]:
    """Every listing answers 200 (with the local models in the model lists); the bodies by route."""
    bodies = {}
    for route in LISTINGS:
        response = http.get(route)
        assert response.status_code == 200, f"{route}: {response.status_code} {response.text[:500]}"
        bodies[route] = response.json()
    assert "demo-q4_k_m" in {m["name"] for m in bodies["/models/available"]["models"]}
    assert "demo-q4_k_m" in {m["id"] for m in bodies["/v1/models"]["data"]}
    assert "demo-q4_k_m" in {m["name"] for m in bodies["/api/tags"]["models"]}
    return bodies


def test_the_fuzzed_registration_is_a_422_that_names_the_url_and_writes_nothing(served, http):
    home = served[2]
    config = Settings(home=home).endpoints_path
    config.unlink(missing_ok=True)
    response = http.post("/endpoints", json=FUZZED)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert "ZeL^8E6bm0jw" in error["message"] and error["hint"]
    assert not config.exists(), "a refused registration must leave no trace"
    for url in FUZZED["urls"][3:4] + ["http://a..b:8000"]:  # each bad host alone, too
        alone = http.post("/endpoints", json={"name": "zero", "url": url})
        assert alone.status_code == 422 and url in alone.json()["error"]["message"], alone.text
    assert not config.exists()
    assert_listings_answer(http)


def test_the_shell_refuses_the_same_url_and_writes_nothing(demo_dir, tmp_path):
    from tests.test_shell import cli

    added = cli(["-c", "add endpoint zero at http://.h6*"], tmp_path, demo_dir)
    assert added.returncode == 1 and ".h6*" in added.stdout, added.stdout + added.stderr
    assert not (tmp_path / "endpoints.toml").exists()


# -- 2. a broken entry marks its endpoint broken and never fails a listing ------------------------------------

BROKEN = {  # name: (TOML body of [endpoints.NAME], a word the reason must hold)
    "zero": ('urls = ["http://0", "https://ZeL^8E6bm0jw", "http://.h6*"]', "ZeL^8E6bm0jw"),
    "nourl": ('model = "m"', "no URL"),
    "wrongtype": (f'urls = "{DEAD}"', "urls"),
    "badmodel": (f'urls = ["{DEAD}"]\nmodel = 42', "model"),
    "badkey": (f'url = "{DEAD}"\nkey_env = ["A"]', "key_env"),
    "extra": (f'url = "{DEAD}"\nkey = "sk-never-shown-3f9c"', "unknown"),
    '"bad name"': (f'url = "{DEAD}"', "cannot name"),
    "nested": (f'url = "{DEAD}"\n[endpoints.nested.deeper]\nx = 1', "unknown"),
}


def broken_file() -> str:
    lines = ["# written by hand, and by an older LQMF", "[endpoints]", 'scalar = 5', ""]
    for name, (body, _) in BROKEN.items():
        lines += [f"[endpoints.{name}]", body, ""]
    lines += ["[endpoints.dead]", f'url = "{DEAD}"', ""]
    return "\n".join(lines)


def test_broken_entries_are_listed_as_broken_with_the_reason_and_the_rest_works(demo_dir, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    config = Settings(home=home).endpoints_path
    config.write_text(broken_file())
    # A server started over the file (a restart after the fuzzer's visit): it starts, and every listing answers.
    server, manager, url = start_server(demo_dir, home, auto_benchmark_every=0)
    remote, remote_manager, remote_url = start_server(demo_dir, tmp_path / "remote-home", auto_benchmark_every=0)
    try:
        with httpx.Client(base_url=url, timeout=60) as http:
            bodies = assert_listings_answer(http)
            broken_names = {name.strip('"') for name in BROKEN} | {"scalar"}
            listed = {e["name"]: e for e in bodies["/endpoints"]["endpoints"]}
            assert broken_names | {"dead"} <= set(listed)
            for name, (_, word) in [*BROKEN.items(), ("scalar", ("", "table"))]:
                entry = listed[name.strip('"')]
                assert entry["health"] == "broken" and word in entry["broken"], entry
                assert str(config) in entry["broken"] and entry["members"] == []
            assert listed["dead"]["health"] == "down" and listed["dead"].get("broken") is None
            available = {m["name"]: m for m in bodies["/models/available"]["models"]}
            for name in broken_names:
                assert not available[name]["usable"] and available[name]["reason"] == listed[name]["broken"]
            assert available["dead"]["usable"]
            assert broken_names.isdisjoint(m["id"] for m in bodies["/v1/models"]["data"])
            assert "dead" in {m["id"] for m in bodies["/v1/models"]["data"]}
            assert "sk-never-shown-3f9c" not in json.dumps(bodies)
            # A broken endpoint cannot be used, and says why; a local model still answers.
            refused = http.post("/models/zero/load")
            assert refused.status_code == 422 and "ZeL^8E6bm0jw" in refused.json()["error"]["message"]
            chat = http.post("/v1/chat/completions", json={"model": "demo-q4_k_m", "max_tokens": 2,
                                                           "messages": [{"role": "user", "content": "hi"}]})
            assert chat.status_code == 200, chat.text
            # Registering another endpoint keeps the broken entries as they were (fixing them is the owner's call).
            added = http.post("/endpoints", json={"name": "far", "url": f"{remote_url}/v1", "model": "demo-q4_k_m"})
            assert added.status_code == 201 and added.json()["endpoint"]["health"] == "up", added.text
            kept = tomllib.loads(config.read_text())["endpoints"]
            assert kept["extra"]["key"] == "sk-never-shown-3f9c" and kept["badmodel"]["model"] == 42
            assert kept["nested"]["deeper"] == {"x": 1} and kept["scalar"] == 5 and "bad name" in kept
            # Replacing a broken entry fixes it; removing one forgets it.
            fixed = http.post("/endpoints", json={"name": "badmodel", "url": f"{remote_url}/v1",
                                                  "model": "demo-q4_k_m"})
            assert fixed.status_code == 200 and fixed.json()["status"] == "replaced", fixed.text
            assert http.delete("/endpoints/zero").status_code == 200
            kept = tomllib.loads(config.read_text())["endpoints"]
            assert "zero" not in kept and kept["badmodel"]["model"] == "demo-q4_k_m" and "nourl" in kept
            listed = {e["name"]: e for e in assert_listings_answer(http)["/endpoints"]["endpoints"]}
            assert listed["far"]["health"] == "up" and listed["badmodel"]["health"] == "up"
            assert "zero" not in listed and listed["nourl"]["health"] == "broken"
    finally:
        for stopped in (server, remote):
            stopped.stop()
        for closed in (manager, remote_manager):
            closed.close()


def test_the_shell_lists_broken_entries_with_their_reasons(demo_dir, tmp_path):
    from tests.test_shell import cli

    Settings(home=tmp_path).endpoints_path.write_text(broken_file())
    listed = cli(["-c", "list endpoints"], tmp_path, demo_dir)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    text = " ".join(listed.stdout.split())
    assert "zero" in text and "broken" in text and "unknown keys" in text and "sk-never-shown" not in text, text
    models = cli(["--json", "-c", "list models"], tmp_path, demo_dir)
    assert models.returncode == 0, models.stdout + models.stderr
    rows = {m["name"]: m for m in json.loads(models.stdout)["result"]["models"]}
    assert not rows["zero"]["usable"] and "ZeL^8E6bm0jw" in rows["zero"]["reason"] and rows["demo-q4_k_m"]["usable"]
    broken_toml = Settings(home=tmp_path).endpoints_path
    broken_toml.write_text("[endpoints.far\n")
    listed = cli(["-c", "list endpoints"], tmp_path, demo_dir)
    assert listed.returncode == 0 and "not valid TOML" in " ".join(listed.stdout.split()), listed.stdout


def test_a_file_that_is_no_toml_fails_no_listing_and_is_never_overwritten(served, http):
    config = Settings(home=served[2]).endpoints_path
    text = '[endpoints.far]\nurl = "http://127.0.0.1:9/v1"\nthis is not toml\n'
    config.write_text(text)
    try:
        bodies = assert_listings_answer(http)
        assert bodies["/endpoints"]["endpoints"] == []
        assert "not valid TOML" in bodies["/endpoints"]["problem"] and str(config) in bodies["/endpoints"]["problem"]
        # Writing would lose what the owner wrote: refused with what to do, the file untouched.
        refused = http.post("/endpoints", json={"name": "other", "url": DEAD})
        assert refused.status_code == 400 and "TOML" in refused.json()["error"]["message"], refused.text
        assert config.read_text() == text
    finally:
        config.unlink()
    assert "problem" not in http.get("/endpoints").json() or http.get("/endpoints").json()["problem"] is None


# -- 3. showing a model while others rename and remove it -------------------------------------------------------

def test_show_while_the_model_is_renamed_and_removed_is_never_a_500(demo_dir, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    for file in demo_dir.glob("demo-q4_k_m.gguf*"):  # the model and its manifest
        shutil.copy2(file, models / file.name)
    server, manager, url = start_server(models, tmp_path / "home", auto_benchmark_every=0)
    statuses: Counter = Counter()
    wrong: list[str] = []
    stop = threading.Event()

    def change() -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            while not stop.is_set():
                for old, new in (("demo-q4_k_m", "demo-moved"), ("demo-moved", "demo-q4_k_m")):
                    http.post(f"/models/{old}/rename", json={"to": new})
                if http.post("/models/demo-q4_k_m/copy", json={"to": "demo-copy"}).status_code == 201:
                    http.delete("/models/demo-copy")

    def ask(http: httpx.Client, method: str, path: str, **kwargs) -> None:
        try:
            answer = http.request(method, path, **kwargs)
        except httpx.TransportError as exc:  # a server that drops the connection answers worse than a 500
            wrong.append(f"{path}: {exc!r}")
            return
        statuses[answer.status_code] += 1
        if answer.status_code >= 500 or (answer.status_code == 200 and method == "GET"
                                         and not answer.json()["path"].endswith("demo-q4_k_m.gguf")):
            wrong.append(f"{path}: {answer.status_code} {answer.text[:300]}")

    def show() -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            while not stop.is_set():
                ask(http, "GET", "/models/demo-q4_k_m")
                ask(http, "POST", "/api/show", json={"model": "demo-q4_k_m"})

    threads = [threading.Thread(target=change)] + [threading.Thread(target=show) for _ in range(3)]
    try:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60  # until enough answers on both sides of the race (a show takes ~0.1 s)
        while time.monotonic() < deadline and not wrong and not (
                sum(statuses.values()) >= 40 and statuses[200] and statuses[404]):
            time.sleep(0.2)
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
        server.stop()
        manager.close()
    assert not wrong, f"{len(wrong)} wrong answers of {sum(statuses.values())} ({dict(statuses)}): {wrong[:3]}"
    assert statuses[200] and statuses[404], dict(statuses)  # both sides of the race were reached
