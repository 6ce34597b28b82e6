"""The shell end to end: a real terminal (pty), the machine faces (--parse, -c, --script, --json)."""

from __future__ import annotations

import csv
import json
import os
import pty
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from agents.chat_session import ChatSession
from lqmf.base.generation import GenerationParams
from tests.conftest import REPO


def shell_env(home, models) -> dict[str, str]:
    return {**os.environ, "LQMF_HOME": str(home), "LQMF_MODELS_DIR": str(models), "TERM": "dumb",
            "NO_COLOR": "1", "COLUMNS": "200", "LINES": "50"}


def cli(args, home, models, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "cli/api_cli.py", *args], cwd=REPO, env=shell_env(home, models),
                          input=stdin, capture_output=True, text=True, timeout=180)


class Terminal:
    """A child process on a pseudo-terminal: send keys, wait for output."""

    def __init__(self, argv, env) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: the pty is its controlling terminal (Ctrl-C sends SIGINT)
            # As from a login shell: default signal dispositions (a library in this test process may
            # have set SIGINT to "ignore", which exec would pass on).
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
            os.chdir(REPO)
            os.execvpe(argv[0], argv, env)
        self.buffer = ""
        self.mark = 0

    def send(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def key(self, control: str) -> None:
        """A control key, once the prompt has switched the terminal to raw mode (a person is never faster)."""
        time.sleep(0.5)
        os.write(self.fd, control.encode())

    def expect(self, pattern: str, timeout: float = 60) -> re.Match:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.buffer, self.mark)
            if match:
                self.mark = match.end()
                return match
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {pattern!r} within {timeout}s; output since mark:\n"
                                     f"{self.buffer[self.mark:][-3000:]}")
            ready, _, _ = select.select([self.fd], [], [], min(left, 0.2))
            if ready:
                try:
                    data = os.read(self.fd, 65536)
                except OSError:
                    data = b""
                if not data:
                    raise AssertionError(f"the shell ended; waiting for {pattern!r}; output:\n{self.buffer[-3000:]}")
                self.buffer += re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", data.decode(errors="replace")).replace("\r", "")

    def wait(self, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
            ready, _, _ = select.select([self.fd], [], [], 0.05)
            if ready:
                try:
                    self.buffer += os.read(self.fd, 65536).decode(errors="replace")
                except OSError:
                    pass
        os.kill(self.pid, signal.SIGKILL)
        raise AssertionError(f"the shell did not exit; output:\n{self.buffer[-2000:]}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_session_end_to_end(demo_dir, home):
    port = free_port()
    term = Terminal([sys.executable, "cli/api_cli.py"], shell_env(home, demo_dir))
    term.expect(r"demo-q4_k_m")  # the start-up listing
    term.expect(r"lqmf> ")
    term.send("list models\r")
    term.expect(r"demo-gptq-4bit")
    term.expect(r"lqmf> ")
    term.send("laod model demo-q4_k_m\r")
    term.expect(r"loaded demo-q4_k_m \(gguf q4_k_m\)")
    term.send(f"start server on port {port}\r")
    term.expect(rf"API server running at http://127.0.0.1:{port}")
    loaded = httpx.get(f"http://127.0.0.1:{port}/models").json()["models"]
    assert [m["name"] for m in loaded] == ["demo-q4_k_m"]  # the shell's manager serves the API
    answer = httpx.post(f"http://127.0.0.1:{port}/models/demo-q4_k_m/chat",
                        json={"message": "What does shuffle do?", "max_tokens": 8}).json()
    assert answer["tokens_generated"] > 0
    term.send("show api status\r")
    term.expect(r"Loaded models")
    term.send("chat with demo-q4_k_m\r")
    term.expect(r"Chatting with demo-q4_k_m")
    term.send("What does shuffle do?\r")
    term.expect(r"\d+ tokens in [\d.]+ s, [\d.]+ tokens/s")
    term.send("/set temperature 0.2\r")
    term.expect(r"temperature = 0.2")
    term.send("What does it return?\r")
    term.expect(r"tokens/s")
    term.send("/stats\r")
    term.expect(r"2 replies, \d+ tokens, .* 2 turns in context; temperature 0.2")
    term.send("/exit\r")
    term.expect(r"lqmf> ")
    term.send("unload model demo-q4_k_m\r")
    term.expect(r"unloaded demo-q4_k_m")
    term.send("stop server\r")
    term.expect(r"stopped")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))  # the port is free again
    term.send("exit\r")
    assert term.wait() == 0


