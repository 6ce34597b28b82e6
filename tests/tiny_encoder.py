"""A tiny random BERT sentence-embedding model in the sentence-transformers layout, built offline.

llama.cpp's converter names a BERT tokenizer by the hash of the ids it gives one fixed text
(`get_vocab_base_pre`) and refuses one it does not know. The vocabulary here puts the 68 tokens
bert-base-uncased uses for that text at bert-base-uncased's own ids (so the hash is BAAI/bge's
"bert-bge"), common English words at free ids (so test sentences are words, not [UNK]), and
placeholders elsewhere: 30,522 entries, as bert-base-uncased has.
"""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VOCAB_SIZE = 30522
# bert-base-uncased's ids of the tokens of llama.cpp's tokenizer-check text.
CHECK_TOKENS = {
    0: "[PAD]", 100: "[UNK]", 101: "[CLS]", 102: "[SEP]", 103: "[MASK]",
    999: "!", 1000: '"', 1005: "'", 1006: "(", 1007: ")", 1010: ",", 1011: "-", 1012: ".", 1017: "3",
    1027: "=", 1029: "?", 1036: "`", 1037: "a", 1040: "d", 1045: "i", 1049: "m", 1055: "s", 1181: "б",
    1192: "н", 1811: "天", 1855: "我", 1995: "～", 2002: "he", 2009: "it", 2017: "you", 2025: "not",
    2042: "been", 2045: "there", 2057: "we", 2066: "like", 2070: "some", 2128: "re", 2191: "make",
    2222: "ll", 2310: "ve", 2409: "told", 2469: "sure", 2483: "##is", 2509: "##3", 3671: "normal",
    3674: "multiple", 3943: "33", 5572: "tea", 6207: "apple", 7861: "em", 9530: "con", 10260: "##а",
    10325: "##и", 14150: "##о", 14677: "131", 15290: "##е", 16280: "##cate", 16856: "##р", 21211: "333",
    22203: "##51", 22394: "##33", 23632: "##41", 23854: "##nated", 23925: "##к", 29147: "##oj",
    29436: "##л", 29741: "##г", 29747: "##с", 29754: "##щ", 29755: "##ъ",
}
# The words of that text, with the first token bert-base-uncased takes of each: a word added to the
# vocabulary must not be a longer prefix of one of them, or the text's tokens (and the hash) change.
CHECK_WORDS = {"normal": "normal", "multiple": "multiple", "emojis": "em", "concatenated": "con",
               "apple": "apple", "been": "been", "told": "told", "there": "there", "sure": "sure",
               "make": "make", "like": "like", "some": "some", "tea": "tea"}


def _vocabulary() -> list[str]:
    words = [w for w in (REPO / "agents" / "english_words.txt").read_text(encoding="utf-8").split()
             if w.isascii() and w.isalpha() and w.islower()]
    taken = set(CHECK_TOKENS.values())
    words = [w for w in dict.fromkeys(words) if w not in taken and not any(
        c.startswith(w) and len(w) > len(first) for c, first in CHECK_WORDS.items())]
    vocab: list[str] = []
    extra = iter(words)
    for i in range(VOCAB_SIZE):
        vocab.append(CHECK_TOKENS.get(i) or next(extra, None) or f"[unused{i}]")
    return vocab


def tiny_bert(out: Path, *, hidden: int = 64, layers: int = 2, pooling: str = "mean", normalize: bool = True,
              extras: bool = False) -> Path:
    """A random BertModel saved as sentence-transformers saves one (modules.json, 1_Pooling/, 2_Normalize).

    `extras` adds what some Hub repos carry beside the model: a 2_Dense/ module (listed), and onnx/ and
    openvino/ exports (not listed, not part of the model).
    """
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    out.mkdir(parents=True, exist_ok=True)
    vocab = _vocabulary()
    tokenizer = BertTokenizerFast(vocab={token: i for i, token in enumerate(vocab)}, do_lower_case=True,
                                  model_max_length=128)
    tokenizer.save_pretrained(out)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=VOCAB_SIZE, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
                        intermediate_size=2 * hidden, max_position_embeddings=128)
    BertModel(config).save_pretrained(out, safe_serialization=True)
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    if extras:
        modules.append({"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
    if normalize:  # listed, and its folder left out, as all-MiniLM-L6-v2's package ships it
        modules.append({"idx": len(modules), "name": str(len(modules)), "path": f"{len(modules)}_Normalize",
                        "type": "sentence_transformers.models.Normalize"})
    (out / "modules.json").write_text(json.dumps(modules, indent=2), encoding="utf-8")
    (out / "config_sentence_transformers.json").write_text(json.dumps({"prompts": {}}), encoding="utf-8")
    (out / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 128, "do_lower_case": False}),
                                                   encoding="utf-8")
    (out / "1_Pooling").mkdir(exist_ok=True)
    flags = {f"pooling_mode_{m}": key == pooling for m, key in (("cls_token", "cls"), ("mean_tokens", "mean"),
                                                          ("max_tokens", "max"), ("lasttoken", "lasttoken"))}
    (out / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": hidden, **flags}),
                                                   encoding="utf-8")
    if extras:
        from safetensors.torch import save_file

        (out / "2_Dense").mkdir(exist_ok=True)
        (out / "2_Dense" / "config.json").write_text(json.dumps({"in_features": hidden, "out_features": 16}))
        save_file({"linear.weight": torch.zeros(16, hidden)}, str(out / "2_Dense" / "model.safetensors"))
        for export in ("onnx", "openvino"):
            (out / export).mkdir(exist_ok=True)
            (out / export / "model.bin").write_bytes(b"\0" * 64)
            (out / export / "config.json").write_text("{}")
    return out
