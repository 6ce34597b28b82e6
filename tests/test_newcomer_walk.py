"""Issue 28's newcomer session, replayed on a real terminal: one shell on a pty, a copied models folder, a real second
LQMF as the remote, and each thing that went wrong checked where the newcomer saw it.

The pieces are tested one by one elsewhere (test_newcomer_figures, test_classifier_chance, test_remote_fallback,
test_shell_fixes, test_shell_language, test_noise); this walk checks they hold together, in the order a person meets
them, in one session.
"""

from __future__ import annotations

import re
import shutil
import sys

import pytest

from tests.test_classifier_chance import GIFT, MOOD
from tests.test_server import start_server
from tests.test_shell import Terminal, free_port, shell_env

PROMPT = r"lqmf> "
# Lines the newcomer saw on the terminal that were library noise, not LQMF's own output.
NOISE = ("n_ctx_train", "Token indices sequence length", "MatMul8bitLt", "Traceback")


class Session:
    """The terminal, with the text each command printed (from the line sent to the next prompt)."""

    def __init__(self, term: Terminal) -> None:
        self.term = term

    def run(self, line: str, timeout: float = 180) -> str:
        start = len(self.term.buffer)
        self.term.send(line + "\r")
        self.term.expect(PROMPT, timeout)
        said = self.term.buffer[start:self.term.mark]
        return " ".join(said.split())  # rich wraps long lines: compare words, not layout


@pytest.fixture
def walk(demo_dir, tmp_path):
    """A copy of three demo models (the models folder moved elsewhere), a home, the mood data and a remote."""
    models = tmp_path / "models"
    models.mkdir()
    for name in ("demo-hf", "demo-f16.gguf", "demo-q4_k_m.gguf"):
        for entry in demo_dir.glob(name + "*"):
            (shutil.copytree if entry.is_dir() else shutil.copy2)(entry, models / entry.name)
    mood = tmp_path / "mood.csv"
    mood.write_text("text,label\n" + "".join(f"{text},{label}\n" for label, texts in MOOD.items() for text in texts))
    remote, remote_manager, remote_url = start_server(demo_dir, tmp_path / "remote-home", auto_benchmark_every=0)
    term = Terminal([sys.executable, "cli/api_cli.py"], shell_env(tmp_path / "home", models))
    term.expect(PROMPT, 120)
    try:
        yield Session(term), models, mood, remote, f"{remote_url}/v1"
    finally:
        remote.stop()
        remote_manager.close()


def test_the_newcomer_session_replayed(walk):
    shell, models, mood, remote, far_url = walk
    port = free_port()

    # Help examples name models they would run on: no quantize example on an already quantized model.
    said = shell.run("help quantize")
    assert "quantize demo-hf to" in said and not re.search(r"quantize demo-(f16|q4_k_m)\b", said), said

    # A refusal draws only what it has: no empty level, no made-up output name, no "why: gguf : gguf".
    said = shell.run("quantize demo-hf to 7-bit")
    assert "refused: gguf has no 7-bit level" in said, said
    for garbled in ("→ demo-x", "level (", "why: gguf", "quantize to with", " : "):
        assert garbled not in said, (garbled, said)

    # A typo on a read-only command runs and says what it understood: no question to eat the next line.
    said = shell.run("lsit modles")
    assert "(understood: list models)" in said and "Models in" in said and "Did you mean" not in said

    # A copied models folder keeps its lineage: the source is the copy's, not the folder it came from.
    said = shell.run("show demo-q4_k_m")
    assert f"path {models}/demo-f16.gguf" in said and "quantized-models" not in said, said

    # Which model is fastest: answered from the history, or an offer to measure; "all of them" is a model set.
    assert "nothing measured yet; say `benchmark all models`" in shell.run("which model is fastest?")
    said = shell.run("benchmark all of them", timeout=300)
    ran = re.search(r"benchmark #(\d+) on ([\w, -]+?) — recorded", said)
    assert ran and set(ran.group(2).split(", ")) == {"demo-hf", "demo-f16", "demo-q4_k_m"}, said
    fastest = re.search(r"→ fastest: (\S+) \(([\d.]+) tok/s\)", said)
    assert fastest, said
    said = shell.run("which model is fastest?")
    assert f"fastest: {fastest.group(1)} at {fastest.group(2)} tokens/s (benchmark #{ran.group(1)})" in said, said

    # The manifest records the run's own figures: the ones the run printed.
    said = shell.run("quantize demo-hf to q5_k_m as my-q5 --yes", timeout=300)
    run = re.search(r"in ([\d.]+ s), peak memory ([\d.]+ [KMG]iB) \(planned", said)
    assert run, said
    said = shell.run("show my-q5")
    assert f"in {run.group(1)}, peak memory {run.group(2)}" in said, (run.groups(), said)
    assert "over all weights" in said  # bits per weight say what they count

    # The quantization list names models as they are called now.
    shell.run("rename model my-q5 to my-q5b")
    said = shell.run("list quantizations")
    assert "my-q5b.gguf" in said and "renamed from my-q5.gguf" in said and "(understood" not in said, said

    # A classifier at chance is saved but flagged; a near-miss name gets the nearest one.
    said = shell.run(f"train classifier mood on {mood} with demo-hf", timeout=300)
    assert "warning: not clearly above chance: 24 rows, 8 per label over 3 labels" in said, said
    assert "did you mean mood?" in shell.run(f'classify "{GIFT}" with mod')

    # A remote that lists several models: the shell asks which, answered by number.
    shell.term.send(f"add endpoint far at {far_url}\r")
    shell.term.expect(r"far serves \d+ models\. Which one\?")
    first = shell.term.expect(r"1\. (\S+)\n").group(1)
    shell.term.expect(r"Model \(a number or a name; empty to cancel\): ")
    said = shell.run("1")
    assert "registered" in said and first in said, said
    shell.run("benchmark far", timeout=300)

    # The shell's default walks its fallback chain as HTTP does.
    assert "Default model: far" in shell.run("use far then demo-q4_k_m")
    remote.stop()
    said = shell.run('ask "Name a colour."')
    assert "far is unreachable (connection refused); answered by demo-q4_k_m" in said, said
    assert "cannot reach" not in said

    # What no longer exists is left out of "fastest".
    shell.run("remove endpoint far --yes")
    said = shell.run("which model is fastest?")
    assert "fastest:" in said and "far" not in said.split("fastest:")[1].split("(")[0], said

    # show config names the port the server really listens on.
    assert f"running at http://127.0.0.1:{port}" in shell.run(f"start server on port {port}")
    said = shell.run("show config")
    assert f"running at http://127.0.0.1:{port}" in said and f"│ port │ {port} │" in said, said
    shell.run("stop server")

    shell.term.send("exit\r")
    assert shell.term.wait() == 0
    for noise in NOISE:
        assert noise not in shell.term.buffer, noise