def test_ctrl_c_stops_a_generation_and_the_shell_lives_on(demo_dir, home):
    term = Terminal([sys.executable, "cli/api_cli.py"], shell_env(home, demo_dir))
    term.expect(r"lqmf> ")
    term.send("chat with demo-hf\r")
    term.expect(r"Chatting with demo-hf")
    term.send("/set ignore_eos on\r")
    term.expect(r"ignore_eos = True")
    term.send("/set max_tokens 1000\r")
    term.expect(r"max_tokens = 1000")
    term.send("Tell me everything.\r")
    time.sleep(1.5)  # tokens are arriving: 1000 of them take several seconds on demo-hf
    term.send("\x03")  # Ctrl-C
    term.expect(r"stopped")
    term.expect(r"tokens/s \(cancelled\)")
    term.send("/stats\r")
    term.expect(r"1 reply, ")  # one reply, in the singular
    term.send("/exit\r")
    term.expect(r"lqmf> ")
    term.key("\x03")  # Ctrl-C at the prompt: nothing happens
    term.send("list models\r")
    term.expect(r"demo-bnb-int8")
    term.expect(r"lqmf> ")
    term.key("\x04")  # Ctrl-D quits
    assert term.wait() == 0


def test_parse_prints_json(demo_dir, home):
    out = cli(["--parse", "strat server on port 8123"], home, demo_dir)
    parsed = json.loads(out.stdout)
    assert (parsed["intent"], parsed["slots"]) == ("START_API_SERVER", {"port": 8123})
    assert 0 < parsed["confidence"] <= 1
    many = cli(["--parse", "-"], home, demo_dir, stdin="load q4_k_m\ncompare demo-f16 and demo-q8_0\nexit\n")
    lines = [json.loads(line) for line in many.stdout.splitlines()]
    assert (lines[0]["intent"], lines[0]["slots"]) == ("LOAD_MODEL_API", {"model": "demo-q4_k_m"})
    assert (lines[1]["intent"], lines[1]["slots"]) == ("COMPARE_MODELS", {"models": ["demo-f16", "demo-q8_0"],
                                                                          "model": "demo-f16"})
    assert lines[2]["intent"] == "EXIT"


def test_one_command_and_exit_codes(demo_dir, home):
    ok = cli(["-c", "load demo-q8_0"], home, demo_dir)
    assert ok.returncode == 0 and "loaded demo-q8_0" in ok.stdout
    missing = cli(["-c", "load nope"], home, demo_dir)
    assert missing.returncode == 1 and "no model named 'nope'" in missing.stdout
    question = cli(["-c", "load"], home, demo_dir)
    assert question.returncode == 1 and "Which model" in question.stdout
    unknown = cli(["-c", "frobnicate"], home, demo_dir)
    assert unknown.returncode == 1 and "Did you mean" in unknown.stdout
    refused = cli(["-c", "quantize demo-hf to 4-bit gguf"], home, demo_dir)  # demo-q4_k_m.gguf is there
    assert refused.returncode == 1 and "already exists" in refused.stdout
    once = cli(["-c", 'ask demo-q4_k_m "What does shuffle do?"'], home, demo_dir)
    assert once.returncode == 0 and re.search(r"tokens/s \((stop|length)\)", once.stdout)


def test_script_and_json(demo_dir, home, tmp_path):
    script = tmp_path / "commands.lqmf"
    script.write_text("# a comment\nload demo-q8_0\nshow loaded models\nunload demo-q8_0\n")
    run = cli(["--script", str(script)], home, demo_dir)
    assert run.returncode == 0
    assert run.stdout.index("loaded demo-q8_0") < run.stdout.index("Loaded models") < run.stdout.index("unloaded")
    as_json = cli(["--json", "-c", "list models"], home, demo_dir)
    payload = json.loads(as_json.stdout)
    assert payload["command"]["intent"] == "LIST_MODELS"
    assert {m["name"] for m in payload["result"]["models"]} >= {"demo-q4_k_m", "demo-hf"}


