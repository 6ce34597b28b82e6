"""The commands README.md and docs/*.md show run as written: curl against the real server, shell lines parsed to
the intent their verb names, `.venv/bin/...` and `make` commands that exist, the README's tour and the library
snippet run on the demo models."""

from __future__ import annotations

import ast
import json
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

# The order the curl examples run in: the server's own pages first (load before unload, copy before rename),
# then endpoints (which switch the default model), then classifiers. Any other page follows, sorted.
PAGE_ORDER = ("README.md", "docs/serving-and-api.md", "docs/experiments-and-fidelity.md",
              "docs/remote-and-scale-out.md", "docs/classifiers.md")
# Languages of fenced blocks that hold no shell commands.
NOT_COMMANDS = ("text", "python", "toml", "mermaid", "json")
# The intent a shell line's first words name (the longest prefix wins). A line shown in the docs whose verb is
# missing here fails: add its verb and the intent the page means.
VERB_INTENTS = {
    "add endpoint": "ADD_ENDPOINT", "agreement of": "AGREEMENT_REPORT", "batch": "BATCH_EXPERIMENT",
    "benchmark": "BENCHMARK_MODELS", "chat with": "CHAT_WITH_MODEL", "check classifier": "CHECK_CLASSIFIER",
    "classify": "CLASSIFY_TEXT", "compare": "COMPARE_MODELS", "conversation with": "CONVERSATION_EXPERIMENT",
    "copy": "COPY_MODEL", "disk usage": "DISK_USAGE", "download": "DOWNLOAD_MODEL", "embed": "EMBED_TEXT",
    "exit": "EXIT", "experiment with": "EXPERIMENT_WITH_MODEL", "export": "EXPORT_MODEL",
    "fidelity of": "FIDELITY_REPORT", "help": "SHOW_HELP", "import": "IMPORT_MODEL",
    "list classifiers": "LIST_CLASSIFIERS", "list endpoints": "LIST_ENDPOINTS",
    "list experiments": "LIST_EXPERIMENTS", "list models": "LIST_MODELS", "list quantizations": "LIST_QUANTIZATIONS",
    "load": "LOAD_MODEL_API", "login": "LOGIN", "quantize": "QUANTIZE_MODEL", "remove endpoint": "REMOVE_ENDPOINT",
    "remove": "REMOVE_MODEL", "rename": "RENAME_MODEL", "show api status": "SHOW_API_STATUS",
    "show config": "SHOW_CONFIG", "show statistics": "SHOW_STATISTICS", "show": "SHOW_MODEL",
    "start server": "START_API_SERVER", "stop server": "STOP_API_SERVER", "train classifier": "TRAIN_CLASSIFIER",
    "unload": "UNLOAD_MODEL_API", "use": "USE_MODEL",
}


def pages() -> list[Path]:
    """README.md and every docs/*.md, in the order their curl examples run."""
    rest = sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").glob("*.md"))
    return [REPO / name for name in (*PAGE_ORDER, *(n for n in rest if n not in PAGE_ORDER))]


def fenced_blocks(page: Path) -> list[tuple[str, str]]:
    """(language, body) of every fenced code block of a page."""
    return re.findall(r"^```(\w*)\n(.*?)^```", page.read_text(), re.S | re.M)


def command_lines(page: Path) -> list[str]:
    """The shell-command lines of a page's command blocks: heredoc bodies and comments left out."""
    lines = []
    for language, body in fenced_blocks(page):
        if language in NOT_COMMANDS:
            continue
        heredoc = None
        for line in body.splitlines():
            if heredoc is not None:
                heredoc = None if line.strip() == heredoc else heredoc
                continue
            marker = re.search(r"<<'?(\w+)'?", line)
            heredoc = marker.group(1) if marker else None
            if line.strip() and not line.startswith(("lqmf> ", "#", " ")):
                lines.append(re.sub(r"\s+#[^'\"]*$", "", line).strip())
    return lines


def heredocs(page: Path) -> list[str]:
    """The Python programs a page feeds to `.venv/bin/python - <<'EOF'`."""
    return [body for language, block in fenced_blocks(page) if language not in NOT_COMMANDS
            for body in re.findall(r"^\.venv/bin/python - <<'(?:\w+)'\n(.*?)^EOF$", block, re.S | re.M)]


