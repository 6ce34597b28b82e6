"""The allocation: one type per tensor, least predicted KLD within a byte budget (or fewest bytes within a KLD).

A multiple-choice knapsack solved exactly by dynamic programming over bytes counted in units of `UNIT`
(each option's bytes rounded up, so a solution's true size is never above the budget; the rounding can cost
at most one unit per tensor of the budget, which the result reports as `slack_bytes`). One table gives the
least predicted KLD at every size up to the largest mix, so the same solve answers a KLD budget (the smallest
size whose least KLD is within it) and draws the predicted frontier.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from agents.quantization.budget.space import MixSpace

UNIT = 1024  # bytes per DP cell: ~100k cells for a 100 MB model, a second or two of numpy


@dataclass(frozen=True)
class Allocation:
    """A solved mix: each tensor's type, its exact file size and predicted KLD."""

    types: dict[str, str]
    file_bytes: int
    predicted_kld: float
    slack_bytes: int  # at most this much of the budget can be lost to the rounding of sizes to UNIT


class Frontier:
    """The least predicted KLD at each size, with the choices that reach it."""

    def __init__(self, space: MixSpace, costs: Mapping[str, Mapping[str, float]], unit: int = UNIT) -> None:
        import numpy as np

        self.space, self.unit = space, unit
        slots = space.slots
        self.options: list[Sequence[str]] = [s.options for s in slots]
        weights = [[-(-s.nbytes[t] // unit) for t in s.options] for s in slots]
        values = [[float(costs[s.name][t]) for t in s.options] for s in slots]
        self.base = sum(min(w) for w in weights)
        capacity = sum(max(w) for w in weights) - self.base
        inf = np.inf
        best = np.zeros(capacity + 1)  # least cost using extra capacity <= c (after each item's minimum weight)
        self.choice = np.zeros((len(slots), capacity + 1), dtype=np.int16)
        for i, (w, v) in enumerate(zip(weights, values, strict=True)):
            low = min(w)
            new = np.full(capacity + 1, inf)
            pick = np.zeros(capacity + 1, dtype=np.int16)
            for k, (wk, vk) in enumerate(zip(w, v, strict=True)):
                extra = wk - low
                candidate = np.full(capacity + 1, inf)
                candidate[extra:] = best[: capacity + 1 - extra] + vk
                better = candidate < new
                new[better] = candidate[better]
                pick[better] = k
            best = new
            self.choice[i] = pick
        self.best = best
        self.slack_bytes = len(slots) * unit

    def at_budget(self, max_bytes: int) -> Allocation:
        """The least-KLD mix whose file is at most `max_bytes` (raises ValueError below the smallest mix)."""
        cells = (max_bytes - self.space.fixed_bytes) // self.unit - self.base
        if cells < 0:
            raise ValueError("below the smallest mix")
        return self._allocation(min(int(cells), len(self.best) - 1))

    def smallest(self) -> Allocation:
        """The least-bytes mix (each tensor at its smallest offered type, ties to the least KLD)."""
        return self._allocation(0)

    def largest(self) -> Allocation:
        """The least-KLD mix of all (the whole table's capacity)."""
        return self._allocation(len(self.best) - 1)

    def least_budget(self) -> int:
        """The smallest byte budget at_budget() accepts (the smallest mix, sizes rounded up to whole units)."""
        return self.space.fixed_bytes + self.base * self.unit

    def at_kld(self, max_kld: float) -> Allocation:
        """The smallest mix whose predicted KLD is at most `max_kld` (ValueError when even the largest is above)."""
        import numpy as np

        ok = np.nonzero(self.best <= max_kld)[0]
        if not len(ok):
            raise ValueError("above the largest mix")
        return self._allocation(int(ok[0]))

    def _allocation(self, cell: int) -> Allocation:
        types: dict[str, str] = {}
        c = cell
        for i in range(len(self.options) - 1, -1, -1):
            k = int(self.choice[i, c])
            slot = self.space.slots[i]
            chosen = self.options[i][k]
            types[slot.name] = chosen
            low = min(-(-slot.nbytes[t] // self.unit) for t in slot.options)
            c -= -(-slot.nbytes[chosen] // self.unit) - low
        types = {s.name: types[s.name] for s in self.space.slots}
        return Allocation(types, self.space.file_bytes(types), float(self.best[cell]), self.slack_bytes)

    def curve(self, points: int = 40) -> list[tuple[int, float]]:
        """(file bytes, least predicted KLD) at `points` sizes from the smallest mix to the largest."""
        step = max(1, (len(self.best) - 1) // max(points - 1, 1))
        cells = list(range(0, len(self.best), step))
        if cells[-1] != len(self.best) - 1:
            cells.append(len(self.best) - 1)
        return [(self._allocation(c).file_bytes, float(self.best[c])) for c in cells]