def test_several_models_are_each_loaded_unloaded_and_removed(demo_dir, home, tmp_path):
    """ "load A and B" loads both (it used to load A and drop B silently); "remove A and B" asks one question that
    names both, refuses while one is loaded, and removes each."""
    script = tmp_path / "two.lqmf"
    script.write_text("load demo-q8_0 and demo-q4_k_m\nshow loaded models\nunload demo-q8_0 and demo-q4_k_m --yes\n"
                      "show loaded models\n")
    run = cli(["--script", str(script)], home, demo_dir)
    assert run.returncode == 0, run.stdout
    assert "loaded demo-q8_0; loaded demo-q4_k_m" in run.stdout
    first, second = run.stdout.split("unloaded demo-q8_0, demo-q4_k_m")
    assert "demo-q8_0" in first.split("Loaded models")[1] and "demo-q4_k_m" in first.split("Loaded models")[1]
    assert "demo-q8_0" not in second and "demo-q4_k_m" not in second
    models = tmp_path / "models"  # a private copy: this removes models
    shutil.copytree(demo_dir, models, symlinks=True)
    asked = cli(["-c", "remove demo-q8_0 and demo-f16"], home, models)
    assert asked.returncode == 1 and re.search(r"Remove 2 models, .+ in all: demo-q8_0 \(.+\); demo-f16 \(",
                                                asked.stdout), asked.stdout
    assert (models / "demo-q8_0.gguf").is_file() and (models / "demo-f16.gguf").is_file()
    busy = tmp_path / "busy.lqmf"  # refused before the question while one of them is loaded: nothing removed
    busy.write_text("load demo-q8_0\nremove demo-f16 and demo-q8_0 --yes\n")
    refused = cli(["--script", str(busy)], home, models)
    assert refused.returncode == 1 and "demo-q8_0" in refused.stdout and "loaded" in refused.stdout, refused.stdout
    assert (models / "demo-q8_0.gguf").is_file() and (models / "demo-f16.gguf").is_file()
    removal = cli(["-c", "remove demo-q8_0 and demo-f16 --yes"], home, models)
    assert removal.returncode == 0 and "2 models removed" in removal.stdout, removal.stdout
    assert not (models / "demo-q8_0.gguf").exists() and not (models / "demo-f16.gguf").exists()


def test_unloading_everything_unloads_each_loaded_model(demo_dir, home, tmp_path):
    """ "unload everything" (or "take everything out of memory") is every loaded model; with none, it says so."""
    script = tmp_path / "all.lqmf"
    script.write_text("load demo-q8_0 and demo-q4_k_m\ntake everything out of memory --yes\nshow loaded models\n")
    run = cli(["--script", str(script)], home, demo_dir)
    assert run.returncode == 0, run.stdout
    unloaded = re.search(r"unloaded (\S+), (\S+)", run.stdout)
    assert unloaded and set(unloaded.groups()) == {"demo-q8_0", "demo-q4_k_m"}, run.stdout
    after = run.stdout[unloaded.end():]
    assert "demo-q8_0" not in after and "demo-q4_k_m" not in after
    nothing = cli(["-c", "unload everything --yes"], home, demo_dir)
    assert nothing.returncode == 1 and "nothing is loaded" in nothing.stdout, nothing.stdout


def test_history_is_kept_under_lqmf_home(demo_dir, home):
    term = Terminal([sys.executable, "cli/api_cli.py"], shell_env(home, demo_dir))
    term.expect(r"lqmf> ")
    term.send("show config\r")
    term.expect(r"models_dir")
    term.send("exit\r")
    assert term.wait() == 0
    assert "show config" in (home / "memory" / "shell_history").read_text()


def test_no_heavy_import_at_start_up(demo_dir, home):
    proc = subprocess.run([sys.executable, "-X", "importtime", "cli/api_cli.py", "-c", "list models"], cwd=REPO,
                          env=shell_env(home, demo_dir), capture_output=True, text=True, timeout=120)
    imported = {line.split("|")[-1].strip().split(".")[0] for line in proc.stderr.splitlines() if "|" in line}
    assert proc.returncode == 0 and "rich" in imported
    assert not imported & {"torch", "transformers", "llama_cpp", "gptqmodel", "bitsandbytes"}


