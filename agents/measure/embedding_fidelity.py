"""Embedding fidelity: how faithfully a quantized embedding model reproduces its source's vectors.

The peer of fidelity.py for encoders, which have no next-token logits to compare. Both models embed the
same held-out sentences through the manager (the runtime that serves them); the card holds
- cosine of each sentence's vector to the source's (mean, p5, min): does each vector point the same way;
- neighbour agreement: for each sentence, its k nearest neighbours among the set, by the variant's vectors
  and by the source's; the share they have in common (top-k overlap), and the Spearman correlation of each
  sentence's similarities to all others: does the geometry that search and classification use survive.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

from lqmf.base.units import nonfinite_text, plural

if TYPE_CHECKING:
    import numpy as np

    from lqmf.base.progress import Progress

log = logging.getLogger(__name__)

NEIGHBOURS = 5  # k of the top-k overlap: a search result page's worth, a tenth of the held-out set
# Held-out sentences of varied text, in small clusters of related meaning (four per topic) so that each has
# true near neighbours to keep and far ones to keep far: everyday prose, questions, news, science, code,
# numbers, instructions and a few other languages. None is from a model's training set by design.
HELDOUT_SENTENCES: tuple[str, ...] = (
    "The cat curled up on the warm windowsill and fell asleep.",
    "A kitten napped in the sunshine by the window.",
    "My dog refuses to go outside when it is raining.",
    "Pets often sleep for more than twelve hours a day.",
    "How do I reset my password if I cannot access my email?",
    "I forgot my login details and need to recover my account.",
    "The support team answered my ticket within an hour.",
    "Two-factor authentication protects an account even if the password leaks.",
    "The central bank raised interest rates by a quarter point.",
    "Inflation slowed for the third month in a row, economists said.",
    "Quarterly revenue rose 12% while operating costs stayed flat.",
    "Shares fell sharply after the company cut its annual forecast.",
    "Photosynthesis turns sunlight, water and carbon dioxide into sugar.",
    "Plants use light energy to make glucose from CO2 and water.",
    "Mitochondria produce most of the cell's chemical energy.",
    "The enzyme speeds up the reaction without being consumed.",
    "def add(a, b):\n    return a + b",
    "A Python function that returns the sum of two numbers.",
    "for i in range(10):\n    print(i * i)",
    "SELECT name, email FROM users WHERE active = 1 ORDER BY name;",
    "Preheat the oven to 200 degrees and grease a baking tray.",
    "Whisk the eggs with sugar until the mixture is pale and fluffy.",
    "Simmer the tomato sauce for twenty minutes, stirring often.",
    "Season the soup with salt, pepper and a squeeze of lemon.",
    "The striker scored twice in the second half to win the match.",
    "Our team lost the final on penalties after extra time.",
    "She finished the marathon in just under three hours.",
    "The tennis champion retired after twenty years on the tour.",
    "The train to Berlin was delayed by forty minutes.",
    "Our flight was cancelled, so we rebooked for the next morning.",
    "The hotel room had a view of the old harbour.",
    "Remember to carry your passport when you cross the border.",
    "The patient was prescribed antibiotics for a chest infection.",
    "Regular exercise lowers the risk of heart disease.",
    "Drink plenty of water and rest if you have a fever.",
    "The vaccine trial enrolled thirty thousand volunteers.",
    "The novel follows a family across three generations.",
    "Her poems are short, quiet and full of everyday images.",
    "The film's soundtrack was recorded with a full orchestra.",
    "The museum opened a new exhibition of early photographs.",
    "Heavy snow closed the mountain pass overnight.",
    "Tomorrow will be sunny with a light breeze from the west.",
    "The river burst its banks after a week of storms.",
    "A heatwave pushed temperatures above forty degrees.",
    "Restart the router and wait for the lights to turn green.",
    "The laptop will not turn on even when it is plugged in.",
    "Update the driver, then reboot the computer.",
    "The printer keeps jamming on double-sided pages.",
    "Le chat dort sur le canapé du salon.",
    "El tren sale de la estación a las ocho.",
    "Der Kaffee ist heute besonders stark.",
    "I would like a table for two at eight o'clock, please.",
    "The meeting has been moved to Thursday at 3 pm.",
    "Please send me the signed contract by Friday.",
    "Can we push the deadline back by one week?",
    "The invoice total is 1,250 euros including tax.",
    "Black holes bend light so strongly that nothing escapes.",
    "The telescope photographed a galaxy thirteen billion light years away.",
    "Mars has the tallest volcano in the solar system.",
    "The spacecraft entered orbit around Jupiter last July.",
)


@dataclass(frozen=True)
class EmbeddingFidelityStats:
    """A variant's vectors against its reference's over the same texts (the embedding fidelity card)."""

    texts: int
    dim: int
    cosine_mean: float
    cosine_p5: float  # the 5th percentile: how bad the worst few sentences get
    cosine_min: float
    neighbours_k: int
    neighbour_overlap: float  # mean share of each text's k nearest neighbours that both models agree on
    rank_spearman: float  # mean Spearman correlation of each text's similarities to all the others
    embed_s: Optional[float] = None  # wall time of embedding the texts with the (loaded) variant
    # Which texts the figures come from (set by whoever chose them).
    text: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def format_cosine(value: Optional[float]) -> str:
    """Cosine similarity with six decimals: q8_0 and f16 differ from the source in the fourth or fifth."""
    return "-" if value is None else nonfinite_text(value) or f"{value:.6f}"


def _unit(vectors: "np.ndarray") -> "np.ndarray":
    import numpy as np

    v = np.asarray(vectors, dtype=np.float64)
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), np.finfo(np.float64).tiny)


def _ranks(rows: "np.ndarray") -> "np.ndarray":
    """Ranks of each row's values (0 = smallest; the sentences' similarities hold no exact ties in practice)."""
    import numpy as np

    return np.argsort(np.argsort(rows, axis=1), axis=1).astype(np.float64)


def embedding_stats(reference: "np.ndarray", test: "np.ndarray", k: int = NEIGHBOURS) -> EmbeddingFidelityStats:
    """The fidelity card of `test` against `reference`: two [texts, dim] arrays of the same texts, in order."""
    import numpy as np

    ref, got = _unit(reference), _unit(test)
    if ref.shape != got.shape or ref.ndim != 2 or ref.shape[0] < 3:
        raise ValueError(f"vectors {ref.shape} and {test.shape} do not pair (three or more texts of one width)")
    n = ref.shape[0]
    k = max(1, min(k, n - 2))
    cos = (ref * got).sum(axis=1)
    # Each text against the others (itself left out), in each model's own space.
    off = ~np.eye(n, dtype=bool)
    sim_ref = (ref @ ref.T)[off].reshape(n, n - 1)
    sim_got = (got @ got.T)[off].reshape(n, n - 1)
    top_ref = np.argsort(-sim_ref, axis=1)[:, :k]
    top_got = np.argsort(-sim_got, axis=1)[:, :k]
    overlap = np.mean([len(set(a) & set(b)) / k for a, b in zip(top_ref.tolist(), top_got.tolist(), strict=True)])
    r_ref, r_got = _ranks(sim_ref), _ranks(sim_got)
    r_ref -= r_ref.mean(axis=1, keepdims=True)
    r_got -= r_got.mean(axis=1, keepdims=True)
    spearman = (r_ref * r_got).sum(axis=1) / np.sqrt((r_ref**2).sum(axis=1) * (r_got**2).sum(axis=1))
    return EmbeddingFidelityStats(
        texts=n, dim=int(ref.shape[1]), cosine_mean=float(cos.mean()), cosine_p5=float(np.percentile(cos, 5)),
        cosine_min=float(cos.min()), neighbours_k=k, neighbour_overlap=float(overlap),
        rank_spearman=float(spearman.mean()),
    )


def heldout_texts(text_path: Optional[Path] = None, text: Optional[str] = None) -> tuple[list[str], str]:
    """The texts to embed and their description: one per non-empty line of `text` or the file, else the set here."""
    if text is None and text_path is not None:
        text = Path(text_path).expanduser().read_text(encoding="utf-8")
    if text is not None:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        where = str(text_path) if text_path is not None else "the given text"
        return lines, f"{where}: {plural(len(lines), 'text')}, one per line"
    return list(HELDOUT_SENTENCES), f"LQMF's {len(HELDOUT_SENTENCES)} held-out sentences of varied text"


def embed_vectors(manager, name: str, texts: Sequence[str],
                  progress: Optional["Progress"]) -> tuple["np.ndarray", float]:
    """A model's normalised vectors of `texts` through the manager (loaded first, so the time is embedding only)."""
    from server.runtime.embeddings import embed_texts

    manager.load(name)
    start = time.perf_counter()
    result = embed_texts(manager, name, texts, normalize=True, truncate=True, progress=progress,
                         what=f"embedding fidelity: {name}")
    return result.vectors, time.perf_counter() - start


def embedding_verdict(rows: list, reference: str) -> str:
    """One line per variant: its size against the reference's, mean cosine and neighbour agreement."""
    ref = next((r for r in rows if r.model == reference), None)
    parts = []
    for row in rows:
        if row.model == reference or row.embedding is None:
            continue
        e = row.embedding
        size = (f"{100 * row.size_bytes / ref.size_bytes:.0f}% of the size, "
                if ref is not None and ref.size_bytes and row.size_bytes else "")
        parts.append(f"{row.model}: {size}cosine {e.cosine_mean:.4f} (worst {e.cosine_min:.4f}), "
                     f"top-{e.neighbours_k} neighbours {100 * e.neighbour_overlap:.1f}% the same")
    return " · ".join(parts)
