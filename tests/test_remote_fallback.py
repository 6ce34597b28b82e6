"""Issue 28, remote and switch: `add endpoint` on a server that lists several models asks (a terminal) or refuses
with the list (-c, HTTP); the shell's chat with the default model walks its fallback chain as HTTP does.

The remote is a real second LQMF on 127.0.0.1 serving the demo models (so it lists several); the shell is the
real one, on a pty or with -c.
"""

from __future__ import annotations

import re
import sys
import tomllib

import httpx
import pytest

from lqmf.base.settings import Settings
from tests.test_server import start_server
from tests.test_shell import Terminal, cli, shell_env


@pytest.fixture(scope="module")
def several(demo_dir, tmp_path_factory):
    """A second LQMF listing every demo model: (its /v1 URL, the ids it lists)."""
    server, manager, url = start_server(demo_dir, tmp_path_factory.mktemp("several-home"), auto_benchmark_every=0)
    ids = [m["id"] for m in httpx.get(f"{url}/v1/models", timeout=30).json()["data"]]
    assert len(ids) > 2, ids
    yield f"{url}/v1", ids
    server.stop()
    manager.close()


def registered(home) -> dict:
    """The endpoints file of a home, as written ({} when there is none)."""
    path = Settings(home=home).endpoints_path
    return tomllib.loads(path.read_text())["endpoints"] if path.exists() else {}


# -- add endpoint: several models and none named ---------------------------------------------------------------

def test_a_script_is_refused_with_the_models_listed_and_the_line_that_names_one(several, demo_dir, tmp_path):
    url, ids = several
    refused = cli(["-c", f"add endpoint far at {url}"], tmp_path, demo_dir)
    text = " ".join(refused.stdout.split())
    assert refused.returncode == 1, text
    assert f"far serves {len(ids)} models: {ids[0]}, {ids[1]}" in text
    assert f"add endpoint far at {url} model {ids[0]}" in text
    assert "far" not in registered(tmp_path)  # nothing half-usable was registered
    # The line the refusal gives runs as written.
    added = cli(["-c", f"add endpoint far at {url} model {ids[1]}"], tmp_path, demo_dir)
    assert added.returncode == 0 and "registered: up" in " ".join(added.stdout.split()), added.stdout
    assert registered(tmp_path)["far"] == {"urls": [url], "model": ids[1]}


def test_post_endpoints_refuses_several_models_without_one_and_names_them(several, demo_dir, tmp_path):
    url, ids = several
    server, manager, gateway = start_server(demo_dir, tmp_path, auto_benchmark_every=0)
    try:
        refused = httpx.post(f"{gateway}/endpoints", json={"name": "far", "url": url}, timeout=30)
        assert refused.status_code == 422, refused.text
        error = refused.json()["error"]
        assert error["message"].startswith(f"far serves {len(ids)} models: {ids[0]}, {ids[1]}")
        assert f'"model": "{ids[0]}"' in error["hint"]
        assert httpx.get(f"{gateway}/endpoints").json()["endpoints"] == []
        added = httpx.post(f"{gateway}/endpoints", json={"name": "far", "url": url, "model": ids[0]}, timeout=30)
        assert added.status_code == 201 and added.json()["endpoint"]["health"] == "up", added.text
    finally:
        server.stop()
        manager.close()


def test_the_shell_asks_which_model_and_adds_the_one_answered(several, demo_dir, tmp_path):
    url, ids = several
    term = Terminal([sys.executable, "cli/api_cli.py"], shell_env(tmp_path, demo_dir))
    term.expect(r"lqmf> ")
    term.send(f"add endpoint far at {url}\r")
    term.expect(rf"far serves {len(ids)} models\. Which one\?")
    term.expect(rf"{len(ids)}\. {re.escape(ids[-1])}")
    term.expect(r"Model \(a number or a name; empty to cancel\): ")
    term.send("2\r")  # by number
    term.expect(r"registered: up")
    term.expect(r"lqmf> ")
    assert registered(tmp_path)["far"]["model"] == ids[1]
    term.send(f"add endpoint near at {url}\r")
    term.expect(r"Model \(a number or a name; empty to cancel\): ")
    term.send(f"{ids[2].upper()}\r")  # by name, however cased
    term.expect(r"registered: up")
    term.expect(r"lqmf> ")
    assert registered(tmp_path)["near"]["model"] == ids[2]
    term.send(f"add endpoint other at {url}\r")
    term.expect(r"Model \(a number or a name; empty to cancel\): ")
    term.send("\r")  # no answer: nothing added, and the line that would add it
    term.expect(rf"Not added\. To add it: add endpoint other at {re.escape(url)} model {re.escape(ids[0])}")
    term.expect(r"lqmf> ")
    assert "other" not in registered(tmp_path)
    term.send("exit\r")
    assert term.wait() == 0


# -- the default model's fallback chain in the shell ----------------------------------------------------------

def test_shell_chat_with_the_default_falls_back_when_the_remote_stops(demo_dir, tmp_path):
    """`use far then demo-q4_k_m`, far stopped: chat mode and a one-shot `ask` answer from demo-q4_k_m and say why."""
    remote, remote_manager, remote_url = start_server(demo_dir, tmp_path / "remote-home", auto_benchmark_every=0)
    home = tmp_path / "shell-home"
    try:
        added = cli(["-c", f"add endpoint far at {remote_url}/v1 model demo-q4_k_m"], home, demo_dir)
        assert added.returncode == 0, added.stdout
        used = cli(["-c", "use far then demo-q4_k_m"], home, demo_dir)
        assert used.returncode == 0 and "Default model: far" in used.stdout, used.stdout
        term = Terminal([sys.executable, "cli/api_cli.py"], shell_env(home, demo_dir))
        term.expect(r"lqmf> ")
        term.send("chat\r")
        term.expect(r"Chatting with far")
        term.send("Name a colour.\r")
        term.expect(r"tokens/s")  # far answers while it is up: no word of a fallback
        assert "answered by" not in term.buffer
        remote.stop()
        term.send("Name another colour.\r")
        term.expect(r"far is unreachable \(connection refused\); answered by demo-q4_k_m")
        term.expect(r"\d+ tokens in [\d.]+ s, [\d.]+ tokens/s")
        term.expect(r"demo-q4_k_m> ")  # the prompt names the model that answered
        term.send("/stats\r")
        term.expect(r"2 replies")
        term.send("/exit\r")
        term.expect(r"lqmf> ")
        term.send("exit\r")
        assert term.wait() == 0
    finally:
        remote.stop()
        remote_manager.close()
    # A fresh shell with far down from the start: a one-shot question falls back the same way.
    once = cli(["-c", 'ask "Name a colour."'], home, demo_dir)
    text = " ".join(once.stdout.split())
    assert once.returncode == 0, text
    assert "far is unreachable (connection refused); answered by demo-q4_k_m" in text
    assert re.search(r"tokens/s \((stop|length)\)", text) and "cannot reach" not in text