def test_chat_slash_commands(tmp_path):
    session = ChatSession(library=None, model="m")
    assert session.slash("/set temperature 0.2").message == "temperature = 0.2"
    assert session.params.temperature == 0.2
    assert "cannot set" in session.slash("/set temperature -1").message
    assert "usage" in session.slash("/set colour red").message
    assert session.slash("/system Be brief.").message.startswith("system prompt set")
    assert session.messages("hi")[0] == {"role": "system", "content": "Be brief."}
    session.history = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    assert session.slash("/clear").message == "conversation cleared" and session.history == []
    assert session.slash("/exit").leave and "unknown command" in session.slash("/fly").message
    assert isinstance(session.params, GenerationParams)


def test_exit_stops_the_server(demo_dir, home):
    port = free_port()
    term = Terminal([sys.executable, "cli/api_cli.py"], shell_env(home, demo_dir))
    term.expect(r"lqmf> ")
    term.send(f"start server on port {port}\r")
    term.expect(r"API server running")
    assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200
    term.send("exit\r")
    assert term.wait() == 0
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))


def test_llm_assist_over_an_openai_endpoint(demo_dir, home, tmp_path):
    """LQMF_ASSIST_URL sends what the rules cannot place to a real endpoint (our own server here).

    The demo model answers no JSON, so the command stays UNKNOWN: the assist can never make things worse.
    """
    from lqmf.api import Library
    from lqmf.base.settings import Settings
    from server.http.runner import BackgroundServer
    from server.runtime.manager import ModelManager

    settings = Settings(home=tmp_path, models_dir_override=demo_dir, port=0)
    manager = ModelManager(settings)
    server = BackgroundServer(settings, Library(settings, manager))
    url = server.start().url
    try:
        env = {**shell_env(home, demo_dir), "LQMF_ASSIST_URL": f"{url}/v1", "LQMF_ASSIST_REMOTE_MODEL": "demo-q4_k_m"}
        out = subprocess.run([sys.executable, "cli/api_cli.py", "-c", "gimme the goods"], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 1 and "Did you mean" in out.stdout
        metrics = httpx.get(f"{url}/metrics").text
        assert 'lqmf_requests_total{method="POST",route="/v1/chat/completions",status="200"} 1.0' in metrics
        ruled = subprocess.run([sys.executable, "cli/api_cli.py", "-c", "list models"], cwd=REPO, env=env,
                               capture_output=True, text=True, timeout=120)
        assert ruled.returncode == 0  # the rules placed it: no second request
        assert 'status="200"} 1.0' in httpx.get(f"{url}/metrics").text
    finally:
        server.stop()
        manager.close()


def test_completion_of_commands_and_model_names():
    from prompt_toolkit.document import Document

    from cli.shell import ShellCompleter

    completer = ShellCompleter(lambda line: ["demo-q4_k_m", "demo-q8_0", "demo-hf"])

    def complete(text: str) -> list[str]:
        return [c.text for c in completer.get_completions(Document(text), None)]

    assert "load model" in complete("lo") and "list models" in complete("li")
    assert complete("load demo-q") == ["demo-q4_k_m", "demo-q8_0"]
    assert complete("chat with demo-h") == ["demo-hf"]


def test_alt_enter_makes_multi_line_input():
    from prompt_toolkit import PromptSession
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput

    from cli.shell import key_bindings

    with create_pipe_input() as pipe:
        session = PromptSession(input=pipe, output=DummyOutput(), key_bindings=key_bindings())
        pipe.send_text("first line\x1b\rsecond line\r")
        assert session.prompt("> ") == "first line\nsecond line"


def test_debug_mode_re_raises(demo_dir, tmp_path):
    from agents.decision_agent import DecisionAgent
    from agents.executor_agent import Executor
    from lqmf.api import Library
    from lqmf.base.errors import ModelNotFound
    from lqmf.base.settings import Settings
    from server.http.runner import BackgroundServer
    from server.runtime.manager import ModelManager

    for debug in (False, True):
        settings = Settings(home=tmp_path, models_dir_override=demo_dir, debug=debug)
        manager = ModelManager(settings)
        executor = Executor(settings, manager, BackgroundServer(settings, Library(settings, manager)))
        command = DecisionAgent(lambda: []).parse("load nope")
        try:
            if debug:
                with pytest.raises(ModelNotFound):
                    executor.execute(command)
            else:
                result = executor.execute(command)
                assert not result.ok and "no model named 'nope'" in result.message
        finally:
            manager.close()


def test_experiments_from_the_shell(demo_dir, home):
    """fidelity, benchmark, compare and the history through the real shell; progress bars, tables, a report."""
    fidelity = cli(["--json", "-c", "fidelity of q4_k_m"], home, demo_dir)
    assert fidelity.returncode == 0, fidelity.stderr
    result = json.loads(fidelity.stdout)["result"]
    assert result["type"] == "ExperimentResult" and result["reference"] == "demo-f16"
    assert Path(result["report_path"]).is_file() and Path(result["report_path"]).parent == home / "reports"
    drawn = cli(["-c", "benchmark demo-q4_k_m and demo-q8_0"], home, demo_dir)
    assert drawn.returncode == 0, drawn.stderr
    assert "Speed (ranked by generation tok/s)" in drawn.stdout and "demo-q8_0" in drawn.stdout
    assert "fastest:" in drawn.stdout
    history = cli(["-c", "list experiments"], home, demo_dir)
    assert "fidelity" in history.stdout and "benchmark" in history.stdout and "done" in history.stdout
    stats = cli(["-c", "show statistics"], home, demo_dir)
    assert stats.returncode == 0 and "experiments" in stats.stdout
    one = cli(["--json", "-c", "show statistics for demo-q8_0"], home, demo_dir)
    of_one = json.loads(one.stdout)["result"]["values"]
    assert of_one["model"] == "demo-q8_0" and of_one["experiments"] == 1  # the benchmark; the fidelity was q4_k_m's
    missing = cli(["-c", "batch demo-q4_k_m nowhere.txt"], home, demo_dir)
    assert missing.returncode == 1 and "no file at" in missing.stdout


def test_agreement_from_the_shell(demo_dir, home, tmp_path):
    data = tmp_path / "labels.jsonl"
    data.write_text('{"text": "def f(): return 1", "label": "code"}\n'
                    '{"text": "Hello there, friend.", "label": "prose"}\n')
    out = cli(["--json", "-c", f"agreement of demo-f16 and demo-q8_0 on {data}"], home, demo_dir)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)["result"]["report"]
    assert report["examples"] == 2 and report["labels"] == ["code", "prose"]
    # Records, not lines: a model's answer may hold newlines (a quoted CSV field then spans lines), and
    # which answer a demo model gives depends on the machine it was trained and run on.
    with open(report["csv_path"], newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert len(rows) == 3 and rows[0][:3] == ["index", "text", "label"]
    assert [row[:3] for row in rows[1:]] == [["0", "def f(): return 1", "code"],
                                             ["1", "Hello there, friend.", "prose"]]
    history = json.loads(cli(["--json", "-c", "list experiments"], home, demo_dir).stdout)["result"]["experiments"]
    assert history[0]["kind"] == "agreement" and history[0]["status"] == "done"


def json_objects(text: str) -> list[dict]:
    """Every JSON document printed one after another (--json pretty-prints each)."""
    decoder, objects, at = json.JSONDecoder(), [], 0
    while text[at:].strip():
        at += len(text[at:]) - len(text[at:].lstrip())
        obj, at = decoder.raw_decode(text, at)
        objects.append(obj)
    return objects


def test_a_script_stops_at_its_first_failure_and_names_an_unexpected_error(demo_dir, tmp_path):
    """A handler that raises something that is no LQMF error: its line, the message, the log path; no traceback."""
    import io
    import logging

    from rich.console import Console

    from agents.decision_agent import DecisionAgent
    from agents.executor_agent import Executor
    from agents.intents import Intent
    from cli.api_cli import _NoSession, run_lines
    from cli.shell import Shell
    from lqmf.api import Library
    from lqmf.base.log import configure_logging
    from lqmf.base.settings import Settings
    from server.http.runner import BackgroundServer
    from server.runtime.manager import ModelManager

    settings = Settings(home=tmp_path, models_dir_override=demo_dir)
    handler = configure_logging(settings)
    log_path = settings.logs_dir / "lqmf.log"
    manager = ModelManager(settings)
    executor = Executor(settings, manager, BackgroundServer(settings, Library(settings, manager)))

    def broken(command, progress=None):
        raise RuntimeError("the config fell over")

    executor.handlers[Intent.SHOW_CONFIG] = broken
    agent = DecisionAgent(lambda: [rec.name for rec in manager.available()])

    def run(lines: list[str], as_json: bool = False) -> tuple[int, str]:
        out = io.StringIO()
        console = Console(file=out, width=200, color_system=None, highlight=False)
        shell = Shell(executor, agent, console, as_json=as_json, session=_NoSession(), interactive=False)
        return run_lines(shell, lines, log_path), out.getvalue()

    try:
        code, out = run(["# set-up", "help", "show config", "list models", "", "show api status"])
        assert code == 1
        assert "unexpected error on line 3 (show config): RuntimeError: the config fell over" in out
        assert f"the traceback is in {log_path}" in out
        assert "stopped at line 3: the 2 command lines after it did not run" in out
        assert "Commands (" in out  # line 2 ran; lines 4 and 6 did not
        assert str(demo_dir) not in out and "API server not running" not in out
        assert "Traceback" not in out
        logged = log_path.read_text()
        assert "line 3 ('show config') failed unexpectedly" in logged
        assert "Traceback" in logged and "RuntimeError: the config fell over" in logged

        code, out = run(["help", "show config", "list models"], as_json=True)
        first, error, stopped = json_objects(out)
        assert code == 1 and first["command"]["intent"] == "SHOW_HELP"
        assert error == {"line_number": 2, "line": "show config", "error": {
            "type": "RuntimeError", "message": "the config fell over", "unexpected": True, "log": str(log_path)}}
        assert stopped == {"stopped": {"line_number": 2, "line": "show config", "not_run": 1}}

        # An LQMF error stops the script the same way; the last line failing leaves nothing to report.
        code, out = run(["load nope", "help"])
        assert code == 1 and "no model named 'nope'" in out and "Commands (" not in out
        assert "stopped at line 1: the 1 command line after it did not run" in out
        code, out = run(["help", "show config"])
        assert code == 1 and "unexpected error on line 2" in out and "stopped" not in out
        assert run(["help", "# done"])[0] == 0
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
        manager.close()


def test_a_broken_history_database_is_reported_for_its_line(demo_dir, home, tmp_path):
    """End to end: a corrupt lqmf.db makes `list experiments` raise sqlite3's own error."""
    (home / "memory").mkdir()
    (home / "memory" / "lqmf.db").write_bytes(b"this is not a database, it is a text file" * 100)
    script = tmp_path / "script.txt"
    script.write_text("list models\nlist experiments\nshow config\n")
    log_path = home / "logs" / "lqmf.log"
    run = cli(["--script", str(script)], home, demo_dir)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "demo-q4_k_m" in run.stdout  # line 1 ran
    assert "unexpected error on line 2 (list experiments): DatabaseError: file is not a database" in run.stdout
    assert str(log_path) in run.stdout.replace("\n", "")
    assert "stopped at line 2: the 1 command line after it did not run" in run.stdout
    assert "models_dir" not in run.stdout  # line 3 did not run
    assert "Traceback" not in run.stdout + run.stderr
    assert "Traceback" in log_path.read_text() and "file is not a database" in log_path.read_text()
    as_json = cli(["--json", "--script", str(script)], home, demo_dir)
    assert as_json.returncode == 1 and "Traceback" not in as_json.stderr
    listed, error, stopped = json_objects(as_json.stdout)
    assert listed["command"]["intent"] == "LIST_MODELS"
    assert error["line_number"] == 2 and error["line"] == "list experiments"
    assert error["error"]["type"] == "DatabaseError" and error["error"]["message"] == "file is not a database"
    assert error["error"]["log"] == str(log_path) and stopped["stopped"]["not_run"] == 1


def test_guessed_destructive_commands_ask_and_scripts_fail(demo_dir, home, tmp_path):
    """A corrected word on a guarded intent asks first; -c fails with the question; --yes runs it."""
    asked = cli(["-c", "unlaod demo-q8_0"], home, demo_dir)
    assert asked.returncode == 1
    assert "Did you mean: unload demo-q8_0? [y/N]" in asked.stdout and "add --yes to run it" in asked.stdout
    as_json = cli(["--json", "-c", "stpo server"], home, demo_dir)
    payload = json.loads(as_json.stdout)
    assert as_json.returncode == 1 and payload["result"]["type"] == "Confirm"
    assert payload["command"]["corrections"] == ["stpo -> stop"] and payload["command"]["confidence"] < 1
    script = tmp_path / "yes.lqmf"
    script.write_text("load demo-q8_0\nunlaod demo-q8_0 --yes\n")
    run = cli(["--script", str(script)], home, demo_dir)
    assert run.returncode == 0 and "unloaded demo-q8_0" in run.stdout, run.stdout
    parsed = json.loads(cli(["--parse", "laod demo-q8_0"], home, demo_dir).stdout)
    assert parsed["corrections"] == ["laod -> load"] and parsed["confidence"] < 1


def test_help_topics_and_unknown_lines(demo_dir, home):
    overview = cli(["-c", "help"], home, demo_dir)
    assert overview.returncode == 0 and "Serving" in overview.stdout and "Factory" in overview.stdout
    assert "load demo-" in overview.stdout  # examples name a real model
    topic = cli(["-c", "help quantize"], home, demo_dir)
    assert "with imatrix" in topic.stdout and "list quantizations" in topic.stdout and "chat with" not in topic.stdout
    elephant = cli(["-c", "the purple elephant sings quietly at dawn"], home, demo_dir)
    assert elephant.returncode == 1 and "I did not understand" in elephant.stdout
    assert "Configuration" not in elephant.stdout
    named = cli(["-c", "frobnicate demo-q8_0"], home, demo_dir)
    assert named.returncode == 1
    assert re.search(r"Did you mean: \S+ model demo-q8_0 or \S+ model demo-q8_0", named.stdout)


def test_a_terminal_asks_before_a_guessed_unload_and_answers_questions(demo_dir, home, tmp_path):
    """One pty session: a question answered by number, a guessed unload refused then confirmed, exit in chat,
    then model management: remove refused while loaded, show with lineage, remove asked and confirmed."""
    import shutil

    models = tmp_path / "models"  # this session removes a model: a private copy
    shutil.copytree(demo_dir, models, symlinks=True)
    term = Terminal([sys.executable, "cli/api_cli.py"], shell_env(home, models))
    term.expect(r"lqmf> ")
    term.send("load demo-q8_0\r")
    term.expect(r"loaded demo-q8_0")
    term.send("unload model\r")
    term.expect(r"Which model do you want to unload\?\s+1\. demo-q8_0\s+answer with a number")
    term.expect(r"lqmf> ")
    term.send("1\r")
    term.expect(r"unloaded demo-q8_0")
    term.send("load demo-q8_0\r")
    term.expect(r"loaded demo-q8_0")
    term.send("unlaod demo-q8_0\r")
    term.expect(r"Did you mean: unload demo-q8_0\? \[y/N\]")
    term.send("n\r")
    term.expect(r"Not done\.")
    term.send("show api status\r")
    term.expect(r"Loaded models[\s\S]*│ demo-q8_0", timeout=30)
    term.send("unlaod demo-q8_0\r")
    term.expect(r"Did you mean: unload demo-q8_0\? \[y/N\]")
    term.send("y\r")
    term.expect(r"unloaded demo-q8_0")
    term.send("chat\r")
    term.expect(r"Which model do you want to chat\?")
    term.expect(r"lqmf> ")
    term.send("demo-q8_0\r")
    term.expect(r"Chatting with demo-q8_0")
    term.send("exit\r")
    term.expect(r"leaving chat")
    term.expect(r"lqmf> ")
    term.send("remove demo-q8_0\r")  # chat loaded it
    term.expect(r"demo-q8_0 is loaded, so it cannot be removed")
    term.send("show demo-q8_0\r")
    term.expect(r"lineage \(source → variants\)[\s\S]*demo-hf[\s\S]*demo-q8_0", timeout=30)
    term.send("unload demo-q8_0\r")
    term.expect(r"unloaded demo-q8_0")
    term.send("remove demo-q8_0\r")
    term.expect(r"Remove demo-q8_0 \([^)]*\)\? \[y/N\]")
    term.send("y\r")
    term.expect(r"removed demo-q8_0")
    term.expect(r"lqmf> ")
    term.send("exit\r")
    assert term.wait() == 0
    assert not (models / "demo-q8_0.gguf").exists() and not (models / "demo-q8_0.gguf.lqmf.json").exists()
