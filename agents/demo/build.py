"""Build the demo model offline and quantize it into every format; cached per output."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

from agents.demo.model import DemoSpec, train_model, train_tokenizer
from agents.quantization.gguf_quant import convert_to_gguf, quantize_gguf
from agents.quantization.hf_quant import folder_manifest, quantize_bnb, quantize_gptq, write_manifest_inside
from lqmf.base.atomic import atomic_output, sweep_stale_temps
from lqmf.base.corpus import HELDOUT_MODULES, load_corpus
from lqmf.base.errors import QuantizationError
from lqmf.base.manifest import measure_run, read_manifest, sha256_file, tree_sha256
from lqmf.base.settings import Settings

log = logging.getLogger(__name__)

HF_NAME = "demo-hf"


@dataclass
class DemoBuildReport:
    """Which demo outputs were built now and which were already there."""

    built: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    heldout_perplexity: float = 0.0
    # What that perplexity was measured on: fidelity and compare score other windows of the same
    # modules (512 tokens, from the middle on), past the 128 tokens the model trained on, so theirs is higher.
    heldout_text: str = ""
    vocab_size: int = 0


def build_hf(folder: Path, spec: DemoSpec, overwrite: bool) -> None:
    """Train tokenizer and model into `folder` atomically, with a manifest holding the training report."""
    corpus = load_corpus()
    with atomic_output(folder, overwrite=overwrite, is_dir=True) as tmp:
        with measure_run() as measure:
            train_tokenizer(corpus, spec, tmp)
            report = train_model(corpus, spec, tmp)
        if report.heldout_perplexity >= spec.vocab_size / 2:
            raise QuantizationError(
                f"the demo model trained badly: held-out perplexity {report.heldout_perplexity} "
                f">= {spec.vocab_size / 2}", "report this; the build is deterministic",
            )
        manifest = folder_manifest(
            folder, tmp, tmp, fmt="hf", method="train", bits=32, level="f32", measure=measure,
            packages=("torch", "transformers", "sentencepiece"),
            details={"build_key": spec.key(), "spec": asdict(spec), "training": asdict(report),
                     "corpus_sha256": corpus.sha256, "corpus": "Python standard library sources"},
        )
        manifest.source = {"path": "trained from scratch", "format": "corpus", "sha256": corpus.sha256}
        write_manifest_inside(tmp, manifest)


def _fresh(output: Path, source_sha: str) -> bool:
    """True when `output` exists with a manifest recording `source_sha` as its source."""
    manifest = read_manifest(output) if output.exists() else None
    return bool(manifest) and manifest.get("source", {}).get("sha256") == source_sha


def build_demo(settings: Settings, spec: Optional[DemoSpec] = None) -> DemoBuildReport:
    """Make every demo output that is missing or stale under the models folder."""
    spec = spec or DemoSpec()
    models = settings.models_dir
    models.mkdir(parents=True, exist_ok=True)
    sweep_stale_temps(models)
    report = DemoBuildReport(vocab_size=spec.vocab_size)
    hf = models / HF_NAME
    hf_manifest = read_manifest(hf) if hf.is_dir() else None
    if hf_manifest and hf_manifest.get("details", {}).get("build_key") == spec.key():
        report.cached.append(HF_NAME)
    else:
        log.info("training the demo model into %s", hf)
        build_hf(hf, spec, overwrite=hf.exists())
        hf_manifest = read_manifest(hf)
        report.built.append(HF_NAME)
    training = hf_manifest["details"]["training"]
    report.heldout_perplexity = training["heldout_perplexity"]
    report.heldout_text = (f"{' + '.join(HELDOUT_MODULES)} from the Python standard library, all "
                           f"{training['heldout_tokens']:,} tokens in non-overlapping "
                           f"{spec.train_seq_len}-token windows")
    log.info("demo-hf held-out perplexity %.1f, measured on %s", report.heldout_perplexity, report.heldout_text)
    hf_sha = tree_sha256(hf)
    f16 = models / "demo-f16.gguf"

    steps: list[tuple[str, Callable[[], str], Callable[[Path], None]]] = [
        ("demo-f16.gguf", lambda: hf_sha, lambda out: convert_to_gguf(hf, out, settings, "f16", overwrite=True)),
        ("demo-q8_0.gguf", lambda: sha256_file(f16), lambda out: quantize_gguf(f16, out, "q8_0", overwrite=True)),
        ("demo-q4_k_m.gguf", lambda: sha256_file(f16), lambda out: quantize_gguf(f16, out, "q4_k_m", overwrite=True)),
        ("demo-gptq-4bit", lambda: hf_sha,
         lambda out: quantize_gptq(hf, out, bits=4, overwrite=True, logs_dir=settings.logs_dir)),
        ("demo-bnb-nf4", lambda: hf_sha, lambda out: quantize_bnb(hf, out, "nf4", overwrite=True)),
        ("demo-bnb-int8", lambda: hf_sha, lambda out: quantize_bnb(hf, out, "int8", overwrite=True)),
    ]
    for name, source_sha, make in steps:
        out = models / name
        if _fresh(out, source_sha()):
            report.cached.append(name)
            continue
        log.info("building %s", out)
        make(out)
        report.built.append(name)
    return report
