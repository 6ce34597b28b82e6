"""Runtime overhead benchmark: the manager's stream / generate vs llama-cpp-python's own loops.

Greedy, a fixed number of new tokens (end-of-generation suppressed so every run makes the same
count), the same prompt, the same context and thread count. Prints tokens/s and per-request
latency side by side, with ratios against the bare `Llama.generate` loop.

    .venv/bin/python benchmarks/runtime_bench.py [--model demo-q4_k_m] [--tokens 256] [--runs 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from lqmf.base.environment import apply_environment_quirks
from lqmf.base.settings import load_settings

PROMPT = [{"role": "user", "content": "What does shuffle do?"}]


def timed_round_robin(fns: list, runs: int) -> list[tuple[float, int]]:
    """Median seconds of each fn and the token count it reports.

    Every fn is warmed up once, then the fns take turns run by run, so that drift in the
    machine's speed (other load, frequency scaling) hits all of them alike. The order rotates
    every round: the fns use two llama.cpp instances, and whichever runs right after a switch
    finds colder caches, a handicap each fn then carries equally often.
    """
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    counts = [0] * len(fns)
    for round_ in range(runs):
        for k in range(len(fns)):
            i = (k + round_) % len(fns)
            start = time.perf_counter()
            counts[i] = fns[i]()
            times[i].append(time.perf_counter() - start)
    return [(statistics.median(t), c) for t, c in zip(times, counts, strict=True)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="demo-q4_k_m")
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    apply_environment_quirks()

    import llama_cpp
    from llama_cpp import Llama

    from lqmf.base.generation import GenerationParams
    from server.runtime.manager import ModelManager

    settings = load_settings()
    manager = ModelManager(settings)
    record = manager.record(args.model)
    if record.format != "gguf":
        sys.exit(f"{args.model} is {record.format}; this benchmark compares against llama-cpp-python (gguf)")
    loaded = manager.load(args.model, keep_alive_s=-1)
    backend = loaded.backend
    ids = backend.chat_prompt_ids(PROMPT)
    n_ctx = backend.context_length
    llm = Llama(model_path=str(record.path), n_ctx=n_ctx, n_threads=backend.llm.n_threads,
                n_batch=min(512, n_ctx), verbose=False)
    vocab = llm._model.vocab
    eog = [t for t in range(llm.n_vocab()) if llama_cpp.llama_vocab_is_eog(vocab, t)]
    params = GenerationParams(max_tokens=args.tokens, temperature=0, ignore_eos=True)
    prompt_text = backend.apply_chat_template(PROMPT)

    def raw_loop(limit: int) -> int:
        n = 0
        for token in llm.generate(ids, temp=0.0, top_k=40, top_p=0.95, min_p=0.05, reset=True):
            llm.detokenize([token])
            n += 1
            if n >= limit:
                break
        return n

    def raw_generate_loop() -> int:
        return raw_loop(args.tokens)

    def create_completion(stream: bool):
        def run() -> int:
            kwargs = dict(max_tokens=args.tokens, temperature=0.0, logit_bias={t: -1e9 for t in eog})
            if stream:
                return sum(1 for _ in llm.create_completion(prompt_text, stream=True, **kwargs))
            return llm.create_completion(prompt_text, **kwargs)["usage"]["completion_tokens"]
        return run

    def manager_stream() -> int:
        return sum(len(c.token_ids) for c in manager.stream(args.model, ids, params))

    def manager_generate() -> int:
        return manager.generate(args.model, ids, params).completion_tokens

    rows = [
        ("llama-cpp-python Llama.generate loop", raw_generate_loop),
        ("llama-cpp-python create_completion", create_completion(False)),
        ("llama-cpp-python create_completion(stream)", create_completion(True)),
        ("LQMF manager stream", manager_stream),
        ("LQMF manager generate (non-stream)", manager_generate),
    ]
    timed = timed_round_robin([fn for _, fn in rows], args.runs)
    results = [(label, *m) for (label, _), m in zip(rows, timed, strict=True)]
    base_s, base_n = results[0][1], results[0][2]
    print(f"model {args.model} ({record.level}), {args.tokens} new tokens, greedy, n_ctx {n_ctx}, "
          f"median of {args.runs} runs after a warm-up")
    print(f"{'path':<44} {'tokens':>6} {'latency ms':>11} {'tok/s':>9} {'vs generate':>12} {'added ms':>9}")
    for label, seconds, count in results:
        rate = count / seconds
        print(f"{label:<44} {count:>6} {seconds * 1000:>11.1f} {rate:>9.0f} "
              f"{rate / (base_n / base_s):>11.3f}x {(seconds - base_s) * 1000:>9.2f}")

    # Per-request overhead: one new token, so the fixed costs (queueing, thread hand-offs,
    # tokenizer set-up, final chunk) dominate.
    one = GenerationParams(max_tokens=1, temperature=0, ignore_eos=True)
    single = [
        ("Llama.generate loop, 1 token", lambda: raw_loop(1)),
        ("manager stream, 1 token", lambda: sum(len(c.token_ids) for c in manager.stream(args.model, ids, one))),
        ("manager generate, 1 token", lambda: manager.generate(args.model, ids, one).completion_tokens),
    ]
    timed_one = timed_round_robin([fn for _, fn in single], args.runs * 10)
    per_request = [(label, *m) for (label, _), m in zip(single, timed_one, strict=True)]
    base_one = per_request[0][1]
    print(f"\nper-request overhead (1 new token, median of {args.runs * 10} runs)")
    print(f"{'path':<44} {'latency ms':>11} {'added ms':>9}")
    for label, seconds, _ in per_request:
        print(f"{label:<44} {seconds * 1000:>11.3f} {(seconds - base_one) * 1000:>9.3f}")
    llm.close()
    manager.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