def readme_curls() -> list[str]:
    """Every curl example of README.md and docs/*.md, in running order."""
    return [line for page in pages() for line in command_lines(page) if line.startswith("curl ")]


def shell_lines() -> list[str]:
    """Every line typed at the `lqmf> ` prompt in a page, and every `-c "..."` command, comments left out."""
    lines = []
    for page in pages():
        for _, body in fenced_blocks(page):
            lines += [re.sub(r"\s{2,}#.*$", "", line[len("lqmf> "):]).strip()
                      for line in body.splitlines() if line.startswith("lqmf> ")]
        lines += [m.group(1) for line in command_lines(page) for m in re.finditer(r' -c "([^"]+)"', line)]
    return list(dict.fromkeys(lines))


def expected_intent(line: str) -> str | None:
    """The intent named by the line's first words (the longest matching verb), None when no verb matches."""
    words = line.lower()
    verbs = [verb for verb in VERB_INTENTS if words == verb or words.startswith(verb + " ")]
    return VERB_INTENTS[max(verbs, key=len)] if verbs else None


def tour_lines() -> list[str]:
    """The README tour's shell lines, in order."""
    return [line[len("lqmf> "):] for language, body in fenced_blocks(REPO / "README.md") if language == "text"
            for line in body.splitlines() if line.startswith("lqmf> ")]


# -- the curl examples, against the real server --------------------------------------------------------------

needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


@needs_curl
def test_readme_documents_every_endpoint(demo_dir, tmp_path):
    from lqmf.base.settings import Settings
    from server.http.app import create_app

    paths = create_app(Settings(home=tmp_path, models_dir_override=demo_dir)).openapi()["paths"]
    documented = " ".join(readme_curls())
    missing = []
    for path in paths:
        pattern = re.sub(r"\\\{[a-z_]+\\\}", r"[A-Za-z0-9_.\\-]+", re.escape(path))
        if not re.search(r"8000" + pattern + r"(['\s]|$)", documented):
            missing.append(path)
    assert missing == [], missing


@needs_curl
@pytest.mark.parametrize("command", readme_curls())
def test_curl_example_works(command, readme_server):
    url, _ = readme_server
    proc = subprocess.run(["bash", "-c", command.replace("http://127.0.0.1:8000", url) + " -w '\\n%{http_code}'"],
                          capture_output=True, text=True, timeout=120)
    body, _, status = proc.stdout.rpartition("\n")
    assert proc.returncode == 0 and status in ("200", "201"), (command, status, body[-500:])
    if "/metrics" in command:
        assert "lqmf_requests_total" in body
    elif '"stream": true' in command or ("/api/generate" in command and '"prompt"' in command):
        assert body.strip()  # streamed lines
    else:
        json.loads(body)


@pytest.fixture(scope="module")
def readme_server(demo_dir, tmp_path_factory):
    from lqmf.api import Library
    from lqmf.base.settings import Settings
    from server.http.runner import BackgroundServer
    from server.runtime.manager import ModelManager

    settings = Settings(home=tmp_path_factory.mktemp("readme-home"), models_dir_override=demo_dir, port=0)
    manager = ModelManager(settings)
    server = BackgroundServer(settings, Library(settings, manager))
    status = server.start()
    # One recorded experiment (#1), as a person's first `experiment with ...` leaves, for /experiments/1.
    from agents.measure.experiments import ExperimentAgent
    from lqmf.base.generation import GenerationParams
    from memory.store import Store

    store = Store(settings.db_path)
    ExperimentAgent(settings, manager, store).single("demo-q4_k_m", "hello", GenerationParams(max_tokens=4))
    store.close()
    # The docs' classifier, trained on a small cut of its demo data, for /classifiers/code-vs-prose.
    from agents.classifiers.train import TrainRequest, train_classifier
    from agents.demo.classify_data import make_rows, write_csv

    data = write_csv(settings.root / "code-vs-prose.csv", make_rows(per_label=20))
    train_classifier(TrainRequest("code-vs-prose", data, "demo-hf"), settings=settings, manager=manager)
    yield status.url, manager
    server.stop()
    manager.close()


