"""LQMF, the Local Quantized Model Factory, as a library (the shell and the HTTP server are faces over it).

    import lqmf

    lqmf.models().names                                    # the models on disk (and remote endpoints)
    with lqmf.load("demo-q8_0") as model:                  # a handle: .chat(), .stream(), .embed()
        print(model.chat("What does shuffle do?").text)
    plan = lqmf.quantize("demo-hf", level="q4_k_m")        # inspect plan.plan / plan.problems, then:
    done = plan.run(progress=lambda what, done, total: None)
    lqmf.compare([done.model, "demo-q8_0"]).recommendation
    lqmf.fidelity(done.model).row(done.model).fidelity.kld_mean

A program doing several things keeps one `lqmf.Library()` (one manager, one history store) and calls its
methods. Settings come from LQMF_* environment variables (LQMF_HOME relocates every writable path).

Nothing heavy is imported by `import lqmf`: the names above load lqmf.api on first use (PEP 562), so the
base modules (lqmf.base.settings, lqmf.base.errors, ...) stay importable from every layer below the API.
"""

from __future__ import annotations

from typing import Any

from lqmf.base.version import __version__

__all__ = ["Library", "ModelHandle", "__version__", "compare", "fidelity", "load", "models", "quantize"]


def __getattr__(name: str) -> Any:
    """The public API's names, imported from lqmf.api when first asked for."""
    if name in __all__:
        from lqmf import api

        return getattr(api, name)
    raise AttributeError(f"module 'lqmf' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
