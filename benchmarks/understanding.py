"""The shell's understanding, measured: time to the prompt, the classifier's load, parse latency, accuracy.

    .venv/bin/python benchmarks/understanding.py [--runs 5] [--engines]

The prompt time is the shell's with the models folder it is given (LQMF_MODELS_DIR): the real models' listing
alone costs seconds more than the demo's.

Side by side, in one run: the word rules alone (LQMF_INTENT_CLASSIFIER=0) and rules + the intent classifier.
Targets (issue 26): the prompt within 1.0 s (the classifier loads in the background), a parse within 30 ms at
p95 once it is loaded. --engines also times the two ways of running all-MiniLM-L6-v2: transformers on the HF
folder and llama.cpp on the f16 GGUF LQMF's converter made (the choice in agents/understanding/sentence_model.py).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from shell_startup import time_to_prompt  # this folder is the script's first import path

ROOT = Path(__file__).resolve().parents[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def prompt_times(runs: int) -> None:
    for label, value in (("rules alone", "0"), ("rules + classifier", "1")):
        os.environ["LQMF_INTENT_CLASSIFIER"] = value
        times = [time_to_prompt() for _ in range(runs)]
        print(f"time to prompt, {label:>18}: median {statistics.median(times):.2f} s, max {max(times):.2f} s "
              f"(target <= 1.0 s)")
    os.environ.pop("LQMF_INTENT_CLASSIFIER", None)


def parse_figures() -> None:
    from agents.decision_agent import DecisionAgent
    from agents.understanding.examples import (
        dev_examples,
        example_classifiers,
        example_endpoints,
        example_models,
        read_table,
        right_by_names,
    )
    from agents.understanding.runtime import Understanding
    from lqmf.base.settings import load_settings

    started = time.perf_counter()
    understanding = Understanding(load_settings())
    understanding.wait()
    print(f"classifier load (GGUF + skops, in the background thread): {time.perf_counter() - started:.2f} s")
    names, classifiers = example_models(), example_classifiers()
    held = read_table((ROOT / "tests" / "phrasings-held-out.txt").read_text(encoding="utf-8"), "held-out")
    fresh = read_table((ROOT / "tests" / "phrasings-fresh.txt").read_text(encoding="utf-8"), "from a brief")
    lines = [row.text for row in dev_examples() + held]
    for label, agent in (("rules alone", DecisionAgent(lambda: names, classifier_names=lambda: classifiers,
                          endpoint_names=example_endpoints)),
                         ("rules + classifier", DecisionAgent(lambda: names, meaning=understanding,
                                                             classifier_names=lambda: classifiers,
                          endpoint_names=example_endpoints))):
        times = []
        for text in lines:
            start = time.perf_counter()
            agent.parse(text)
            times.append(time.perf_counter() - start)
        right = sum(_right(agent, row) for row in held)
        by_names = sum(right_by_names(agent.parse(row.text), row) for row in fresh)
        print(f"parse, {label:>18}: p50 {percentile(times, 0.5) * 1e3:.1f} ms, p95 {percentile(times, 0.95) * 1e3:.1f}"
              f" ms over {len(lines)} lines (target p95 <= 30 ms); held-out {right / len(held):.1%} of {len(held)}"
              f" (every slot); from a brief {by_names / len(fresh):.1%} of {len(fresh)} (intent and models named)")
    understanding.close()


def _right(agent, row) -> bool:
    command = agent.parse(row.text)
    got = command.slots.to_dict()
    return command.intent is row.intent and all(got.get(k) == v for k, v in row.slots.items())


def engines() -> None:
    """transformers vs llama.cpp for the same model, each in a fresh process (imports are part of the cost)."""
    import subprocess

    from lqmf.base.settings import load_settings

    folder = load_settings().understanding_dir
    probe = {
        "transformers (HF folder)": (
            "import time,statistics;t=time.perf_counter();import torch\n"
            "from transformers import AutoTokenizer,AutoModel;"
            "i=time.perf_counter()-t;t=time.perf_counter();"
            f"tok=AutoTokenizer.from_pretrained({str(folder / 'all-MiniLM-L6-v2')!r});"
            f"m=AutoModel.from_pretrained({str(folder / 'all-MiniLM-L6-v2')!r}).eval();torch.set_num_threads(1);"
            "l=time.perf_counter()-t;ts=[]\nwith torch.inference_mode():\n for _ in range(40):\n"
            "  s=time.perf_counter();e=tok(['how close is X to the original?'],return_tensors='pt');m(**e);"
            "ts.append(time.perf_counter()-s)\nprint(i,l,statistics.median(ts))"),
        "llama.cpp (f16 GGUF)": (
            "import time,statistics;t=time.perf_counter()\n"
            "from agents.understanding.sentence_model import SentenceModel"
            "\ni=time.perf_counter()-t;t=time.perf_counter();"
            f"m=SentenceModel.open(__import__('pathlib').Path({str(folder / 'all-MiniLM-L6-v2-f16.gguf')!r}));"
            "l=time.perf_counter()-t;ts=[]\nfor _ in range(40):\n s=time.perf_counter();"
            "m.embed('how close is X to the original?');ts.append(time.perf_counter()-s)\n"
            "print(i,l,statistics.median(ts));m.close()"),
    }
    for label, code in probe.items():
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
        imported, loaded, embed = (float(x) for x in out.stdout.split()[-3:])
        print(f"{label:>25}: import {imported:.2f} s, load {loaded:.2f} s, one line {embed * 1e3:.1f} ms (p50)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--engines", action="store_true", help="also time transformers against llama.cpp")
    args = parser.parse_args()
    prompt_times(args.runs)
    parse_figures()
    if args.engines:
        engines()
    return 0


if __name__ == "__main__":
    sys.exit(main())
