"""`python gguf_check.py FILE THREADS [--no-repack]`: load a GGUF with llama.cpp, decode one token, print the facts.

`python gguf_check.py --quantize SOURCE OUTPUT TYPE THREADS` writes a quantized copy instead (TYPE: a
llama.cpp file type such as q4_0, q4_k_m).

`python gguf_check.py --embed FILE THREADS TEXTS_JSON [--no-repack]` checks an embedding model (an encoder
cannot decode a token): it loads the GGUF with embeddings on, pools each text as the file's metadata says
(`<arch>.pooling_type`) and answers with the raw, unnormalised vectors.

Run in a tethered child process, as a file (it imports nothing of LQMF), by
agents.quantization.verify and by server.runtime.gguf_smoke: llama.cpp reports why a load failed only on
its log (stderr), a file it cannot read may abort the process (GGML_ASSERT) instead of raising, and
a CPU kernel may segfault — the parent survives all three and reads the reason from stderr and the
exit status. The last line of stdout is one JSON object: {"ok": true, ...} or
{"ok": false, "stage": ..., "error": ...}. --no-repack loads the weights as the file has them
(llama.cpp's `use_extra_bufts` off; llama-server's --no-repack).
"""

from __future__ import annotations

import contextlib
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


def read_answer(stdout: str) -> dict:
    """The parent's side: the JSON answer on a check's stdout ({} when the child died before writing it)."""
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                return {}
    return {}


@contextlib.contextmanager
def repacking_off():
    """Models loaded inside keep their weights as stored: llama.cpp's use_extra_bufts off.

    llama-cpp-python's Llama() has no argument for it, so its defaults are swapped for the while:
    callers that share a process with other loads hold their lock around it.
    """
    import llama_cpp.llama_cpp as native

    defaults = native.llama_model_default_params

    def params():
        made = defaults()
        made.use_extra_bufts = False
        return made

    native.llama_model_default_params = params
    try:
        yield
    finally:
        native.llama_model_default_params = defaults


def quantize(argv: list[str]) -> int:
    """--quantize SOURCE OUTPUT TYPE THREADS: llama.cpp's own quantizer, as llama-quantize runs it."""
    source, output, kind, threads = argv[0], argv[1], argv[2], int(argv[3])
    import ctypes

    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{kind.upper()}")
    params.nthread = threads
    code = llama_cpp.llama_model_quantize(source.encode(), output.encode(), ctypes.byref(params))
    _answer({"ok": code == 0, "stage": "quantize", "error": f"llama_model_quantize returned {code}"})
    return 0 if code == 0 else 1


EMBED_CTX = 512  # BERT-family encoders hold 512 positions; a longer text is cut, which a check never needs


def embed(argv: list[str]) -> int:
    """--embed FILE THREADS TEXTS_JSON: the pooled vector of each text, with the load facts."""
    path, threads, texts = argv[0], int(argv[1]), json.loads(argv[2])
    stage = "import llama_cpp"
    facts: dict = {}
    try:
        from llama_cpp import Llama

        with repacking_off() if "--no-repack" in argv[3:] else contextlib.nullcontext():
            stage = "vocabulary"
            start = time.perf_counter()
            vocab = Llama(model_path=path, vocab_only=True, verbose=True)
            facts["n_vocab"] = int(vocab.n_vocab())
            vocab.close()
            stage = "weights"
            # An encoder's batch must hold a whole text (llama.cpp pools per micro-batch): n_ubatch = n_batch.
            llm = Llama(model_path=path, embedding=True, n_ctx=EMBED_CTX, n_batch=EMBED_CTX, n_ubatch=EMBED_CTX,
                        n_threads=threads, verbose=True)
            facts["load_s"] = round(time.perf_counter() - start, 3)
            stage = "embed"
            # One text per decode: packing several would need a sequence per text, which a check does not need.
            vectors = [[float(x) for x in llm.embed(text, normalize=False, truncate=True)] for text in texts]
            bad = sum(1 for v in vectors for x in v if not math.isfinite(x))
            if bad:
                raise ValueError(f"the embeddings hold {bad} non-finite values (NaN or inf)")
            facts.update(n_embd=int(llm.n_embd()), pooling_type=int(llm.pooling_type()), vectors=vectors,
                         prompt_tokens=len(llm.tokenize(texts[0].encode("utf-8"))) if texts else 0)
            llm.close()
    except Exception as exc:  # the parent turns this into llama.cpp's reason; stderr has the details
        _answer({"ok": False, "stage": stage, "error": f"{type(exc).__name__}: {exc}"})
        return 1
    _answer({"ok": True, **facts})
    return 0


def main(argv: list[str]) -> int:
    # Run as a file, sys.path[0] is this folder, whose module names (source, plan, ...) could shadow others.
    here = sys.path[0]
    sys.path[:] = [p for p in sys.path if p != here]
    if argv and argv[0] == "--quantize":
        return quantize(argv[1:])
    if argv and argv[0] == "--embed":
        return embed(argv[1:])
    path, threads = argv[0], int(argv[1])
    stage = "import llama_cpp"
    facts: dict = {}
    try:
        from llama_cpp import Llama

        with repacking_off() if "--no-repack" in argv[2:] else contextlib.nullcontext():
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
            # A batch of one takes other kernels (matrix-vector) than the prompt's batch did.
            llm.eval([token])
            llm.close()
    except Exception as exc:  # the parent turns this into llama.cpp's reason; stderr has the details
        _answer({"ok": False, "stage": stage, "error": f"{type(exc).__name__}: {exc}"})
        return 1
    _answer({"ok": True, **facts})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