# -- the shell lines: each parses to the intent its verb names ------------------------------------------------

def test_every_shell_line_has_a_known_verb():
    from agents.intents import Intent

    unmapped = [line for line in shell_lines() if expected_intent(line) is None]
    assert unmapped == [], f"add these lines' verbs to VERB_INTENTS: {unmapped}"
    assert set(VERB_INTENTS.values()) <= {intent.name for intent in Intent}


@pytest.fixture(scope="module")
def parsed(demo_dir, tmp_path_factory) -> dict[str, dict]:
    """Every shell line of the docs through `--parse -` (rules and the intent classifier, as the shell reads)."""
    from tests.test_shell import shell_env

    lines = shell_lines()
    # Generous: --parse waits for the classifier, which is rebuilt first when its examples changed.
    run = subprocess.run([sys.executable, "cli/api_cli.py", "--parse", "-"], cwd=REPO, input="\n".join(lines) + "\n",
                         env=shell_env(tmp_path_factory.mktemp("parse-home"), demo_dir),
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    answers = [json.loads(out) for out in run.stdout.splitlines() if out.strip()]
    assert len(answers) == len(lines), run.stdout[-2000:]
    return dict(zip(lines, answers, strict=True))


@pytest.mark.parametrize("line", shell_lines())
def test_shell_line_parses_to_the_intent_shown(line, parsed):
    answer = parsed[line]
    assert answer["intent"] == expected_intent(line), answer
    # A line may ask for a model only because the name it gives is registered earlier on its page
    # (`benchmark far` after `add endpoint far ...`); it must never be unsure of what was meant.
    question = answer.get("question") or ""
    assert not question.startswith("Did you mean"), answer


# -- commands: what they name exists ------------------------------------------------------------------------

def all_commands() -> list[tuple[str, str]]:
    """(page, one command of a pipeline or list) for every command line shown."""
    out = []
    for page in pages():
        for line in command_lines(page):
            for part in re.split(r"\s*(?:\|\||&&|\||;)\s*", line):
                part = re.sub(r"^(?:[A-Z_]+=(?:\"[^\"]*\"|'[^']*'|\S*)\s+)+", "", part.strip())
                if part:
                    out.append((str(page.relative_to(REPO)), part))
    return out


def _makefile_targets() -> set[str]:
    return set(re.findall(r"^([\w.-]+):", (REPO / "Makefile").read_text(), re.M))


@pytest.mark.parametrize(("page", "command"), [c for c in all_commands()
                                               if c[1].startswith((".venv/", "make ", "python"))])
def test_command_names_what_exists(page, command):
    import importlib.util

    words = command.split()
    if words[0] == "make":
        assert set(words[1:]) <= _makefile_targets(), f"{page}: {command}: no such make target"
        return
    assert words[0].startswith(".venv/bin/"), (
        f"{page}: `{command}` needs the virtualenv active; write .venv/bin/python, .venv/bin/lqmf or make")
    program = words[0].removeprefix(".venv/bin/")
    assert program in {"python", "lqmf", "pip", "ruff", "pytest"}, f"{page}: {command}: an unexpected program"
    if (REPO / ".venv" / "bin").is_dir():  # a checkout set up by `make setup`, as every command assumes
        assert (REPO / words[0]).exists(), f"{page}: {command}: no {words[0]}"
    if program == "python" and len(words) > 1:
        if words[1] == "-m":
            assert importlib.util.find_spec(words[2]) is not None, f"{page}: {command}: no module {words[2]}"
        elif words[1].endswith(".py"):
            assert (REPO / words[1]).is_file(), f"{page}: {command}: no file {words[1]}"
    if program == "lqmf" and len(words) > 1 and not words[1].startswith("-"):
        assert words[1] in {"serve", "demo"}, f"{page}: {command}: lqmf has no subcommand {words[1]}"


@pytest.mark.parametrize("page", [p for p in pages() if p.name != "ARCHITECTURE.md"], ids=lambda p: p.name)
def test_no_command_needs_an_active_virtualenv(page):
    """Commands in prose too: `python -m server` fails outside the virtualenv with "No module named 'fastapi'"."""
    spans = re.findall(r"`([^`\n]+)`", re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M))
    spans += [command for name, command in all_commands() if REPO / name == page]
    bare = [s for s in spans if re.match(r"python[\d.]*\s", s) and "-m venv" not in s]
    assert bare == [], f"{page.name}: write .venv/bin/python (or .venv/bin/lqmf, make) instead: {bare}"


