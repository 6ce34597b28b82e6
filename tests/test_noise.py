"""The terminal shows LQMF's own output; libraries' banners, bars and repeated warnings go to a bounded log.

Counted on real runs: the shell on a pseudo-terminal (a GPTQ quantize, a GGUF chat, a bnb int8 chat and a
fidelity against an HF folder), and the pieces that caused each line a newcomer saw, in child processes.
"""

from __future__ import annotations

import math
import os
import re
import select
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lqmf.base.log import DROP, NOISE, TO_DEBUG
from tests.conftest import REPO
from tests.test_shell import Terminal, shell_env

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][0-9A-Za-z]")
# What a library prints on its own: LogBar's "INFO  ..." lines and banner, transformers' and torch's handlers,
# llama.cpp's log, tqdm bars.
LIBRARY = re.compile(r"^(INFO|WARN|ERROR|DEBUG) |GPT-QModel|Built map|Loading weights|n_ctx_train|Token indices"
                     r"|MatMul8bitLt|Quantizing layer|^\[transformers\]|^[WIEF]\d{4} \d\d:|llama_|it/s\]")
PROMPT = re.compile(r"[\w.:-]+>")  # the shell's prompt, or chat's, redrawn
REPEATS = re.compile(r"\(repeated (\d+) more times(?: so far)?\)$")


def screen(raw: str) -> list[str]:
    """The lines a terminal keeps: control sequences removed, each line as its last redraw (after \\r) left it."""
    text = ANSI.sub("", raw).replace("\r\n", "\n")  # a pty ends lines with \r\n
    lines = (line.split("\r")[-1].rstrip() for line in text.split("\n"))
    return [line for line in lines if line.strip()]


def library_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if LIBRARY.search(line)]


def log_lines(home: Path) -> list[str]:
    return [line for path in sorted((home / "logs").glob("lqmf.log*"))
            for line in path.read_text(errors="replace").splitlines()]


def run_child(script: str, home: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """A Python child with the log configured under `home` (at DEBUG): its stdout/stderr are the terminal."""
    prelude = textwrap.dedent(f"""
        import logging, sys
        from pathlib import Path
        from lqmf.base.log import configure_logging
        from lqmf.base.settings import Settings
        configure_logging(Settings(home=Path({str(home)!r}), log_level="DEBUG"))
    """)
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(script)], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


# -- the bounded log ----------------------------------------------------------------------------------------------

