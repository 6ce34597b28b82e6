"""Greedy generation with each format's own library (the runtime's backends arrive separately)."""

from __future__ import annotations

from pathlib import Path

PROMPT = [{"role": "user", "content": "What does shuffle do?"}]


def _hf_generate(model, tokenizer, max_new_tokens: int) -> str:
    ids = tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False)
    return tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)


def greedy_twice(path: Path, fmt: str, max_new_tokens: int = 24) -> tuple[str, str]:
    """Load the model at `path` with its real library and generate greedily twice."""
    if fmt == "gguf":
        from llama_cpp import Llama

        llm = Llama(model_path=str(path), n_ctx=256, n_threads=2, verbose=False, seed=0)
        runs = []
        for _ in range(2):
            llm.reset()
            out = llm.create_chat_completion(PROMPT, max_tokens=max_new_tokens, temperature=0.0, top_k=1)
            runs.append(out["choices"][0]["message"]["content"])
        llm.close()
        return runs[0], runs[1]
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if fmt == "gptq":
        from gptqmodel import GPTQModel

        model = GPTQModel.load(str(path), device="cpu").model
    else:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(path, device_map="cpu")
    return _hf_generate(model, tokenizer, max_new_tokens), _hf_generate(model, tokenizer, max_new_tokens)
