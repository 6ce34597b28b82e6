"""Throw-away HF folders for error-path tests: odd shapes, odd architectures, odd tokenizers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

TOKENIZER_FILES = ("tokenizer.model", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja")


def tiny_llama(demo_hf: Path, out: Path, hidden: int = 64, intermediate: int = 128) -> Path:
    """A random llama using the demo tokenizer, with matrix shapes the caller picks."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    vocab = json.loads((demo_hf / "config.json").read_text())["vocab_size"]
    config = LlamaConfig(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=False,
    )
    LlamaForCausalLM(config).save_pretrained(out, safe_serialization=True)
    for name in TOKENIZER_FILES:
        if (demo_hf / name).exists():
            shutil.copy2(demo_hf / name, out / name)
    return out


def tiny_qwen2_with_new_bpe(out: Path) -> Path:
    """A random Qwen2 whose byte-level BPE tokenizer llama.cpp's converter has never seen."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["a tiny corpus for a tiny tokenizer, never seen by llama.cpp"] * 20, trainer)
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>").save_pretrained(out)
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=tok.get_vocab_size(), hidden_size=64, intermediate_size=128, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
    )
    Qwen2ForCausalLM(config).save_pretrained(out, safe_serialization=True)
    return out


def unknown_architecture(demo_hf: Path, out: Path) -> Path:
    """The demo model's files with an architecture name no converter knows."""
    shutil.copytree(demo_hf, out)
    config = json.loads((out / "config.json").read_text())
    config["architectures"] = ["FrobnicatorForCausalLM"]
    config["model_type"] = "frobnicator"
    (out / "config.json").write_text(json.dumps(config))
    (out / "lqmf.json").unlink(missing_ok=True)
    return out
