"""Train the demo tokenizer (SentencePiece) and the tiny llama, and save them as an HF folder."""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from lqmf.base.corpus import Corpus

log = logging.getLogger(__name__)

IM_START, IM_END = "<|im_start|>", "<|im_end|>"
# ChatML, the template most small instruct models use; the markers are single tokens.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@dataclass(frozen=True)
class DemoSpec:
    """Everything that decides the demo model's bytes; its hash is the build key."""

    vocab_size: int = 2048
    hidden_size: int = 256  # multiples of 256 so llama.cpp's K-quants apply to every matrix
    intermediate_size: int = 768
    num_layers: int = 4
    num_heads: int = 4
    context_length: int = 1024
    train_seq_len: int = 128
    batch_size: int = 16
    steps: int = 300
    learning_rate: float = 3e-3
    seed: int = 1234
    chat_repeats: int = 3
    recipe: int = 2  # bump when the build code changes what it makes (2: llama.cpp-compatible tokenizer)

    def key(self) -> str:
        import hashlib

        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


def render_chat(messages: list[dict[str, str]]) -> str:
    """The CHAT_TEMPLATE rendered in Python (for training text, without a generation prompt)."""
    return "".join(f"{IM_START}{m['role']}\n{m['content']}{IM_END}\n" for m in messages)


def train_tokenizer(corpus: Corpus, spec: DemoSpec, folder: Path) -> None:
    """Train a byte-fallback BPE SentencePiece model and write the HF tokenizer files."""
    import sentencepiece as spm

    lines = [line for line in corpus.train.split("\n") if line.strip()]
    lines += [render_chat(chat).replace("\n", " ") for chat in corpus.chats]
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_prefix=str(folder / "tokenizer"),
        model_type="bpe",
        vocab_size=spec.vocab_size,
        byte_fallback=True,
        character_coverage=1.0,
        split_digits=True,
        allow_whitespace_only_pieces=True,
        remove_extra_whitespaces=False,
        # No dummy "▁" before the text: transformers v5 and llama.cpp then tokenize identically.
        add_dummy_prefix=False,
        normalization_rule_name="identity",
        user_defined_symbols=[IM_START, IM_END],
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        num_threads=1,
        shuffle_input_sentence=False,
        max_sentence_length=16384,
        minloglevel=2,
    )
    (folder / "tokenizer.vocab").unlink()
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "LlamaTokenizer",
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
        "add_bos_token": True, "add_eos_token": False,
        "model_max_length": spec.context_length,
        "chat_template": CHAT_TEMPLATE,
    }, indent=2))
    from transformers import AutoTokenizer

    # Loading converts tokenizer.model; saving adds tokenizer.json so fast loads need no conversion.
    AutoTokenizer.from_pretrained(folder).save_pretrained(folder)
    # llama.cpp's converter learns which pieces are control tokens (parsed as one token, and
    # <|im_end|> as end of generation) only from added_tokens_decoder, which transformers v5 no
    # longer writes; add it back.
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["added_tokens_decoder"] = {
        str(i): {"content": text, "special": True, "lstrip": False, "rstrip": False,
                 "normalized": False, "single_word": False}
        for i, text in ((0, "<unk>"), (1, "<s>"), (2, "</s>"), (3, IM_START), (4, IM_END))
    }
    # And it adds a "▁" before every text fragment unless told otherwise.
    config["add_prefix_space"] = False
    config_path.write_text(json.dumps(config, indent=2))


@dataclass(frozen=True)
class TrainReport:
    steps: int
    final_train_loss: float
    heldout_perplexity: float
    heldout_tokens: int
    train_tokens: int
    seconds: float


def corpus_tokens(tokenizer, corpus: Corpus, spec: DemoSpec) -> tuple[list[int], list[int]]:
    """The training stream (the corpus, then the chats repeated) and the held-out stream, as token ids."""
    # verbose=False: each stream is long on purpose and cut into blocks by the trainer; transformers would
    # otherwise warn "longer than the specified maximum sequence length" on every `make demo`.
    stream: list[int] = tokenizer(corpus.train, verbose=False)["input_ids"]
    for text in [render_chat(c) for c in corpus.chats] * spec.chat_repeats:
        stream += tokenizer(text, verbose=False)["input_ids"]
    return stream, tokenizer(corpus.heldout, verbose=False)["input_ids"]


def train_model(corpus: Corpus, spec: DemoSpec, folder: Path) -> TrainReport:
    """Train the tiny llama on the corpus (deterministic on CPU) and save it into `folder`."""
    import torch
    from transformers import AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(spec.seed)
    torch.use_deterministic_algorithms(True)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    im_end = tokenizer.convert_tokens_to_ids(IM_END)
    stream, heldout = corpus_tokens(tokenizer, corpus, spec)
    data = torch.tensor(stream, dtype=torch.long)
    held = torch.tensor(heldout, dtype=torch.long)

    config = LlamaConfig(
        vocab_size=spec.vocab_size, hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size, num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads, num_key_value_heads=spec.num_heads,
        max_position_embeddings=spec.context_length, rms_norm_eps=1e-5, rope_theta=10000.0,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False, torch_dtype="float32",
    )
    model = LlamaForCausalLM(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.learning_rate, weight_decay=0.01)
    warmup = max(1, spec.steps // 20)

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, spec.steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    gen = torch.Generator().manual_seed(spec.seed)
    start = time.perf_counter()
    model.train()
    loss_value = float("nan")
    for step in range(spec.steps):
        starts = torch.randint(0, len(data) - spec.train_seq_len - 1, (spec.batch_size,), generator=gen)
        batch = torch.stack([data[s : s + spec.train_seq_len] for s in starts.tolist()])
        loss = model(input_ids=batch, labels=batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        loss_value = loss.item()
        if step % 50 == 0 or step == spec.steps - 1:
            log.info("demo training step %d/%d loss %.3f", step + 1, spec.steps, loss_value)
    model.eval()
    ppl = heldout_perplexity(model, held, spec.train_seq_len)
    seconds = time.perf_counter() - start
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=[tokenizer.eos_token_id, im_end],
        do_sample=False, max_new_tokens=128,
    )
    model.save_pretrained(folder, safe_serialization=True)
    return TrainReport(spec.steps, round(loss_value, 4), round(ppl, 3), len(heldout), len(stream), round(seconds, 1))


def heldout_perplexity(model, ids, window: int) -> float:
    """Perplexity over non-overlapping windows of held-out token ids."""
    import torch

    total_nll, total_tokens = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(ids) - 1, window):
            chunk = ids[start : start + window + 1]
            if len(chunk) < 2:
                break
            out = model(input_ids=chunk[:-1].unsqueeze(0))
            nll = torch.nn.functional.cross_entropy(out.logits[0], chunk[1:], reduction="sum")
            total_nll += float(nll)
            total_tokens += len(chunk) - 1
    return math.exp(total_nll / total_tokens)