# -- Python snippets: they compile, their imports resolve, and the ones about the demo models run ----------------

def _snippets() -> list[tuple[str, str]]:
    return [(str(page.relative_to(REPO)), code) for page in pages() for code in heredocs(page)]


def _names_absent_models(code: str, present: set[str]) -> list[str]:
    """String literals that look like model names but are neither here nor made by the snippet (name=...)."""
    tree = ast.parse(code)
    made = {kw.value.value for node in ast.walk(tree) if isinstance(node, ast.Call) for kw in node.keywords
            if kw.arg == "name" and isinstance(kw.value, ast.Constant)}
    literals = {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)}
    return sorted(s for s in literals - made - present if re.fullmatch(r"[A-Za-z][\w.]*-[\w.-]+", s))


@pytest.mark.parametrize(("page", "code"), _snippets())
def test_python_snippet_runs(page, code, demo_dir, tmp_path):
    import importlib

    tree = ast.parse(code)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = importlib.import_module(node.module)
            assert all(hasattr(module, alias.name) for alias in node.names), f"{page}: {ast.unparse(node)}"
    absent = _names_absent_models(code, {p.name.split(".gguf")[0] for p in demo_dir.iterdir()})
    if absent:
        pytest.skip(f"compiled and imported only: it needs models that are not here ({', '.join(absent)})")
    models = tmp_path / "models"
    shutil.copytree(demo_dir, models)  # the snippet quantizes: into a private copy
    from tests.test_shell import shell_env

    (tmp_path / "home").mkdir()
    run = subprocess.run([sys.executable, "-"], input=code, cwd=tmp_path, env=shell_env(tmp_path / "home", models),
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"{page}:\n{run.stdout[-2000:]}\n{run.stderr[-3000:]}"


# -- the README's tour, as a script on the demo models ----------------------------------------------------------

def test_readme_tour_runs(demo_dir, tmp_path):
    """The tour's lines in order: confirmations answered (--yes), the server on a free port."""
    from tests.test_shell import cli

    lines = tour_lines()
    assert [expected_intent(line) for line in lines][:3] == ["LIST_MODELS", "LOAD_MODEL_API", "CHAT_WITH_MODEL"]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    script = []
    for line in lines:
        if expected_intent(line) == "QUANTIZE_MODEL":
            line += " --yes"
        elif line == "start server":
            line = f"start server on port {port}"
        script.append(line)
    (tmp_path / "tour.txt").write_text("\n".join(script) + "\n")
    models = tmp_path / "models"
    shutil.copytree(demo_dir, models)
    home = tmp_path / "home"
    home.mkdir()
    run = cli(["--script", str(tmp_path / "tour.txt")], home, models)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert re.search(r"\d+ tokens in [\d.]+ s", run.stdout), run.stdout[-3000:]  # the chat's reply
    assert (models / "demo-q5_k_m.gguf").is_file()
    experiments = json.loads(cli(["--json", "-c", "list experiments"], home, models).stdout)["result"]
    assert [e["kind"] for e in experiments["experiments"]] == ["compare"], experiments


def test_readme_model_table_is_real(demo_dir, tmp_path):
    """The tour's `list models` table shows each demo model's real format, level and size."""
    from tests.test_shell import cli

    text = (REPO / "README.md").read_text()
    rows = {cells[0]: cells[1:] for cells in (
        [c.strip() for c in line.strip("│").split("│")] for line in text.splitlines()
        if line.startswith("│ demo-") and line.count("│") > 8)}
    listing = json.loads(cli(["--json", "-c", "list models"], tmp_path, demo_dir).stdout)["result"]["models"]
    from lqmf.base.units import format_bytes

    real = {m["name"]: [m["format"], m["level"], format_bytes(m["size_bytes"])] for m in listing}
    assert set(rows) == set(real)
    for name, cells in rows.items():
        assert [cells[0], cells[1], cells[3]] == real[name], name
