"""`python gguf_check.py FILE THREADS`: load a GGUF with llama.cpp, decode one token, print the facts as JSON.

Run by agents.quantization.verify in a tethered child process, as a file (it imports nothing of
LQMF): llama.cpp reports why a load failed only on its log (stderr), and a file it cannot read
may abort the process (GGML_ASSERT) instead of raising — the parent survives both and reads the
reason from stderr. The last line of stdout is one JSON object: {"ok": true, ...} or
{"ok": false, "stage": ..., "error": ...}.
"""

from __future__ import annotations

import json
import math
import sys
import time

PROMPT = b"The"
N_CTX = 16  # the smallest context that holds a prompt and one token; keeps the KV cache negligible


def _answer(facts: dict) -> None:
    """The one line of stdout the parent reads: this process's result, not a log message."""
    sys.stdout.write(json.dumps(facts) + "\n")
    sys.stdout.flush()


def main(argv: list[str]) -> int:
    path, threads = argv[0], int(argv[1])
    # Run as a file, sys.path[0] is this folder, whose module names (source, plan, ...) could shadow others.
    here = sys.path[0]
    sys.path[:] = [p for p in sys.path if p != here]
    stage = "import llama_cpp"
    facts: dict = {}
    try:
        from llama_cpp import Llama

        stage = "vocabulary"  # reading metadata and the tokenizer (llama.cpp's 'vocab_only' load)
        start = time.perf_counter()
        vocab = Llama(model_path=path, vocab_only=True, verbose=True)
        facts["n_vocab"] = int(vocab.n_vocab())
        vocab.close()
        stage = "weights"
        llm = Llama(model_path=path, n_ctx=N_CTX, n_batch=N_CTX, n_threads=threads, logits_all=True, verbose=True)
        facts["load_s"] = round(time.perf_counter() - start, 3)
        stage = "decode"
        tokens = llm.tokenize(PROMPT, add_bos=True) or [llm.token_bos()]
        llm.eval(tokens[: N_CTX - 1])
        logits = [float(x) for x in llm.scores[llm.n_tokens - 1]]
        bad = sum(1 for x in logits if not math.isfinite(x))
        if bad:
            raise ValueError(f"the logits of the first decoded token hold {bad} non-finite values (NaN or inf)")
        token = max(range(len(logits)), key=logits.__getitem__)
        facts.update(token=token, piece=llm.detokenize([token]).decode("utf-8", errors="replace"),
                     prompt_tokens=len(tokens))
        llm.close()
    except Exception as exc:  # the parent turns this into llama.cpp's reason; stderr has the details
        _answer({"ok": False, "stage": stage, "error": f"{type(exc).__name__}: {exc}"})
        return 1
    _answer({"ok": True, **facts})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