def test_a_repeated_warning_is_written_once_then_counted_and_errors_are_not(tmp_path):
    done = run_child("""
        import warnings
        bnb = logging.getLogger("some.library")
        for _ in range(16044):
            bnb.warning("inputs will be cast from %s to float16", "torch.float32")
        bnb.warning("a different warning")
        for _ in range(3):
            warnings.warn("a Python warning in a loop", UserWarning, stacklevel=1)
            warnings.simplefilter("always")
        for _ in range(2):
            logging.getLogger("lqmf.x").error("request failed")
    """, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "" and done.stdout == ""  # Python warnings went to the log too
    lines = log_lines(tmp_path)
    cast = [line for line in lines if "inputs will be cast from torch.float32" in line]
    assert [REPEATS.search(line).group(1) if REPEATS.search(line) else None for line in cast] == \
        [None, "10", "100", "1000", "10000", "16043"]
    assert cast[1].endswith("(repeated 10 more times so far)") and cast[-1].endswith("(repeated 16043 more times)")
    assert sum("a different warning" in line for line in lines) == 1
    python = [line for line in lines if "py.warnings" in line and "a Python warning in a loop" in line]
    assert len(python) == 2 and python[-1].endswith("(repeated 2 more times)")
    assert sum("request failed" in line for line in lines) == 2  # each error keeps its own line
    assert len(lines) <= 12


def test_the_noise_table_names_a_reason_for_each_entry():
    for noise in NOISE:
        assert noise.action in (DROP, TO_DEBUG) and len(noise.reason) > 40, noise
        re.compile(noise.pattern)


def test_a_vocab_only_gguf_load_logs_llama_cpp_at_debug_and_prints_nothing(demo_dir, tmp_path):
    """llama.cpp's "n_ctx_seq (512) > n_ctx_train (0)" of a vocab-only handle (the llama-server engine's tokenizer)."""
    done = run_child(f"""
        from server.runtime.discovery import discover
        from server.runtime.backends.gguf import GGUFBackend
        record = {{r.name: r for r in discover(Path({str(demo_dir)!r}))}}["demo-q4_k_m"]
        backend = GGUFBackend(record)
        backend._open(vocab_only=True)
        backend.unload()
    """, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "n_ctx_train" not in done.stderr + done.stdout and not library_lines(screen(done.stderr))
    noted = [line for line in log_lines(tmp_path) if "n_ctx_seq (512) > n_ctx_train (0)" in line]
    assert len(noted) == 1 and " DEBUG llama.cpp: " in noted[0]  # known noise: in the log at DEBUG only


def test_tokenizing_a_text_longer_than_the_context_warns_nowhere(demo_dir, tmp_path):
    """Fidelity tokenizes its whole text, then windows it: transformers' 'Token indices ... indexing errors'."""
    done = run_child(f"""
        from server.runtime.discovery import discover
        from server.runtime.backends.transformers_backend import TransformersBackend
        backend = TransformersBackend({{r.name: r for r in discover(Path({str(demo_dir)!r}))}}["demo-hf"])
        backend.load()
        ids = backend.tokenize("def shuffle(x): return sorted(x) " * 800, add_special=False)
        print(len(ids) > backend.context_length)
    """, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"
    assert "Token indices" not in done.stderr and "Token indices" not in "\n".join(log_lines(tmp_path))
    assert not library_lines(screen(done.stderr)), done.stderr


def test_a_gptq_load_keeps_its_banner_in_the_log(demo_dir, tmp_path):
    done = run_child(f"""
        from server.runtime.discovery import discover
        from server.runtime.backends.transformers_backend import TransformersBackend
        backend = TransformersBackend({{r.name: r for r in discover(Path({str(demo_dir)!r}))}}["demo-gptq-4bit"])
        backend.load()
    """, tmp_path)
    assert done.returncode == 0, done.stderr
    assert not library_lines(screen(done.stdout + done.stderr)), done.stdout + done.stderr
    banner = [line for line in log_lines(tmp_path) if " library-output: " in line]
    assert any("Built map across" in line for line in banner) and all(" DEBUG " in line for line in banner)


# -- the shell, on a terminal -------------------------------------------------------------------------------------

def _shell_command(args: list[str], home: Path, models: Path, timeout: float) -> list[str]:
    term = Terminal([sys.executable, "cli/api_cli.py", *args], shell_env(home, models))
    code = term.wait(timeout)
    while select.select([term.fd], [], [], 0.5)[0]:  # what the shell wrote just before it ended
        try:
            data = os.read(term.fd, 65536)
        except OSError:  # the pty is closed once read to its end
            break
        if not data:
            break
        term.buffer += data.decode(errors="replace")
    assert code == 0, term.buffer[-3000:]
    return screen(term.buffer)


@pytest.mark.slow
def test_a_gptq_quantize_shows_the_plan_one_bar_and_the_result(demo_dir, home, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(demo_dir / "demo-hf", models / "demo-hf")
    lines = _shell_command(["-c", "quantize demo-hf to gptq 4bit as quiet-gptq --yes"], home, models, 900)
    assert any(line.startswith("quantized demo-hf → quiet-gptq") for line in lines), lines
    assert not library_lines(lines), library_lines(lines)[:20]
    assert len(lines) <= 25, lines  # the plan's panel, the bar, the result and what to do next
    # GPTQModel's own output (about 2,000 lines here) is in its log file, its layer loop included ...
    library_log = (home / "logs" / "gptqmodel" / "quiet-gptq.log").read_text(errors="replace")
    assert "GPT-QModel" in library_log and "Quantizing layer" in library_log
    # ... and lqmf.base.log stays small
    assert len(log_lines(home)) <= 40, log_lines(home)


class Session:
    """The interactive shell on a terminal; each command's output as the terminal keeps it."""

    def __init__(self, home: Path, models: Path, **env: str) -> None:
        self.term = Terminal([sys.executable, "cli/api_cli.py"], {**shell_env(home, models), **env})
        self.term.expect(r"lqmf> ", 120)

    def run(self, line: str, until: str, timeout: float = 300) -> list[str]:
        start = len(self.term.buffer)
        self.term.send(line + "\r")
        self.term.expect(until, timeout)
        # What the command printed: not the line typed, which the terminal echoes (and the prompt redraws).
        return [shown for shown in screen(self.term.buffer[start:])
                if not shown.endswith(line) and not PROMPT.fullmatch(shown)]

    def close(self) -> None:
        self.term.send("exit\r")
        assert self.term.wait(60) == 0


MAX_TOKENS = 8
LQMF_CHAT = re.compile(r"Chatting with |max_tokens = |\d+ tokens? in [\d.]+ s|leaving chat")


def _chat(session: Session, model: str, turns: int) -> list[str]:
    """A chat of `turns` short replies; what the terminal showed, checked to be LQMF's lines and the replies."""
    shown = session.run(f"chat with {model}", rf"Chatting with {model}")
    shown += session.run(f"/set max_tokens {MAX_TOKENS}", rf"max_tokens = {MAX_TOKENS}")
    for _ in range(turns):
        shown += session.run("hello there", r"tokens/s")
    shown += session.run("/exit", r"lqmf> ")
    assert not library_lines(shown), shown
    # LQMF's: "Chatting with", /set's answer, each reply's figures, "leaving chat"; the rest is the replies'
    # text, at most a line per token
    assert sum(bool(LQMF_CHAT.match(line)) for line in shown) == 3 + turns, shown
    assert len(shown) - (3 + turns) <= turns * MAX_TOKENS, shown
    return shown


@pytest.mark.slow
def test_a_gguf_chat_shows_only_the_conversation(demo_dir, home):
    session = Session(home, demo_dir)
    _chat(session, "demo-q4_k_m", 3)
    session.close()
    assert not [line for line in log_lines(home) if "n_ctx_train" in line]


@pytest.mark.slow
def test_a_bnb_int8_chat_and_an_hf_fidelity_keep_the_terminal_and_the_log_small(demo_dir, home):
    """bitsandbytes warns on every int8 matmul (16,044 lines in a newcomer's 20-minute chat): at DEBUG, where the
    known noise is written, it is one line and its counts; the terminal shows the conversation."""
    session = Session(home, demo_dir, LQMF_LOG_LEVEL="DEBUG")
    _chat(session, "demo-bnb-int8", 2)
    fidelity = session.run("fidelity of demo-hf against demo-hf", r"lqmf> ", 600)
    session.close()
    assert not library_lines(fidelity), library_lines(fidelity)
    cast = [line for line in log_lines(home) if "MatMul8bitLt" in line]
    counts = [int(REPEATS.search(line).group(1)) for line in cast if REPEATS.search(line)]
    assert counts and counts[-1] >= 100, cast  # two replies of 8 tokens: hundreds of int8 matmuls
    # one line, one per power of ten reached, one at close: O(log n), never one per warning
    assert len(cast) <= 2 + int(math.log10(counts[-1])), cast
    assert all(" DEBUG bitsandbytes" in line for line in cast)
    assert not [line for line in log_lines(home) if "Token indices" in line]


def test_a_library_that_configures_logging_as_it_is_imported_leaves_the_root_logger_as_it_was():
    """GPTQModel's tokenicer calls logging.basicConfig(level=INFO) on import: without the restore, every INFO line of
    a program using lqmf.api (or the shell) reached its terminal after a GPTQ load."""
    child = (
        "import logging\n"
        "from lqmf.base.quiet import library_output_logged\n"
        "root = logging.getLogger()\n"
        "before = (list(root.handlers), root.level)\n"
        "with library_output_logged(logging.getLogger('lqmf.test')):\n"
        "    import gptqmodel  # noqa: F401\n"
        "assert (list(root.handlers), root.level) == before, (root.handlers, root.level)\n"
        "logging.getLogger('agents.example').info('a line for the log only')\n"
    )
    run = subprocess.run([sys.executable, "-c", child], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "a line for the log only" not in run.stderr + run.stdout
    assert "Torch" not in run.stdout + run.stderr  # and its import banner went to the log


def test_the_demo_build_tokenizes_its_long_corpus_without_a_length_warning(demo_dir, capfd, caplog):
    """`make demo` tokenizes the corpus as one stream on purpose: no "longer than the maximum sequence length"."""
    from transformers import AutoTokenizer

    from agents.demo.model import DemoSpec, corpus_tokens
    from lqmf.base.corpus import load_corpus

    tokenizer = AutoTokenizer.from_pretrained(demo_dir / "demo-hf")
    stream, heldout = corpus_tokens(tokenizer, load_corpus(), DemoSpec())
    assert len(stream) > tokenizer.model_max_length and heldout  # long enough that the warning would fire
    said = capfd.readouterr()
    assert "Token indices sequence length" not in said.out + said.err + caplog.text
